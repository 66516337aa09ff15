"""The node's outputs: every goal's answer on ``~/matches`` (an outcome code and a sentence), the
poses, geographic targets, markers and image, and the navigation gate.

``~/matches`` is a plain publisher that exists in every lifecycle state, so a goal sent while the node
is unconfigured, configuring or inactive is answered there with an outcome saying why, as an action
goal is.  The map outputs (target pose(s), geographic target, markers, contact sheet, ``goal_pose``,
``goal_geopose``) are lifecycle publishers that live from configure to cleanup and publish only
while active.  The GeoPoseStamped outputs exist where geographic_msgs imports (an optional package:
said once in the log otherwise).
"""
from __future__ import annotations

import math
import threading

from geometry_msgs.msg import PoseArray, PoseStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

from cgrs_ros.msg import RankedMatches
from cgrs_ros.ros import conversions
from cgrs_ros.ros.worker import Job

_RELIABLE = dict(reliability=ReliabilityPolicy.RELIABLE)
_LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, **_RELIABLE)
MAP_OUTPUTS = {
    "target_pose": (PoseStamped, "~/target_pose", _LATCHED),
    "target_poses": (PoseArray, "~/target_poses", _LATCHED),
    "markers": (MarkerArray, "~/markers", _LATCHED),
    "match_image": (Image, "~/match_image", QoSProfile(depth=1, **_RELIABLE)),
    "goal_pose": (PoseStamped, "goal_pose", QoSProfile(depth=1, **_RELIABLE)),
}
GEO_OUTPUTS = {"target_geopose": ("~/target_geopose", _LATCHED),
               "goal_geopose": ("goal_geopose", QoSProfile(depth=1, **_RELIABLE))}

R = RankedMatches
# Outcomes of a goal the engine ran: the action succeeds (the answer says how good it is).
RAN = (R.OUTCOME_OK, R.OUTCOME_NOT_CONFIDENT, R.OUTCOME_AMBIGUOUS, R.OUTCOME_DEGRADED, R.OUTCOME_NO_TARGET)
# Outcomes logged as warnings (the rest as info).
_WARN = (R.OUTCOME_REJECTED, R.OUTCOME_ABORTED, R.OUTCOME_FAILED, R.OUTCOME_NOT_ACTIVE)


def action_status(outcome: int) -> str:
    """The action's terminal state for an outcome: succeeded (the goal ran), canceled or aborted."""
    if outcome in RAN:
        return "succeeded"
    return "canceled" if outcome == R.OUTCOME_CANCELED else "aborted"


def gate(msg: RankedMatches, min_confidence: float) -> tuple[int, str] | None:
    """(outcome code, why) when the best place of ``msg`` must not be sent to navigation; None: it may.

    Checked in this order, the first failing check names the outcome: no place, degraded, ambiguous,
    no ground target, confidence.  A NaN confidence (engine not calibrated) never passes, whatever
    the threshold.
    """
    if not msg.matches:
        return R.OUTCOME_NO_TARGET, "no matches"
    if msg.degraded:
        return R.OUTCOME_DEGRADED, "degraded result (caption stage failed)"
    if msg.ambiguous:
        return R.OUTCOME_AMBIGUOUS, (f"ambiguous between {', '.join(msg.ambiguous_place_ids)}"
                                     + (f" ({'; '.join(msg.ambiguity_differences)})" if msg.ambiguity_differences
                                        else "") + (f": {msg.clarification}" if msg.clarification else ""))
    if not msg.matches[0].has_target:
        return R.OUTCOME_NO_TARGET, f"place {msg.matches[0].place_id} has no ground target"
    note = f" ({msg.confidence_note})" if msg.confidence_note else ""
    if not math.isfinite(msg.confidence):
        return R.OUTCOME_NOT_CONFIDENT, f"confidence uncalibrated (NaN){note}"
    if msg.confidence < min_confidence:
        return R.OUTCOME_NOT_CONFIDENT, f"confidence {msg.confidence:.3f} < min_confidence {min_confidence:.3f}{note}"
    return None


def _geo_pose_type():
    try:
        from geographic_msgs.msg import GeoPoseStamped
    except ImportError:
        return None
    return GeoPoseStamped


