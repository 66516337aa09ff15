"""Simulated loop: Gazebo with an exported CGRS world, the /clock bridge, and the CGRS node on sim time.

    cgrs-world --seed 5 --places 40 --out W --gazebo        # the demo index's world, plus W/gazebo/
    ros2 launch cgrs_ros cgrs_sim.launch.py world_dir:=W/gazebo
    ros2 launch cgrs_ros cgrs_sim.launch.py world_dir:=W/gazebo gz_args:="-r -s"     # no Gazebo GUI
    ros2 launch cgrs_ros cgrs_sim.launch.py world_dir:=W/gazebo params_file:=my_params.yaml  # index_dir etc.

``world_dir`` is the ``gazebo`` folder ``cgrs-world --gazebo`` writes: ``world.sdf`` (started with
ros_gz_sim's ``gz_sim.launch.py``) and ``cgrs_node_datum.yaml``, the node's datum parameters equal
to the world's ``<spherical_coordinates>``, so the node's map frame is Gazebo's world frame and a
``goal_pose`` lands on the roof the gallery shows.  The node comes from ``cgrs.launch.py`` (same
arguments, lifecycle handling and shutdown-on-exit) with ``use_sim_time:=true``; ros_gz_bridge
brings Gazebo's ``/clock`` to ROS.  Needs the ROS packages ros_gz_sim and ros_gz_bridge (and the
Gazebo they were built for: Harmonic on Jazzy, Ionic on Kilted).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node

PACKAGE = "cgrs_ros"
# File names inside world_dir: cgrs_ros.world.gazebo's (not imported: the launch process's Python may
# lack cgrs_ros's dependencies when the node runs from a venv; test/ros/test_launch.py compares them).
WORLD_FILE = "world.sdf"
DATUM_PARAMS_FILE = "cgrs_node_datum.yaml"
CLOCK_BRIDGE = "/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock"   # Gazebo -> ROS only
FORWARDED = ("params_file", "namespace", "device", "autostart", "respawn")   # cgrs.launch.py's arguments


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    world_dir = LaunchConfiguration("world_dir")

    arguments = [
        DeclareLaunchArgument("world_dir", description="The gazebo/ folder of a world made by cgrs-world --gazebo"),
        DeclareLaunchArgument("gz_args", default_value="-r",
                              description="gz sim options before the world file (-r: run at once; -s: no GUI)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "cgrs_node.yaml"),
                              description="ROS parameters file of the node; the world's datum is applied over it"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("device", default_value="auto", description="Torch device: auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                              description="Configure and activate the node on start-up"),
        DeclareLaunchArgument("respawn", default_value="false", choices=["true", "false"],
                              description="Restart the node when it exits (else the launch shuts down)"),
    ]

    gazebo = IncludeLaunchDescription(   # without ros_gz_sim, PackageNotFoundError names it here
        PythonLaunchDescriptionSource(
            os.path.join(get_package_share_directory("ros_gz_sim"), "launch", "gz_sim.launch.py")),
        launch_arguments={"gz_args": [LaunchConfiguration("gz_args"), " ",
                                      PathJoinSubstitution([world_dir, WORLD_FILE])]}.items())

    clock_bridge = Node(package="ros_gz_bridge", executable="parameter_bridge", name="clock_bridge",
                        arguments=[CLOCK_BRIDGE], output="screen")

    cgrs_node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "cgrs.launch.py")),
        launch_arguments=[(name, LaunchConfiguration(name)) for name in FORWARDED] + [
            ("extra_params_file", PathJoinSubstitution([world_dir, DATUM_PARAMS_FILE])),
            ("use_sim_time", "true")])

    return LaunchDescription(arguments + [gazebo, clock_bridge, cgrs_node])
