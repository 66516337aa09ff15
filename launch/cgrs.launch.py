"""Launch the CGRS lifecycle node; with ``autostart`` (the default) it configures and activates itself.

    ros2 launch cgrs_ros cgrs.launch.py
    ros2 launch cgrs_ros cgrs.launch.py params_file:=/path/params.yaml namespace:=drone1 device:=cuda:0
    ros2 launch cgrs_ros cgrs.launch.py forward_to_nav2:=true min_confidence:=0.9 goal_topic:=/mission/goal
    ros2 launch cgrs_ros cgrs.launch.py autostart:=false      # leave it unconfigured for a lifecycle manager
    ros2 launch cgrs_ros cgrs.launch.py respawn:=true log_level:=debug
    ros2 launch cgrs_ros cgrs.launch.py extra_params_file:=W/gazebo/cgrs_node_datum.yaml   # a world's datum

Parameters: ``params_file`` (default: the package's config/cgrs_node.yaml), then ``extra_params_file``
over it (if given), then the launch arguments given on the command line over both (an argument left
empty leaves the files' value).

Lifecycle: the launch sends no transitions.  ``autostart:=true`` sets the node's ``autostart``
parameter, and the node configures and activates *itself* at every process start -- so a node
restarted by ``respawn:=true`` (after RESPAWN_DELAY_S, e.g. after a crash or ``kill -9``) comes back
*active*, which transitions sent once by the launch could not do.  With ``autostart:=false`` a
lifecycle manager (e.g. nav2_lifecycle_manager) drives it.

Exit: when the node process exits on its own (a crash included) the launch shuts down, so a
supervisor (systemd, a container runtime) sees it, unless ``respawn:=true``; Ctrl-C / SIGTERM of
the launch ends the node (rc 0) and the launch (rc 0) without a second shutdown.

Works with Humble, Jazzy and Kilted (only long-standing launch / launch_ros API).
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

PACKAGE = "cgrs_ros"
NODE_NAME = "cgrs_node"
RESPAWN_DELAY_S = 5.0
# The package's share folder (this file is in <share>/launch; in the source tree, the repository).
SHARE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PARAMS = os.path.join(SHARE, "config", "cgrs_node.yaml")
# Launch arguments that override a node parameter when given (empty: the params files decide).
OVERRIDES = {"device": str, "forward_to_nav2": bool, "min_confidence": float}
BOOLEAN = ["true", "false"]


def arguments() -> list:
    return [
        DeclareLaunchArgument("params_file", default_value=DEFAULT_PARAMS,
                              description="ROS parameters file of the node (/**: ros__parameters:)"),
        DeclareLaunchArgument("extra_params_file", default_value="",
                              description="Second parameters file applied over params_file (e.g. the datum of a "
                                          "simulated world); empty: none"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("device", default_value="",
                              description="Torch device: auto | cpu | cuda | cuda:N; empty: the params file's"),
        DeclareLaunchArgument("forward_to_nav2", default_value="", choices=[""] + BOOLEAN,
                              description="Publish confident targets on goal_pose / goal_geopose; empty: the "
                                          "params file's"),
        DeclareLaunchArgument("min_confidence", default_value="",
                              description="Calibrated confidence in [0, 1] a target needs to be forwarded; "
                                          "empty: the params file's"),
        DeclareLaunchArgument("goal_topic", default_value="",
                              description="Topic the node takes language goals from (remaps ~/goal); empty: "
                                          "~/goal"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=BOOLEAN,
                              description="Use /clock (simulation time) for stamps"),
        DeclareLaunchArgument("log_level", default_value="info",
                              choices=["debug", "info", "warn", "error", "fatal"],
                              description="Severity threshold of the node's log"),
        DeclareLaunchArgument("autostart", default_value="true", choices=BOOLEAN,
                              description="The node configures and activates itself at every process start"),
        DeclareLaunchArgument("respawn", default_value="false", choices=BOOLEAN,
                              description="Restart the node when it exits (else the launch shuts down)"),
    ]


def _parse(name: str, text: str, kind):
    """A launch argument's text as the parameter's type (a clear error naming it otherwise)."""
    if kind is bool:
        return text == "true"
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise RuntimeError(f"launch argument {name}:={text!r} is not a number") from None
    return text


def _shutdown_unless_shutting_down(event, context):
    """On the node's exit: shut the launch down -- unless it is already (Ctrl-C, SIGTERM): a second
    Shutdown would shut the ROS adapter down twice (an error line and rc 1)."""
    if context.is_shutdown:
        return None
    return [LogInfo(msg=f"cgrs_node exited (rc {event.returncode}); shutting the launch down "
                        "(respawn:=true restarts it instead)"),
            EmitEvent(event=Shutdown(reason="cgrs_node exited"))]


def node_settings(value) -> dict:
    """What the node gets from the launch arguments (``value(name)``: an argument's text): its
    parameters (the files, then the arguments given), remappings, ROS arguments, namespace, respawn."""
    overrides = {"autostart": value("autostart") == "true", "use_sim_time": value("use_sim_time") == "true"}
    overrides.update({name: _parse(name, value(name), kind) for name, kind in OVERRIDES.items() if value(name)})
    files = [value("params_file")] + ([value("extra_params_file")] if value("extra_params_file") else [])
    return {"namespace": value("namespace"), "parameters": files + [overrides],
            "remappings": [("~/goal", value("goal_topic"))] if value("goal_topic") else [],
            "ros_arguments": ["--log-level", value("log_level")], "respawn": value("respawn") == "true"}


def _node(context) -> list:
    settings = node_settings(lambda name: LaunchConfiguration(name).perform(context))
    node = LifecycleNode(package=PACKAGE, executable="cgrs_node", name=NODE_NAME, output="screen",
                         emulate_tty=True, respawn_delay=RESPAWN_DELAY_S, **settings)
    if settings["respawn"]:
        return [node]
    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_shutdown_unless_shutting_down))]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(arguments() + [OpaqueFunction(function=_node)])
