"""The CGRS lifecycle node: language goal in, ranked places and their ground targets out.

Where things are (this class only wires them together):

- :mod:`cgrs_ros.ros.parameters`  the parameter table, validation, runtime-change policy;
- :mod:`cgrs_ros.ros.serving`     what configure loads, a goal's options checked;
- :mod:`cgrs_ros.ros.worker`      the inference thread, the goal snapshot, one goal's run;
- :mod:`cgrs_ros.ros.outputs`     publishers, every goal's answer (outcome codes), the Nav2 gate;
- :mod:`cgrs_ros.ros.navigation`  the optional NavigateToPose client;
- :mod:`cgrs_ros.ros.conversions` engine results -> messages, poses, markers, image;
- :mod:`cgrs_ros.ros.log_bridge`  Python logging, warnings and build progress as ROS log lines;
- :mod:`cgrs_ros.targets`         where a place is on the ground (core, no ROS).

Lifecycle (REP-2002): ``configure`` validates the parameters and loads the engine (index + models;
minutes on first use of the demo index), the ground targets and the worker; a failure is logged and
the node stays *unconfigured*.  ``activate`` serves goals; ``deactivate`` drops the pending goal and
stops the running one; ``cleanup``/``shutdown`` release everything.  The lifecycle services run in a
reentrant callback group on a multi-threaded executor, so ``get_state``, parameter services and goal
intake keep answering while a long configure runs (goals are answered "configuring").

``autostart`` (no lifecycle manager): the node configures and activates *itself* at every process
start, so a process restarted by ``respawn`` comes back to *active* without anyone driving it
(the launch file does not send transitions).  SIGINT and SIGTERM end the process cleanly (rc 0).
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from functools import partial

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from cgrs_ros.action import Locate
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.ros import parameters
from cgrs_ros.msg import RankedMatches
from cgrs_ros.ros.log_bridge import route_python_logging, route_transformers_logging
from cgrs_ros.ros.outputs import Outputs
from cgrs_ros.ros.serving import check_text, load_serving, query_options, quiet_model_libraries
from cgrs_ros.ros.worker import GoalSettings, Job, Serving, feedback, run_goal

R = RankedMatches

NODE_NAME = "cgrs_node"
STOP_TIMEOUT_S = 30.0
_NOT_SERVING = {
    "unconfigured": "the node is unconfigured; configure and activate it first",
    "configuring": "the node is configuring (loading the index and models); send it again once active",
    "inactive": "the node is inactive; activate it first",
    "finalized": "the node is finalized (shut down); restart it",
}


class CGRSNode(LifecycleNode):
    """Lifecycle node serving language goals with the CGRS engine."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        # The lifecycle services get their own reentrant group so that get_state (and the parameter
        # services, in the default group) answer while on_configure runs; LifecycleNode.__init__
        # does not forward callback_group, so the two bases are initialised here.
        Node.__init__(self, node_name, **kwargs)
        LifecycleNodeMixin.__init__(self, enable_communication_interface=True,
                                    callback_group=ReentrantCallbackGroup())
        # (rclpy keeps the command line's and params files' values here until they are declared)
        notes = parameters.normalise_overrides(getattr(self, "_parameter_overrides", {}))
        for p in parameters.PARAMETERS:
            self.declare_parameter(p.name, p.default, parameters.descriptor(p))
        for note in notes:
            self.get_logger().info(f"parameter {note}")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._lock = threading.Lock()
        self._active = False
        self._serving: Serving | None = None
        self._topic_goals = 0
        self._outputs = Outputs(self)
        # Inputs exist in every state so that goals sent at the wrong time get an answer saying why.
        best_effort = self._param("goal_qos_reliability") == "best_effort"
        qos = QoSProfile(depth=1, durability=DurabilityPolicy.VOLATILE,
                         reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE)
        self.create_subscription(String, "~/goal", self._on_goal_msg, qos,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self._action_server = ActionServer(
            self, Locate, "~/locate", execute_callback=self._execute_action,
            goal_callback=lambda request: GoalResponse.ACCEPT,
            cancel_callback=lambda goal_handle: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup())
        if self._param("autostart") is True:
            self._autostart_timer = self.create_timer(0.1, self._autostart,
                                                      callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"{self.get_fully_qualified_name()} up (unconfigured)")

    # -- parameters -----------------------------------------------------------------------------
    def _param(self, name: str):
        return parameters.coerce(name, self.get_parameter(name).value)

    def _on_set_parameters(self, params) -> SetParametersResult:
        configured = self._state() != "unconfigured"
        notes = []
        for param in params:
            if param.name in parameters.BY_NAME:
                ok, reason = parameters.runtime_change(param.name, param.value, configured)
                if not ok:
                    return SetParametersResult(successful=False, reason=reason)
                notes.append(reason)
        # (rclpy drops the reason of a successful result: the notes go to the log)
        for note in filter(None, notes):
            self.get_logger().info(f"parameter set: {note}")
        return SetParametersResult(successful=True)

    def _goal_settings(self) -> GoalSettings:
        return GoalSettings(
            map_frame=self._param("map_frame"), max_query_chars=self._param("max_query_chars"),
            min_confidence=self._param("min_confidence"), forward_to_nav2=self._param("forward_to_nav2"),
            publish_image=self._param("publish_image"), stage_delay=self._param("debug_stage_delay"),
            approach_height=self._param("target_approach_height"))

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # -- lifecycle ------------------------------------------------------------------------------
    def _state(self) -> str:
        return self._state_machine.current_state[1]

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log, started = self.get_logger(), time.perf_counter()
        try:
            values = parameters.read_all(self._param)
            route_transformers_logging()
            serving = load_serving(values, partial(run_goal, outputs=self._outputs, logger=log), log)
        except CGRSInputError as exc:
            log.error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # a model library error: still a clean failure
            log.error(f"configure failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            return TransitionCallbackReturn.FAILURE
        self._outputs.create_map_outputs()
        if values["nav2_action"]:
            from cgrs_ros.ros.navigation import Navigator
            self._outputs.navigator = Navigator(self, values["nav2_action"])
            log.info(f"confident, forwarded targets also go to NavigateToPose '{values['nav2_action']}'")
        with self._lock:
            self._serving = serving
        log.info(f"configured in {time.perf_counter() - started:.1f} s: {len(serving.engine.index)} "
                 f"gallery images of {len(serving.engine.index.place_names)} places, device "
                 f"{serving.engine.config.device}, frame '{values['map_frame']}'")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        if result == TransitionCallbackReturn.SUCCESS:
            with self._lock:
                self._active = True
            self._outputs.set_publishing(True)
            self.get_logger().info("active: serving goals on ~/goal and ~/locate")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_serving("node deactivated")
        self._outputs.set_publishing(False)
        self.get_logger().info("inactive: goals are refused until the next activate")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release("node cleaned up")
        self.get_logger().info("cleaned up: engine released (unconfigured)")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release("node shutting down")
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error processing from state '{state.label}': releasing the engine")
        self._release("node error")
        return TransitionCallbackReturn.SUCCESS

    def _stop_serving(self, why: str) -> Serving | None:
        """Refuse new goals, answer the pending one, stop the running one and wait for it (bounded)."""
        with self._lock:
            self._active = False
            serving = self._serving
        if serving is None:
            return None
        pending = serving.worker.stop_all(why)
        if pending is not None:
            self._outputs.answer(pending, R.OUTCOME_ABORTED, f"aborted: {why} before goal {pending.goal_id} started")
        if not serving.worker.wait_idle(STOP_TIMEOUT_S):
            self.get_logger().warning(f"the running goal did not stop within {STOP_TIMEOUT_S:.0f} s")
        return serving

    def _release(self, why: str) -> None:
        """Stop serving, then free the worker (which frees the engine) and the map publishers."""
        serving = self._stop_serving(why)
        with self._lock:
            self._serving = None
        self._outputs.destroy_map_outputs()
        navigator, self._outputs.navigator = self._outputs.navigator, None
        if navigator is not None:
            navigator.destroy()
        if serving is None:
            return
        pending, ended = serving.worker.close(why, STOP_TIMEOUT_S)
        if pending is not None:
            self._outputs.answer(pending, R.OUTCOME_ABORTED, f"aborted: {why}")
        if not ended:
            self.get_logger().warning("a query is still running; its worker frees the engine when it returns")

    def release(self) -> None:
        """Free everything (used by main() when the process is interrupted in any state)."""
        self._release("node exiting")

    # -- goal intake ----------------------------------------------------------------------------
    def _intake(self, job: Job, top_k: int = 0, fusion_weight: float = -1.0, caption_mode: str = "") -> bool:
        """Check a goal and queue it; answers it (False) when it cannot run."""
        with self._lock:
            serving = self._serving if self._active else None
        if serving is None:
            state = self._state()
            self._outputs.answer(job, R.OUTCOME_NOT_ACTIVE,
                                 f"aborted: {_NOT_SERVING.get(state, f'the node is {state}')}")
            return False
        try:
            check_text(job.query, job.settings.max_query_chars)
            job.options = query_options(serving.engine, self._param, top_k, fusion_weight, caption_mode)
        except CGRSInputError as exc:
            self._outputs.answer(job, R.OUTCOME_REJECTED, f"rejected: {exc}")
            return False
        job.serving = serving
        feedback(job, "queued" if serving.worker.busy else "starting", 0.0, self.get_logger())
        try:
            superseded = serving.worker.submit(job)
        except RuntimeError:
            self._outputs.answer(job, R.OUTCOME_ABORTED, "aborted: the node is shutting down")
            return False
        self.get_logger().info(f"goal {job.goal_id} ({job.source}) accepted: {job.query[:80]!r}")
        if superseded is not None:
            self._outputs.answer(superseded, R.OUTCOME_SUPERSEDED,
                                 f"superseded: goal {job.goal_id} arrived before goal {superseded.goal_id} started")
        return True

    def _on_goal_msg(self, msg: String) -> None:
        stamp = self.get_clock().now().to_msg()
        with self._lock:
            self._topic_goals += 1
            goal_id = f"topic-{self._topic_goals}"
        self._intake(Job(goal_id, msg.data, stamp, self._goal_settings()))

    def _execute_action(self, goal_handle):
        goal = goal_handle.request
        job = Job(bytes(goal_handle.goal_id.uuid).hex(), goal.query, self.get_clock().now().to_msg(),
                  self._goal_settings(), goal_handle=goal_handle)
        if self._intake(job, goal.top_k, goal.fusion_weight, goal.caption_mode):
            while not job.done.wait(0.05):
                if goal_handle.is_cancel_requested and job.serving.worker.remove_pending(job):
                    self._outputs.answer(job, R.OUTCOME_CANCELED,
                                         f"canceled: goal {job.goal_id} was cancelled before it started")
        result = Locate.Result(matches=job.result, success=job.outcome == "succeeded", message=job.result.status)
        if goal_handle.is_active:
            if job.outcome == "succeeded":
                goal_handle.succeed()
            elif job.outcome == "canceled" and goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                goal_handle.abort()
        return result


def main(args: list[str] | None = None) -> int:
    quiet_model_libraries()
    # rclpy's handlers (SIGINT and SIGTERM) shut the context down, which wakes the executor.
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    executor = MultiThreadedExecutor(num_threads=6)
    try:
        try:
            node = CGRSNode()
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            print(parameters.type_error_line(exc), file=sys.stderr)
            return 2
        route_python_logging(node.get_logger())
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.release()
        executor.shutdown(timeout_sec=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
