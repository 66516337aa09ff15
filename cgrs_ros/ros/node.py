"""The CGRS lifecycle node: language goal in, ranked gallery matches and target poses out.

Lifecycle (REP-2002 managed node):

- ``configure``: read and validate the parameters, load the engine (index + models), create the
  (lifecycle) publishers and the inference worker.  Any error is logged and the transition returns
  FAILURE, so the node stays *unconfigured* and keeps answering lifecycle requests.
- ``activate``: publishers go live; goals are served.
- ``deactivate``: the pending goal is dropped, the running one is stopped at its next stage, goals
  are refused until the next ``activate``.
- ``cleanup`` / ``shutdown``: the worker stops, ``engine.close()`` frees the models.

Interfaces (all relative to the node, i.e. ``/<ns>/cgrs_node/...``):

- in  ``~/goal`` (std_msgs/String): a language goal; QoS depth 1.
- in  ``~/locate`` (cgrs_ros/action/Locate): the same with per-goal options, feedback per stage,
  cancellation.
- out ``~/matches`` (cgrs_ros/RankedMatches): one message per goal, including rejected, superseded
  and cancelled goals (empty ``matches``, ``status`` says why).
- out ``~/target_pose`` (PoseStamped, best match), ``~/target_poses`` (PoseArray),
  ``~/markers`` (MarkerArray), ``~/match_image`` (Image contact sheet), ``goal_pose`` (PoseStamped,
  only with ``forward_to_nav2``).

Inference runs on one worker thread.  Goals never queue without bound: there is one *pending*
slot shared by topic and action goals; a newer goal supersedes a pending (not yet started) one,
which is answered with status ``superseded: ...`` (topic) or aborted with that message (action).
The running goal is never preempted by a new one (only by cancel / deactivate).
"""
from __future__ import annotations

import gc
import math
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import rclpy
from geometry_msgs.msg import PoseArray, PoseStamped
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from cgrs_ros.action import Locate
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.geo import Datum, validate_datum
from cgrs_ros.msg import RankedMatches
from cgrs_ros.ros import conversions

NODE_NAME = "cgrs_node"
CAPTION_MODES = ("cached", "online", "off")
_DEVICE_RE = re.compile(r"^(|auto|cpu|cuda(:\d+)?)$")
# Datum of the packaged demo world (Zurich); cgrs_ros.world.geodesy.DEFAULT_DATUM when available.
try:
    from cgrs_ros.world.geodesy import DEFAULT_DATUM as _DEMO_DATUM
    DEFAULT_DATUM = (float(_DEMO_DATUM.lat), float(_DEMO_DATUM.lon), float(_DEMO_DATUM.height))
except Exception:  # pragma: no cover - the core's demo world moved; keep the documented values
    DEFAULT_DATUM = (47.3769, 8.5417, 455.0)


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Param:
    name: str
    default: Any
    description: str
    constraints: str = ""
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None


