"""Launch the CGRS lifecycle node, optionally taking it to *active* (configure, then activate).

    ros2 launch cgrs_ros cgrs.launch.py
    ros2 launch cgrs_ros cgrs.launch.py params_file:=/path/params.yaml namespace:=drone1 device:=cuda:0
    ros2 launch cgrs_ros cgrs.launch.py autostart:=false      # leave it unconfigured for a lifecycle manager
    ros2 launch cgrs_ros cgrs.launch.py respawn:=true
    ros2 launch cgrs_ros cgrs.launch.py extra_params_file:=W/gazebo/cgrs_node_datum.yaml   # a world's datum

When the node process exits (a crash during configure or start-up included) the launch shuts down,
so a supervisor (systemd, a container runtime) sees it, instead of ``ros2 launch`` hanging until
Ctrl-C; with ``respawn:=true`` the node is restarted after RESPAWN_DELAY_S seconds instead (a float,
not a launch argument: Humble's launch takes no substitution there).

Works with Humble, Jazzy and Kilted: the transitions are emitted with launch_ros lifecycle events
(ChangeState on start-up, then activate once the node reports *inactive*), not with the newer
``LifecycleNode(autostart=...)`` argument.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, RegisterEventHandler
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown, matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from lifecycle_msgs.msg import Transition

PACKAGE = "cgrs_ros"
NODE_NAME = "cgrs_node"
RESPAWN_DELAY_S = 5.0


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "cgrs_node.yaml")
    params_file = LaunchConfiguration("params_file")
    extra_params_file = LaunchConfiguration("extra_params_file")
    namespace = LaunchConfiguration("namespace")
    device = LaunchConfiguration("device")
    use_sim_time = LaunchConfiguration("use_sim_time")
    autostart = LaunchConfiguration("autostart")
    respawn = LaunchConfiguration("respawn")

    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS parameters file of the node (/**: ros__parameters:)"),
        DeclareLaunchArgument("extra_params_file", default_value=params_file,
                              description="Second parameters file applied over params_file (e.g. the datum of a "
                                          "simulated world); default: params_file again, i.e. none"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("device", default_value="auto",
                              description="Torch device: auto | cpu | cuda | cuda:N (overrides the params file)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=["true", "false"],
                              description="Use /clock (simulation time) for stamps"),
        DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                              description="Configure and activate the node on start-up"),
        DeclareLaunchArgument("respawn", default_value="false", choices=["true", "false"],
                              description="Restart the node when it exits (else the launch shuts down)"),
    ]

    node = LifecycleNode(
        package=PACKAGE,
        executable="cgrs_node",
        name=NODE_NAME,
        namespace=namespace,
        output="screen",
        emulate_tty=True,
        respawn=respawn,
        respawn_delay=RESPAWN_DELAY_S,
        parameters=[
            params_file,
            extra_params_file,
            {"device": device,
             "use_sim_time": ParameterValue(use_sim_time, value_type=bool)},
        ],
    )

    shutdown_when_node_exits = RegisterEventHandler(
        OnProcessExit(
            target_action=node,
            on_exit=[LogInfo(msg="cgrs_node exited; shutting the launch down (respawn:=true restarts it)"),
                     EmitEvent(event=Shutdown(reason="cgrs_node exited"))],
        ),
        condition=UnlessCondition(respawn))

    configure = EmitEvent(
        event=ChangeState(lifecycle_node_matcher=matches_action(node),
                          transition_id=Transition.TRANSITION_CONFIGURE),
        condition=IfCondition(autostart))

    activate_when_inactive = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node,
            start_state="configuring",
            goal_state="inactive",
            entities=[
                LogInfo(msg="cgrs_node configured; activating"),
                EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_ACTIVATE)),
            ],
        ),
        condition=IfCondition(autostart))

    report_failed_configure = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node,
            start_state="configuring",
            goal_state="unconfigured",
            entities=[LogInfo(msg="cgrs_node failed to configure (see its log); it stays unconfigured")],
        ))

    return LaunchDescription(arguments + [shutdown_when_node_exits, activate_when_inactive,
                                          report_failed_configure, node, configure])
