#!/bin/bash
# Container entry point: the workspace's setup (which also sources the ROS 2 it was built over),
# then the command (default: ros2 launch cgrs_ros cgrs.launch.py).
set -e
# shellcheck disable=SC1091  # made by the image build
source /ws/install/setup.bash --
exec "$@"
