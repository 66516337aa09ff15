"""ROS 2 adapter of the CGRS engine: the lifecycle node, message conversions and a demo client.

Importing this package imports nothing from rclpy; :mod:`cgrs_ros.ros.node` and
:mod:`cgrs_ros.ros.conversions` do (they need the ROS 2 runtime and the built interfaces).
"""
