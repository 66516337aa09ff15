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
Gazebo they were built for: Harmonic on Jazzy, Ionic on Kilted); ``--show-args`` works without them,
and a launch without them stops with one line naming the package to install.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node

PACKAGE = "cgrs_ros"
# File names inside world_dir: cgrs_ros.world.gazebo's (not imported: the launch process's Python may
# lack cgrs_ros's dependencies when the node runs from a venv; test/ros/test_launch.py compares them).
WORLD_FILE = "world.sdf"
DATUM_PARAMS_FILE = "cgrs_node_datum.yaml"
CLOCK_BRIDGE = "/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock"   # Gazebo -> ROS only
LAUNCH_DIR = os.path.dirname(os.path.abspath(__file__))
# cgrs.launch.py's arguments passed on (its extra_params_file is the world's datum, use_sim_time true).
FORWARDED = ("params_file", "namespace", "device", "forward_to_nav2", "min_confidence", "goal_topic", "log_level",
             "autostart", "respawn")
MISSING_GAZEBO = ("cgrs_sim.launch.py needs ros_gz_sim and ros_gz_bridge: "
                  "apt install ros-$ROS_DISTRO-ros-gz (then source /opt/ros/$ROS_DISTRO/setup.bash)")


def _gazebo(context) -> list:
    """Gazebo with the world (looked up when the launch runs, so --show-args works without it)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        gz_sim = get_package_share_directory("ros_gz_sim")
    except PackageNotFoundError:
        raise RuntimeError(MISSING_GAZEBO) from None
    return [IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(gz_sim, "launch", "gz_sim.launch.py")),
        launch_arguments={"gz_args": [LaunchConfiguration("gz_args"), " ",
                                      PathJoinSubstitution([LaunchConfiguration("world_dir"), WORLD_FILE])]}.items())]


def generate_launch_description() -> LaunchDescription:
    node_launch = _load_node_launch()
    world_dir = LaunchConfiguration("world_dir")
    arguments = [
        DeclareLaunchArgument("world_dir", description="The gazebo/ folder of a world made by cgrs-world --gazebo"),
        DeclareLaunchArgument("gz_args", default_value="-r",
                              description="gz sim options before the world file (-r: run at once; -s: no GUI)"),
    ] + [a for a in node_launch.arguments() if a.name in FORWARDED]

    clock_bridge = Node(package="ros_gz_bridge", executable="parameter_bridge", name="clock_bridge",
                        arguments=[CLOCK_BRIDGE], output="screen")

    cgrs_node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(LAUNCH_DIR, "cgrs.launch.py")),
        launch_arguments=[(name, LaunchConfiguration(name)) for name in FORWARDED] + [
            ("extra_params_file", PathJoinSubstitution([world_dir, DATUM_PARAMS_FILE])),
            ("use_sim_time", "true")])

    return LaunchDescription(arguments + [OpaqueFunction(function=_gazebo), clock_bridge, cgrs_node])


def _load_node_launch():
    """cgrs.launch.py as a module (its argument declarations are reused here)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cgrs_launch", os.path.join(LAUNCH_DIR, "cgrs.launch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
