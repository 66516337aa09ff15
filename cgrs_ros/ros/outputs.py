"""The node's outputs: every goal's answer on ``~/matches``, the poses, markers and image, and the
Nav2 gate.

``~/matches`` is a plain publisher that exists in every lifecycle state, so a goal sent while the node
is unconfigured, configuring or inactive is answered there with a status saying why, as an action goal
is.  The map outputs (target pose(s), markers, contact sheet, ``goal_pose``) are lifecycle publishers
that live from configure to cleanup and publish only while active.
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


def not_confident(msg: RankedMatches, min_confidence: float) -> str | None:
    """Why the best place of ``msg`` must not be sent to navigation (None: it may).

    A NaN confidence (engine not calibrated) never passes, whatever the threshold.
    """
    if not msg.matches:
        return "no matches"
    if not math.isfinite(msg.confidence):
        return "confidence uncalibrated (NaN)"
    if msg.confidence < min_confidence:
        return f"confidence {msg.confidence:.3f} < min_confidence {min_confidence:.3f}"
    if msg.degraded:
        return "degraded result (caption stage failed)"
    if not msg.matches[0].has_target:
        return f"place {msg.matches[0].place_id} has no ground target"
    return None


class Outputs:
    """Publishers of one node, and the final answer of every goal."""

    def __init__(self, node):
        self._node, self._log = node, node.get_logger()
        self._lock = threading.Lock()
        self._matches = node.create_publisher(RankedMatches, "~/matches", QoSProfile(depth=10, **_RELIABLE))
        self._map: dict = {}
        self._publishing = False
        self._bridge = None

    # -- lifecycle ------------------------------------------------------------------------------
    def create_map_outputs(self) -> None:
        with self._lock:
            self._map = {key: self._node.create_lifecycle_publisher(*spec) for key, spec in MAP_OUTPUTS.items()}

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
    def answer(self, job: Job, outcome: str, status: str, result_msg: RankedMatches | None = None) -> None:
        """Give a goal its final answer: publish it on ~/matches and wake its action (if any)."""
        if result_msg is None:
            header = conversions.make_header(job.stamp, job.settings.map_frame)
            query = conversions.truncate_query(job.query, job.settings.max_query_chars)
            result_msg = conversions.status_msg(job.goal_id, query, header, status)
        try:
            self._matches.publish(result_msg)
        except Exception as exc:  # the node is being destroyed: the action result still goes out
            self._log.debug(f"goal {job.goal_id}: ~/matches not published ({exc})")
        if outcome != "succeeded":
            # (rclpy loggers refuse two severities from one call site: keep two calls)
            if status.startswith(("rejected", "aborted", "error")):
                self._log.warning(f"goal {job.goal_id} ({job.source}): {status}")
            else:
                self._log.info(f"goal {job.goal_id} ({job.source}): {status}")
        job.finish(outcome, result_msg)

    def answer_stopped(self, job: Job) -> None:
        if job.goal_handle is not None and job.goal_handle.is_cancel_requested:
            self.answer(job, "canceled", f"canceled: goal {job.goal_id} was cancelled while running")
        else:
            self.answer(job, "aborted", f"aborted: {job.stop_reason} while goal {job.goal_id} was running")

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
        why_not = not_confident(msg, settings.min_confidence)
        msg.confident = why_not is None
        notes.append(f"no confident match: {why_not}" if why_not else f"confident ({msg.confidence:.3f})")
        forward = msg.confident and settings.forward_to_nav2
        if forward:
            notes.append("forwarded to goal_pose")
        msg.status = "; ".join(notes)
        with self._lock:
            pubs = dict(self._map) if self._publishing else {}
        if pubs:
            if best is not None and best.has_target:
                pubs["target_pose"].publish(best.pose)
            if forward:
                pubs["goal_pose"].publish(best.pose)
            pubs["target_poses"].publish(conversions.pose_array(msg.matches, header))
            pubs["markers"].publish(conversions.markers(msg.matches, header, degraded=result.degraded))
            if settings.publish_image and result.matches:
                self._publish_image(job, result, pubs["match_image"])
        self._log.info(f"goal {job.goal_id}: {len(msg.matches)} places in {seconds * 1000:.0f} ms"
                       + (f", best {best.place_id} ({best.image_id}) score {best.score:.3f}" if best else "")
                       + (" [degraded]" if result.degraded else ""))
        self.answer(job, "succeeded", msg.status, result_msg=msg)

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
