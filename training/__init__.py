"""SMHR training: datasets, losses, differentiable rendering, the training loop, evaluation."""