PARAMETERS = (
    _Param("engine_config", "", "Engine YAML (models, fusion); '' = the packaged default.",
           "takes effect at the next configure"),
    _Param("index_dir", "", "Gallery index folder; '' = the demo index (built on first use).",
           "takes effect at the next configure"),
    _Param("device", "auto", "Torch device for the models; '' = the engine config's device.",
           "'' | auto | cpu | cuda | cuda:N; next configure"),
    _Param("top_k", 20, "Coarse (CLIP) candidates reranked by captions.", ">= 1", int_range=(1, 100000)),
    _Param("fusion_weight", -1.0, "Caption score's share of the fused score; < 0 = engine config's value.",
           "<= 1", float_range=(-1.0, 1.0)),
    _Param("caption_mode", "", "Caption source for the rerank; '' = engine config's value.",
           "'' | cached | online | off"),
    _Param("max_results", 10, "Matches reported per goal.", ">= 1", int_range=(1, 10000)),
    _Param("map_frame", "map", "frame_id of every output (ENU about the datum).", "non-empty"),
    _Param("datum_latitude", DEFAULT_DATUM[0], "Map origin latitude (WGS-84 degrees).", "[-90, 90]; next configure"),
    _Param("datum_longitude", DEFAULT_DATUM[1], "Map origin longitude (WGS-84 degrees).", "[-180, 180]; next configure"),
    _Param("datum_altitude", DEFAULT_DATUM[2], "Map origin height above the WGS-84 ellipsoid (m).",
           "next configure"),
    _Param("min_confidence", 0.5, "Fused score the best match needs to be forwarded to goal_pose.",
           "the engine's fused-score scale: z-score fusion by default (0 = an average candidate); "
           "with caption_mode off the fused score is the raw CLIP cosine"),
    _Param("forward_to_nav2", False, "Publish the best pose on goal_pose when its score >= min_confidence "
           "and the result is not degraded."),
    _Param("goal_qos_reliability", "reliable", "Reliability of the ~/goal subscription (depth 1).",
           "reliable | best_effort; read at start-up"),
    _Param("max_query_chars", 500, "Longest goal text accepted.", ">= 1", int_range=(1, 100000)),
    _Param("publish_image", True, "Publish the contact sheet of the matches on ~/match_image."),
    _Param("autostart", False, "Configure and activate by itself after start-up (no lifecycle manager).",
           "read at start-up"),
    _Param("debug_stage_delay", 0.0, "Seconds to wait after each engine stage report (testing and demos "
           "of cancel/supersede only; 0 in production).", "[0, 60]", float_range=(0.0, 60.0)),
)
_PARAM_BY_NAME = {p.name: p for p in PARAMETERS}


