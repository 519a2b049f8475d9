"""smhr_ros: the ROS 2 side of smhr (nodes, message conversion, markers, tracking).

`smhr_ros.msg` holds the generated `Hand` and `HandArray` messages.
"""
