"""A small synchronous client of the CGRS node, for the demo, the tests and the benchmark.

It spins its own rclpy node on a background thread and offers blocking calls with timeouts:
lifecycle transitions, goals on ``~/goal``, the ``~/locate`` action (feedback, cancel), and
everything the node publishes, collected per topic.  Also: :func:`start_node_process`, which runs
the node as a subprocess (``python -m cgrs_ros.ros.node``) with its output in a log file.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import rclpy
from action_msgs.msg import GoalStatus
from geometry_msgs.msg import PoseArray, PoseStamped
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from cgrs_ros.action import Locate
from cgrs_ros.msg import RankedMatches

TRANSITIONS = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP,
               "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}
STATUS_NAMES = {GoalStatus.STATUS_SUCCEEDED: "succeeded", GoalStatus.STATUS_ABORTED: "aborted",
                GoalStatus.STATUS_CANCELED: "canceled", GoalStatus.STATUS_UNKNOWN: "unknown"}
OUTPUTS = {"matches": RankedMatches, "target_pose": PoseStamped, "target_poses": PoseArray,
           "markers": MarkerArray, "match_image": Image}
# Outcome names by code (RankedMatches.OUTCOME_*), for printing.
OUTCOME_NAMES = {getattr(RankedMatches, name): name[len("OUTCOME_"):]
                 for name in dir(RankedMatches) if name.startswith("OUTCOME_")}
# Outcomes of a goal that ran (its matches are a ranking to look at).
RAN = (RankedMatches.OUTCOME_OK, RankedMatches.OUTCOME_NOT_CONFIDENT, RankedMatches.OUTCOME_AMBIGUOUS,
       RankedMatches.OUTCOME_DEGRADED, RankedMatches.OUTCOME_NO_TARGET)


def ros_environment(domain_id: int | None = None, base: dict | None = None) -> dict:
    """Environment for a node subprocess: localhost discovery, a domain id, offline model hubs."""
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")   # log lines reach the log file at once
    return env


def goal_id_of(handle) -> str:
    """The node's goal_id of an action goal (its UUID in hex), from the client's goal handle."""
    return bytes(handle.goal_id.uuid).hex()


def start_node_process(params: dict | None = None, params_file: str | Path | None = None,
                       log_path: str | Path | None = None, domain_id: int | None = None,
                       env: dict | None = None, node_name: str | None = None,
                       namespace: str | None = None, executable: str | Path | None = None,
                       remappings: dict | None = None) -> subprocess.Popen:
    """Run ``python -m cgrs_ros.ros.node`` (or ``executable``, e.g. a workspace's installed
    ``lib/cgrs_ros/cgrs_node``) with ROS arguments (``remappings``: {from: to}, e.g. {"~/goal":
    "/mission/goal"}); stdout+stderr go to ``log_path``."""
    cmd = [str(executable)] if executable else [sys.executable, "-m", "cgrs_ros.ros.node"]
    cmd.append("--ros-args")
    if params_file:
        cmd += ["--params-file", str(params_file)]
    for name, value in (params or {}).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, str):   # YAML-quoted: 'true', '1' or '' stay strings
            value = "'" + value.replace("'", "''") + "'"
        cmd += ["-p", f"{name}:={value}"]
    if node_name:
        cmd += ["-r", f"__node:={node_name}"]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    for source, target in (remappings or {}).items():
        cmd += ["-r", f"{source}:={target}"]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env=ros_environment(domain_id, env), start_new_session=True)
    finally:
        if log_path:
            out.close()


def stop_node_process(process: subprocess.Popen, timeout: float = 15.0) -> int | None:
    """SIGINT, then SIGTERM, then SIGKILL; returns the exit code."""
    if process.poll() is None:
        for sig, wait in ((2, timeout), (15, 5.0), (9, 5.0)):
            try:
                process.send_signal(sig)
                return process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
    return process.returncode


class CGRSClient:
    """Blocking client of one CGRS node (``node`` is its fully qualified name)."""

    def __init__(self, node: str = "/cgrs_node", client_name: str = "cgrs_client", context=None,
                 outputs: tuple[str, ...] = tuple(OUTPUTS)):
        """``outputs``: the node's topics to subscribe to (the contact sheet is drawn only while
        ~/match_image has a subscriber: leave it out to measure without it)."""
        self.target = node.rstrip("/")
        self.node = rclpy.create_node(client_name, context=context)
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._cv = threading.Condition()
        self.received: dict[str, list] = {name: [] for name in OUTPUTS}
        self._subs = {}
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        volatile = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for name, msg_type in OUTPUTS.items():
            if name not in outputs:
                continue
            qos = latched if name in ("target_pose", "target_poses", "markers") else volatile
            self._subs[name] = self.node.create_subscription(
                msg_type, f"{self.target}/{name}", self._collector(name), qos)
        self.goal_pub = self.node.create_publisher(String, f"{self.target}/goal", QoSProfile(depth=1))
        self._change = self.node.create_client(ChangeState, f"{self.target}/change_state")
        self._get = self.node.create_client(GetState, f"{self.target}/get_state")
        self._set_params = self.node.create_client(SetParameters, f"{self.target}/set_parameters")
        self._get_params = self.node.create_client(GetParameters, f"{self.target}/get_parameters")
        self.action = ActionClient(self.node, Locate, f"{self.target}/locate")
        self._thread = threading.Thread(target=self._spin, name="cgrs-client", daemon=True)
        self._running = True
        self._thread.start()

    # -- plumbing -----------------------------------------------------------------------------
    def _spin(self) -> None:
        while self._running and self.node.context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:
                if self._running:
                    raise

    def _collector(self, name: str) -> Callable:
        def collect(msg) -> None:
            with self._cv:
                self.received[name].append(msg)
                self._cv.notify_all()
        return collect

    def close(self) -> None:
        self._running = False
        self._thread.join(5.0)
        self.action.destroy()
        self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()

    def _wait_future(self, future, timeout: float):
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            raise TimeoutError(f"no answer within {timeout:.0f} s")
        return future.result()

    @staticmethod
    def wait_until(predicate: Callable[[], bool], timeout: float, what: str, period: float = 0.02) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(period)

    # -- lifecycle ----------------------------------------------------------------------------
    def wait_for_node(self, timeout: float = 20.0) -> None:
        """Wait until the node's lifecycle services and action server are reachable."""
        end = time.monotonic() + timeout
        for client in (self._change, self._get, self._set_params):
            if not client.wait_for_service(timeout_sec=max(0.1, end - time.monotonic())):
                raise TimeoutError(f"{client.srv_name} not available within {timeout:.0f} s")
        if not self.action.wait_for_server(timeout_sec=max(0.1, end - time.monotonic())):
            raise TimeoutError(f"{self.target}/locate not available within {timeout:.0f} s")

    def change_state_async(self, transition: str):
        """Request a transition; returns the service future (its result's ``success``)."""
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[transition]
        return self._change.call_async(request)

    def change_state(self, transition: str, timeout: float = 120.0) -> bool:
        return bool(self._wait_future(self.change_state_async(transition), timeout).success)

    def get_state(self, timeout: float = 10.0) -> str:
        return self._wait_future(self._get.call_async(GetState.Request()), timeout).current_state.label

    def set_parameter(self, name: str, value, timeout: float = 10.0) -> tuple[bool, str]:
        """Set one parameter (bool, int, float or str); returns (successful, reason)."""
        if isinstance(value, bool):
            pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
        elif isinstance(value, int):
            pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
        elif isinstance(value, float):
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(value))
        request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=pv)])
        result = self._wait_future(self._set_params.call_async(request), timeout).results[0]
        return bool(result.successful), result.reason

    def get_parameters(self, names: list[str], timeout: float = 10.0) -> dict:
        """{name: value} of the node's parameters (bool, int, float or str)."""
        if not self._get_params.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"{self._get_params.srv_name} not available within {timeout:.0f} s")
        values = self._wait_future(self._get_params.call_async(GetParameters.Request(names=names)), timeout).values
        field = {ParameterType.PARAMETER_BOOL: "bool_value", ParameterType.PARAMETER_INTEGER: "integer_value",
                 ParameterType.PARAMETER_DOUBLE: "double_value", ParameterType.PARAMETER_STRING: "string_value"}
        return {name: getattr(v, field[v.type]) if v.type in field else None for name, v in zip(names, values)}

    # -- topics -------------------------------------------------------------------------------
    def wait_for_connections(self, outputs: tuple[str, ...] | None = None, timeout: float = 20.0) -> None:
        """Goal publisher matched by the node and our output subscriptions matched by its publishers."""
        outputs = tuple(self._subs) if outputs is None else outputs
        self.wait_until(lambda: self.goal_pub.get_subscription_count() > 0, timeout, "the ~/goal subscription")
        for name in outputs:
            sub = self._subs[name]
            self.wait_until(lambda: sub.get_publisher_count() > 0, timeout, f"a publisher on ~/{name}")

    def count(self, name: str) -> int:
        with self._cv:
            return len(self.received[name])

    def send_goal(self, text: str) -> None:
        self.goal_pub.publish(String(data=text))

    def wait_for(self, name: str, predicate: Callable = lambda msg: True, start: int = 0,
                 timeout: float = 30.0):
        """First message on output ``name`` (at index >= ``start``) that satisfies ``predicate``."""
        end = time.monotonic() + timeout
        with self._cv:
            while True:
                for msg in self.received[name][start:]:
                    if predicate(msg):
                        return msg
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching message on ~/{name} within {timeout:.0f} s "
                                       f"({len(self.received[name]) - start} others)")
                self._cv.wait(left)

    def wait_for_goal(self, goal_id: str, start: int = 0, timeout: float = 30.0) -> RankedMatches:
        return self.wait_for("matches", lambda m: m.goal_id == goal_id, start, timeout)

    def wait_for_query(self, query: str, start: int = 0, timeout: float = 30.0) -> RankedMatches:
        return self.wait_for("matches", lambda m: m.query == query, start, timeout)

    # -- action -------------------------------------------------------------------------------
    def send_locate(self, query: str, top_k: int = 0, fusion_weight: float = -1.0, caption_mode: str = "",
                    feedback: list | None = None, timeout: float = 20.0):
        """Send a Locate goal; returns the accepted goal handle (raises if not accepted)."""
        goal = Locate.Goal(query=query, top_k=top_k, fusion_weight=fusion_weight, caption_mode=caption_mode)

        def on_feedback(msg) -> None:
            if feedback is not None:
                with self._cv:
                    feedback.append((msg.feedback.stage, msg.feedback.progress, msg.feedback.stage_code))
                    self._cv.notify_all()

        handle = self._wait_future(self.action.send_goal_async(goal, feedback_callback=on_feedback), timeout)
        if not handle.accepted:
            raise RuntimeError(f"Locate goal {query!r} was rejected")
        return handle

    def result_of(self, handle, timeout: float = 60.0) -> tuple[str, "Locate.Result"]:
        response = self._wait_future(handle.get_result_async(), timeout)
        return STATUS_NAMES.get(response.status, str(response.status)), response.result

    def cancel(self, handle, timeout: float = 10.0):
        return self._wait_future(handle.cancel_goal_async(), timeout)

    def locate(self, query: str, timeout: float = 60.0, **options) -> tuple[str, "Locate.Result", list]:
        """Send a goal and wait for its result: (status name, result, feedback [(stage, progress, code)])."""
        feedback: list = []
        handle = self.send_locate(query, feedback=feedback, **options)
        status, result = self.result_of(handle, timeout)
        return status, result, feedback