class Outputs:
    """Publishers of one node, and the final answer of every goal."""

    def __init__(self, node):
        self._node, self._log = node, node.get_logger()
        self._lock = threading.Lock()
        self._matches = node.create_publisher(RankedMatches, "~/matches", QoSProfile(depth=10, **_RELIABLE))
        self._map: dict = {}
        self._publishing = False
        self._bridge = None
        self._geo_type = _geo_pose_type()
        self.navigator = None        # cgrs_ros.ros.navigation.Navigator while configured with nav2_action

    # -- lifecycle ------------------------------------------------------------------------------
    def create_map_outputs(self) -> None:
        specs = dict(MAP_OUTPUTS)
        if self._geo_type is not None:
            specs.update({key: (self._geo_type, topic, qos) for key, (topic, qos) in GEO_OUTPUTS.items()})
        else:
            self._log.warning("geographic_msgs is not installed: no ~/target_geopose or goal_geopose "
                              "(apt install ros-$ROS_DISTRO-geographic-msgs)", once=True)
        with self._lock:
            self._map = {key: self._node.create_lifecycle_publisher(*spec) for key, spec in specs.items()}

    def set_publishing(self, on: bool) -> None:
        with self._lock:
            self._publishing = on

    def destroy_map_outputs(self) -> None:
        with self._lock:
            publishers, self._map, self._publishing = self._map, {}, False
        for publisher in publishers.values():
            try:
                self._node.destroy_lifecycle_publisher(publisher)
            except Exception:  # context already shut down
                pass

    # -- answers --------------------------------------------------------------------------------
    def answer(self, job: Job, outcome: int, status: str, result_msg: RankedMatches | None = None) -> None:
        """Give a goal its final answer: publish it on ~/matches and wake its action (if any)."""
        if result_msg is None:
            header = conversions.make_header(job.stamp, job.settings.map_frame)
            query = conversions.truncate_query(job.query, job.settings.max_query_chars)
            result_msg = conversions.status_msg(job.goal_id, query, header, outcome, status)
        try:
            self._matches.publish(result_msg)
        except Exception as exc:  # the node is being destroyed: the action result still goes out
            self._log.debug(f"goal {job.goal_id}: ~/matches not published ({exc})")
        if outcome not in RAN:
            # (rclpy loggers refuse two severities from one call site: keep two calls)
            if outcome in _WARN:
                self._log.warning(f"goal {job.goal_id} ({job.source}): {status}")
            else:
                self._log.info(f"goal {job.goal_id} ({job.source}): {status}")
        job.finish(action_status(outcome), result_msg)

    def answer_stopped(self, job: Job) -> None:
        if job.goal_handle is not None and job.goal_handle.is_cancel_requested:
            self.answer(job, R.OUTCOME_CANCELED, f"canceled: goal {job.goal_id} was cancelled while running")
        else:
            self.answer(job, R.OUTCOME_ABORTED, f"aborted: {job.stop_reason} while goal {job.goal_id} was running")

    def publish_result(self, job: Job, result, seconds: float) -> None:
        """Answer a goal the engine ran: RankedMatches (places), map outputs, and goal_pose if confident."""
        settings, serving = job.settings, job.serving
        header = conversions.make_header(job.stamp, settings.map_frame)
        msg = conversions.result_to_msg(result, job.goal_id, header, serving.datum, serving.targets,
                                        settings.approach_height)
        notes = [("degraded: " if result.degraded else "ok: ") + str(result.status)]
        best = msg.matches[0] if msg.matches else None
        if best is not None and not best.has_target:
            notes.append(f"best place {best.place_id} has no coordinates: no target pose published")
        refused = gate(msg, settings.min_confidence)
        msg.confident = refused is None
        msg.outcome = R.OUTCOME_OK if refused is None else refused[0]
        notes.append(f"no confident match: {refused[1]}" if refused else f"confident ({msg.confidence:.3f})")
        forward = msg.confident and settings.forward_to_nav2
        if forward:
            notes.append("forwarded to goal_pose")
        msg.status = "; ".join(notes)
        with self._lock:
            pubs = dict(self._map) if self._publishing else {}
        if pubs:
            self._publish_map(job, result, msg, pubs, forward)
        self._log.info(f"goal {job.goal_id}: {len(msg.matches)} places in {seconds * 1000:.0f} ms"
                       + (f", best {best.place_id} ({best.image_id}) score {best.score:.3f}" if best else "")
                       + (" [degraded]" if result.degraded else ""))
        self.answer(job, msg.outcome, msg.status, result_msg=msg)

    def _publish_map(self, job: Job, result, msg: RankedMatches, pubs: dict, forward: bool) -> None:
        header, best = msg.header, (msg.matches[0] if msg.matches else None)
        settings = job.settings
        if best is not None and best.has_target:
            target = conversions.stamped(best.pose, header)
            pubs["target_pose"].publish(target)
            geo = (conversions.geo_pose_stamped(best, header, job.serving.datum, settings.approach_height,
                                                self._geo_type) if "target_geopose" in pubs else None)
            if geo is not None:
                pubs["target_geopose"].publish(geo)
            if forward:
                pubs["goal_pose"].publish(target)
                if geo is not None:
                    pubs["goal_geopose"].publish(geo)
                if self.navigator is not None:
                    self.navigator.send(job.goal_id, target)
        pubs["target_poses"].publish(conversions.pose_array(msg.matches, header))
        pubs["markers"].publish(conversions.markers(msg.matches, header, degraded=result.degraded))
        # The contact sheet costs more than the rest of the answer: drawn only for someone who listens.
        image = pubs["match_image"]
        if settings.publish_image and result.matches and image.get_subscription_count() > 0:
            self._publish_image(job, result, image)

    def _publish_image(self, job: Job, result, publisher) -> None:
        try:
            if self._bridge is None:
                from cv_bridge import CvBridge
                self._bridge = CvBridge()
            header = conversions.make_header(job.stamp, conversions.CONTACT_SHEET_FRAME)
            publisher.publish(conversions.contact_sheet_image([p.best for p in result.places], header, self._bridge,
                                                               title=f"{job.goal_id}: {job.query[:80]}"))
        except Exception as exc:  # the image is a convenience: never fail the goal over it
            self._log.warning(f"goal {job.goal_id}: no match image ({type(exc).__name__}: {exc})")