def check_parameter(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name`` (None when it is)."""
    if name == "device" and not _DEVICE_RE.match(value):
        return f"device {value!r}: use auto, cpu, cuda or cuda:N ('' = the engine config's)"
    if name == "top_k" and value < 1:
        return f"top_k must be >= 1, got {value}"
    if name == "max_results" and value < 1:
        return f"max_results must be >= 1, got {value}"
    if name == "max_query_chars" and value < 1:
        return f"max_query_chars must be >= 1, got {value}"
    if name == "fusion_weight" and (not math.isfinite(value) or value > 1.0):
        return f"fusion_weight must be <= 1 (negative = engine config's value), got {value}"
    if name == "caption_mode" and value not in ("",) + CAPTION_MODES:
        return f"caption_mode {value!r}: use '', cached, online or off"
    if name == "map_frame" and not value.strip():
        return "map_frame must not be empty"
    if name == "goal_qos_reliability" and value not in ("reliable", "best_effort"):
        return f"goal_qos_reliability {value!r}: use reliable or best_effort"
    if name == "min_confidence" and math.isnan(value):
        return "min_confidence must be a number"
    if name == "debug_stage_delay" and not 0.0 <= value <= 60.0:
        return f"debug_stage_delay must be in [0, 60], got {value}"
    if name in ("datum_latitude", "datum_longitude", "datum_altitude"):
        ranges = {"datum_latitude": (-90.0, 90.0), "datum_longitude": (-180.0, 180.0),
                  "datum_altitude": (-1000.0, 100000.0)}
        low, high = ranges[name]
        if not math.isfinite(value) or not low <= value <= high:
            return f"{name} = {value} is outside [{low:g}, {high:g}]"
    return None


# --------------------------------------------------------------------------------------------
# Goals and the worker
# --------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Job:
    goal_id: str
    query: str
    options: Any                      # cgrs_ros.engine.QueryOptions
    stamp: Any                        # builtin_interfaces/Time: when the goal arrived
    goal_handle: Any = None           # rclpy ServerGoalHandle for action goals
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    outcome: str = "aborted"          # succeeded | aborted | canceled
    result: RankedMatches | None = None
    stop_reason: str = "the node stopped serving"

    @property
    def source(self) -> str:
        return "action" if self.goal_handle is not None else "topic"

    def finish(self, outcome: str, result: RankedMatches) -> None:
        self.outcome, self.result = outcome, result
        self.done.set()


class _GoalWorker:
    """One inference thread with one pending slot: submit() returns the goal it superseded."""

    def __init__(self, run: Callable[[_Job], None], logger):
        self._run, self._logger = run, logger
        self._cv = threading.Condition()
        self._pending: _Job | None = None
        self._current: _Job | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="cgrs-inference", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._current is not None

    @property
    def current(self) -> _Job | None:
        with self._cv:
            return self._current

    def submit(self, job: _Job) -> _Job | None:
        with self._cv:
            if self._closing:
                raise RuntimeError("the inference worker is closed")
            previous, self._pending = self._pending, job
            self._cv.notify_all()
            return previous

    def remove_pending(self, job: _Job) -> bool:
        with self._cv:
            if self._pending is job:
                self._pending = None
                return True
            return False

    def take_pending(self) -> _Job | None:
        with self._cv:
            job, self._pending = self._pending, None
            return job

    def wait_idle(self, timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._current is None and self._pending is None, timeout)

    def close(self, timeout: float = 30.0) -> _Job | None:
        """Stop taking goals; stop the running one; return the pending goal (not run)."""
        with self._cv:
            self._closing = True
            pending, self._pending = self._pending, None
            if self._current is not None:
                self._current.stop.set()
            self._cv.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._logger.warning(f"inference worker still busy after {timeout:.0f} s; leaving it")
        return pending

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending is not None or self._closing)
                if self._closing:
                    return
                job, self._pending = self._pending, None
                self._current = job
            try:
                self._run(job)
            except Exception:  # never let one goal kill the worker
                self._logger.error("inference worker: unexpected error\n" + traceback.format_exc())
            finally:
                with self._cv:
                    self._current = None
                    self._cv.notify_all()
                if not job.done.is_set():
                    job.done.set()


# --------------------------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------------------------
class CGRSNode(LifecycleNode):
    """Lifecycle node serving language goals with the CGRS engine."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        for p in PARAMETERS:
            descriptor = ParameterDescriptor(description=p.description,
                                             additional_constraints=p.constraints)
            if p.int_range:
                descriptor.integer_range = [IntegerRange(from_value=p.int_range[0], to_value=p.int_range[1], step=0)]
            if p.float_range:
                descriptor.floating_point_range = [FloatingPointRange(
                    from_value=p.float_range[0], to_value=p.float_range[1], step=0.0)]
            self.declare_parameter(p.name, p.default, descriptor)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._lock = threading.RLock()
        self._state_label = "unconfigured"
        self._active = False       # goals are accepted
        self._publishing = False   # answers are published (stays on while deactivation drains)
        self._engine = None
        self._worker: _GoalWorker | None = None
        self._datum: Datum | None = None
        self._outputs: dict[str, Any] = {}
        self._topic_goals = 0
        self._bridge = None

        # Inputs exist in every state so that goals sent at the wrong time are answered (action:
        # aborted with a message) or at least logged (topic), instead of silently vanishing.
        reliability = (ReliabilityPolicy.BEST_EFFORT
                       if self.get_parameter("goal_qos_reliability").value == "best_effort"
                       else ReliabilityPolicy.RELIABLE)
        self._input_group = MutuallyExclusiveCallbackGroup()
        self._action_group = ReentrantCallbackGroup()
        self._goal_sub = self.create_subscription(
            String, "~/goal", self._on_goal_msg,
            QoSProfile(depth=1, reliability=reliability, durability=DurabilityPolicy.VOLATILE),
            callback_group=self._input_group)
        self._action_server = ActionServer(
            self, Locate, "~/locate", execute_callback=self._execute_action,
            goal_callback=lambda request: GoalResponse.ACCEPT,
            cancel_callback=lambda goal_handle: CancelResponse.ACCEPT,
            callback_group=self._action_group)

        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.1, self._autostart)
        self.get_logger().info(f"{self.get_fully_qualified_name()} up (unconfigured); "
                               "configure and activate it to serve goals")

    # -- parameters ---------------------------------------------------------------------------
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for param in params:
            if param.name not in _PARAM_BY_NAME:
                continue
            reason = check_parameter(param.name, param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _read_parameters(self) -> dict:
        values = {p.name: self._param(p.name) for p in PARAMETERS}
        for name, value in values.items():
            reason = check_parameter(name, value)
            if reason:
                raise CGRSInputError(f"parameter {reason}")
        return values

    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # -- lifecycle ------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        started = time.perf_counter()
        try:
            values = self._read_parameters()
            datum = validate_datum(values["datum_latitude"], values["datum_longitude"],
                                   values["datum_altitude"])
            engine = self._load_engine(values)
        except CGRSInputError as exc:
            log.error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # a model library error: still a clean failure
            log.error(f"configure failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            return TransitionCallbackReturn.FAILURE
        try:
            with self._lock:
                self._engine, self._datum = engine, datum
                self._create_publishers(values)
                self._worker = _GoalWorker(self._run_job, log)
                self._state_label = "inactive"
        except Exception as exc:
            log.error(f"configure failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            self._release("configure failed")
            return TransitionCallbackReturn.FAILURE
        log.info(f"configured in {time.perf_counter() - started:.1f} s: {len(engine.index.records)} gallery "
                 f"images, device {engine.config.device}, datum ({datum.latitude:.6f}, "
                 f"{datum.longitude:.6f}, {datum.altitude:.1f} m), frame '{values['map_frame']}'")
        return super().on_configure(state)

    def _load_engine(self, values: dict):
        from cgrs_ros.config import load_engine_config
        from cgrs_ros.engine import CGRSEngine

        config = load_engine_config(values["engine_config"] or None)
        retrieval = config.retrieval
        changes = {"top_k": values["top_k"], "max_results": values["max_results"]}
        if values["fusion_weight"] >= 0.0:
            changes["fusion_weight"] = values["fusion_weight"]
        if values["caption_mode"]:
            changes["caption_mode"] = values["caption_mode"]
        config = replace(config, retrieval=replace(retrieval, **changes).validated("node parameters"))
        device = values["device"] or None
        self.get_logger().info(f"loading engine: config {config.source}, index "
                               f"{values['index_dir'] or '(demo index)'}, device {device or config.device}")
        return CGRSEngine.load(config, index_dir=values["index_dir"] or None, device=device)

    def _create_publishers(self, values: dict) -> None:
        reliable = dict(reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, **reliable)
        pubs = {
            "matches": (RankedMatches, "~/matches", QoSProfile(depth=10, **reliable)),
            "target_pose": (PoseStamped, "~/target_pose", latched),
            "target_poses": (PoseArray, "~/target_poses", latched),
            "markers": (MarkerArray, "~/markers", latched),
            "match_image": (Image, "~/match_image", QoSProfile(depth=1, **reliable)),
            "goal_pose": (PoseStamped, "goal_pose", QoSProfile(depth=1, **reliable)),
        }
        for key, (msg_type, topic, qos) in pubs.items():
            self._outputs[key] = self.create_lifecycle_publisher(msg_type, topic, qos)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        if result == TransitionCallbackReturn.SUCCESS:
            with self._lock:
                self._active = self._publishing = True
                self._state_label = "active"
            self.get_logger().info("active: serving goals on ~/goal and ~/locate")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_serving("node deactivated")
        with self._lock:
            self._publishing = False
            self._state_label = "inactive"
        self.get_logger().info("inactive: goals are refused until the next activate")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release("node cleaned up")
        self.get_logger().info("cleaned up: engine released (unconfigured)")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release("node shutting down")
        with self._lock:
            self._state_label = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error processing from state '{state.label}': releasing the engine")
        self._release("node error")
        return TransitionCallbackReturn.SUCCESS

    def _stop_serving(self, why: str, timeout: float = 30.0) -> None:
        """Refuse new goals, drop the pending one, stop the running one and wait for it."""
        with self._lock:
            self._active = False
            if self._state_label == "active":
                self._state_label = "deactivating"
            worker = self._worker
        if worker is None:
            return
        pending = worker.take_pending()
        if pending is not None:
            self._finish(pending, "aborted", f"aborted: {why} before goal {pending.goal_id} started")
        current = worker.current
        if current is not None:
            current.stop.set()
            current.stop_reason = why
        if not worker.wait_idle(timeout):
            self.get_logger().warning(f"the running goal did not stop within {timeout:.0f} s")

    def _release(self, why: str) -> None:
        """Stop serving and free the engine and publishers (cleanup, shutdown, error)."""
        self._stop_serving(why)
        with self._lock:
            self._publishing = False
            worker, self._worker = self._worker, None
            engine, self._engine = self._engine, None
            publishers, self._outputs = self._outputs, {}
            self._state_label = "unconfigured"
        if worker is not None:
            pending = worker.close()
            if pending is not None:
                self._finish(pending, "aborted", f"aborted: {why}", publish=False)
        for pub in publishers.values():
            try:
                self.destroy_lifecycle_publisher(pub)
            except Exception:  # context already shut down
                pass
        if engine is not None:
            try:
                engine.close()
            except Exception as exc:
                self.get_logger().warning(f"engine.close() failed: {exc}")
            del engine
            gc.collect()
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()

    def release(self) -> None:
        """Free everything (used by main() when the process is interrupted in any state)."""
        self._release("node exiting")

    # -- goal intake --------------------------------------------------------------------------
    def _now(self):
        return self.get_clock().now().to_msg()

    def _header(self, stamp):
        return conversions.make_header(stamp, self._param("map_frame"))

    def _check_text(self, text: str) -> str | None:
        """Why a goal text is refused (None if fine)."""
        if not text or not text.strip():
            return "the goal text is empty"
        cap = self._param("max_query_chars")
        length = len(text.strip())
        if length > cap:
            return f"the goal text is {length} characters; the cap is max_query_chars = {cap}"
        return None

    def _options(self, top_k: int = 0, fusion_weight: float = -1.0, caption_mode: str = ""):
        """QueryOptions from the node parameters overridden by an action goal's fields."""
        from cgrs_ros.engine import QueryOptions

        if top_k < 0:
            raise CGRSInputError(f"top_k must be >= 0 (0 = node default), got {top_k}")
        if math.isnan(fusion_weight) or fusion_weight > 1.0:
            raise CGRSInputError(f"fusion_weight must be in [0, 1] (negative = node default), got {fusion_weight}")
        if caption_mode and caption_mode not in CAPTION_MODES:
            raise CGRSInputError(f"caption_mode {caption_mode!r} is unknown; use cached, online, off "
                                 "or '' for the node default")
        node_weight = self._param("fusion_weight")
        options = QueryOptions(
            top_k=top_k or self._param("top_k"),
            fusion_weight=fusion_weight if fusion_weight >= 0.0 else (node_weight if node_weight >= 0.0 else None),
            caption_mode=caption_mode or self._param("caption_mode") or None,
            max_results=self._param("max_results"))
        engine = self._engine
        if engine is not None:
            options.apply(engine.config.retrieval)  # raises CGRSInputError for anything else
        return options

    def _on_goal_msg(self, msg: String) -> None:
        stamp = self._now()
        with self._lock:
            self._topic_goals += 1
            goal_id = f"topic-{self._topic_goals}"
            active, label = self._active, self._state_label
        text = msg.data
        if not active:
            self.get_logger().warning(f"goal {goal_id} ignored: the node is {label}; configure and activate "
                                      f"it first (goal: {text[:80]!r})")
            return
        reason = self._check_text(text)
        options = None
        if reason is None:
            try:
                options = self._options()
            except CGRSInputError as exc:
                reason = str(exc)
        if reason is not None:
            self._finish(_Job(goal_id, text, None, stamp), "aborted", f"rejected: {reason}")
            return
        self._submit(_Job(goal_id, text, options, stamp))

    def _submit(self, job: _Job) -> bool:
        with self._lock:
            worker = self._worker if self._active else None
        if worker is None:
            self._finish(job, "aborted", "aborted: the node is not active", publish=False)
            return False
        try:
            superseded = worker.submit(job)
        except RuntimeError:
            self._finish(job, "aborted", "aborted: the node is shutting down", publish=False)
            return False
        self.get_logger().info(f"goal {job.goal_id} ({job.source}) accepted: {job.query[:80]!r}")
        if superseded is not None:
            self.get_logger().info(f"goal {superseded.goal_id} superseded by {job.goal_id}")
            self._finish(superseded, "aborted",
                         f"superseded: goal {job.goal_id} arrived before goal {superseded.goal_id} started")
        return True

    def _execute_action(self, goal_handle):
        stamp = self._now()
        goal = goal_handle.request
        goal_id = bytes(goal_handle.goal_id.uuid).hex()
        with self._lock:
            active, label = self._active, self._state_label
        job = _Job(goal_id, goal.query, None, stamp, goal_handle=goal_handle)
        if not active:
            self._finish(job, "aborted", f"aborted: the node is {label}; configure and activate it first",
                         publish=False)
            return self._action_result(job)
        reason = self._check_text(goal.query)
        if reason is None:
            try:
                job.options = self._options(goal.top_k, goal.fusion_weight, goal.caption_mode)
            except CGRSInputError as exc:
                reason = str(exc)
        if reason is not None:
            self._finish(job, "aborted", f"rejected: {reason}")
            return self._action_result(job)
        busy = self._worker is not None and self._worker.busy
        self._feedback(job, "queued" if busy else "starting", 0.0)
        if self._submit(job):
            while not job.done.wait(0.05):
                worker = self._worker
                if goal_handle.is_cancel_requested and worker is not None and worker.remove_pending(job):
                    self._finish(job, "canceled", f"canceled: goal {goal_id} was cancelled before it started")
        return self._action_result(job)

    def _action_result(self, job: _Job):
        handle = job.goal_handle
        result = Locate.Result(matches=job.result, success=job.outcome == "succeeded",
                               message=job.result.status if job.result is not None else job.outcome)
        if handle.is_active:
            if job.outcome == "succeeded":
                handle.succeed()
            elif job.outcome == "canceled" and handle.is_cancel_requested:
                handle.canceled()
            else:
                handle.abort()
        return result

    def _feedback(self, job: _Job, stage: str, progress: float) -> None:
        if job.goal_handle is not None:
            try:
                job.goal_handle.publish_feedback(Locate.Feedback(stage=stage, progress=float(progress)))
            except Exception as exc:  # goal handle gone (shutdown)
                self.get_logger().debug(f"goal {job.goal_id}: feedback not sent ({exc})")

    # -- inference (worker thread) --------------------------------------------------------------
    def _should_stop(self, job: _Job) -> bool:
        return job.stop.is_set() or (job.goal_handle is not None and job.goal_handle.is_cancel_requested)

    def _run_job(self, job: _Job) -> None:
        from cgrs_ros.engine import QueryCancelled

        engine = self._engine
        if engine is None or self._should_stop(job):
            self._finish_stopped(job)
            return
        delay = float(self._param("debug_stage_delay"))
        self.get_logger().info(f"goal {job.goal_id} started")

        def progress(stage: str, fraction: float) -> None:
            self._feedback(job, stage, fraction)
            end = time.monotonic() + delay
            while delay > 0 and time.monotonic() < end and not self._should_stop(job):
                time.sleep(0.02)

        started = time.perf_counter()
        try:
            result = engine.query(job.query, job.options, progress=progress,
                                  should_stop=lambda: self._should_stop(job))
        except QueryCancelled:
            self._finish_stopped(job)
            return
        except CGRSInputError as exc:
            self._finish(job, "aborted", f"rejected: {exc}")
            return
        except Exception as exc:
            self.get_logger().error(f"goal {job.goal_id} failed: {type(exc).__name__}: {exc}\n"
                                    + traceback.format_exc())
            self._finish(job, "aborted", f"error: {type(exc).__name__}: {exc}")
            return
        self._publish_result(job, result, time.perf_counter() - started)

    def _finish_stopped(self, job: _Job) -> None:
        if job.goal_handle is not None and job.goal_handle.is_cancel_requested:
            self._finish(job, "canceled", f"canceled: goal {job.goal_id} was cancelled while running")
        else:
            why = getattr(job, "stop_reason", "the node stopped serving")
            self._finish(job, "aborted", f"aborted: {why} while goal {job.goal_id} was running")

    def _publish_result(self, job: _Job, result, seconds: float) -> None:
        header = self._header(job.stamp)
        datum = self._datum
        msg = conversions.result_to_msg(result, job.goal_id, header, datum)
        notes = [("degraded: " if result.degraded else "ok: ") + str(result.status)]
        best = msg.matches[0] if msg.matches else None
        if best is None:
            notes.append("no matches (empty gallery?)")
        elif not best.has_geo:
            notes.append(f"best match {best.image_id} has no coordinates: no target pose published")
        forward = False
        if best is not None and best.has_geo and self._param("forward_to_nav2"):
            threshold = self._param("min_confidence")
            if result.degraded:
                notes.append("not forwarded to goal_pose: degraded result")
            elif best.score < threshold:
                notes.append(f"not forwarded to goal_pose: score {best.score:.3f} < min_confidence {threshold:.3f}")
            else:
                forward = True
                notes.append("forwarded to goal_pose")
        msg.status = "; ".join(notes)
        with self._lock:
            publishing = self._publishing
            pubs = dict(self._outputs)
        if publishing:
            if best is not None and best.has_geo:
                pubs["target_pose"].publish(best.pose)
                if forward:
                    pubs["goal_pose"].publish(best.pose)
            pubs["target_poses"].publish(conversions.pose_array(msg.matches, header))
            pubs["markers"].publish(conversions.markers(msg.matches, header, degraded=result.degraded))
            if self._param("publish_image") and result.matches:
                self._publish_image(job, result, header, pubs["match_image"])
        self.get_logger().info(
            f"goal {job.goal_id}: {len(msg.matches)} matches in {seconds * 1000:.0f} ms"
            + (f", best {best.image_id} score {best.score:.3f}" if best is not None else "")
            + (" [degraded]" if result.degraded else ""))
        self._finish(job, "succeeded", msg.status, result_msg=msg)

    def _publish_image(self, job: _Job, result, header, publisher) -> None:
        try:
            if self._bridge is None:
                from cv_bridge import CvBridge
                self._bridge = CvBridge()
            publisher.publish(conversions.contact_sheet_image(result.matches, header, self._bridge,
                                                               title=f"{job.goal_id}: {job.query}"))
        except Exception as exc:  # the image is a convenience: never fail the goal over it
            self.get_logger().warning(f"goal {job.goal_id}: no match image ({type(exc).__name__}: {exc})")

    # -- answers ------------------------------------------------------------------------------
    def _finish(self, job: _Job, outcome: str, status: str, publish: bool = True,
                result_msg: RankedMatches | None = None) -> None:
        """Give a goal its final answer: publish on ~/matches and wake its action (if any)."""
        if result_msg is None:
            result_msg = conversions.status_msg(job.goal_id, job.query, self._header(job.stamp), status)
        if publish:
            with self._lock:
                pub = self._outputs.get("matches") if self._publishing else None
            if pub is not None:
                pub.publish(result_msg)
        if outcome != "succeeded":
            # (rclpy loggers refuse two severities from one call site: keep two calls)
            if status.startswith(("rejected", "aborted")):
                self.get_logger().warning(f"goal {job.goal_id} ({job.source}): {status}")
            else:
                self.get_logger().info(f"goal {job.goal_id} ({job.source}): {status}")
        job.finish(outcome, result_msg)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    executor = MultiThreadedExecutor(num_threads=6)
    try:
        node = CGRSNode()
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
