"""smhr_core: the SMHR multi-hand reconstruction model in pure PyTorch (no ROS)."""
