"""Engine results -> ROS messages (RankedMatches, PoseStamped, GeoPoseStamped, PoseArray, MarkerArray,
Image).

Pure functions of their arguments (no node needed), so they are easy to test and reuse.
Conventions: every header carries the time the goal arrived and the map frame (the contact sheet:
its own frame); poses are ENU about the datum (:mod:`cgrs_ros.geo`).  A RankedMatch is a *place*:
``pose`` is its ground target (:mod:`cgrs_ros.targets`), ``camera_pose`` where its best view was
taken, both plain Poses in the frame of the enclosing RankedMatches' header.  A place without any
geo-tagged view is listed with NaN coordinates and ``has_target`` false but gets no pose, marker or
PoseArray entry.  The engine's optional answers (``ambiguity``, ``confidence_note``) are read in one
place, :func:`ambiguity_of` / :func:`confidence_note_of`.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseArray, PoseStamped, Quaternion
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from cgrs_ros.geo import Datum, geodetic_to_enu, has_coordinates, heading_to_quaternion
from cgrs_ros.msg import RankedMatch, RankedMatches
from cgrs_ros.targets import GroundTarget

NAN = float("nan")
MARKER_NS_SPHERE = "cgrs_matches"
MARKER_NS_LABEL = "cgrs_labels"
CONTACT_SHEET_FRAME = "cgrs_contact_sheet"   # frame_id of ~/match_image (an image, not a map view)


def make_header(stamp: Time, frame_id: str) -> Header:
    return Header(stamp=stamp, frame_id=frame_id)


def _float(value, default: float = NAN) -> float:
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def truncate_query(text: str, limit: int) -> str:
    """``text`` for echoing in a message: at most ``limit`` characters, with a note when cut, so that a
    refused 200 kB goal is not published back whole."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [truncated: {len(text)} characters]"


def _pose(east: float, north: float, up: float, heading: float | None) -> Pose:
    qx, qy, qz, qw = heading_to_quaternion(heading)
    return Pose(position=Point(x=east, y=north, z=up), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def stamped(pose: Pose, header: Header) -> PoseStamped:
    return PoseStamped(header=header, pose=pose)


def camera_pose(match, datum: Datum) -> Pose | None:
    """Where a view's camera was, in the map frame, or None when the view has no coordinates."""
    if not has_coordinates(match.lat, match.lon):
        return None
    return _pose(*geodetic_to_enu(match.lat, match.lon, match.alt, datum), _heading(match))


def target_pose(target: GroundTarget, datum: Datum, approach_height: float, heading: float | None) -> Pose:
    """A place's ground target in the map frame: z = its ground (the datum's height when unknown)
    + ``approach_height``; yaw from ``heading`` (compass degrees), identity when None."""
    east, north, up = geodetic_to_enu(target.latitude, target.longitude, target.ground_altitude, datum)
    return _pose(east, north, up + approach_height, heading)


def geo_pose_stamped(match: RankedMatch, header: Header, datum: Datum, approach_height: float, message_type):
    """The target of ``match`` as ``message_type`` (geographic_msgs/GeoPoseStamped, imported by the
    caller: an optional package): WGS-84 latitude/longitude of the place; altitude = its ground height
    above the WGS-84 *ellipsoid* (as geographic_msgs/GeoPoint defines it; the datum's height when the
    ground is unknown, as for the map-frame pose) + ``approach_height``; orientation = the map-frame
    pose's (geographic_msgs takes it in ENU).  None when the place has no target."""
    if not match.has_target:
        return None
    ground = match.target_ground_altitude if math.isfinite(match.target_ground_altitude) else datum.altitude
    out = message_type()
    out.header = header
    position = out.pose.position
    position.latitude, position.longitude = match.target_latitude, match.target_longitude
    position.altitude = ground + approach_height
    out.pose.orientation = match.pose.orientation
    return out


def ambiguity_of(result) -> tuple[tuple[str, ...], tuple[str, ...], str] | None:
    """(place ids best first, differences in words, question) when the engine found the goal ambiguous,
    else None.  (QueryResult.ambiguity is newer than some engines: read it here only.)"""
    ambiguity = getattr(result, "ambiguity", None)
    if ambiguity is None:
        return None
    return (tuple(str(p) for p in getattr(ambiguity, "place_ids", ())),
            tuple(str(d) for d in getattr(ambiguity, "differences", ())), str(getattr(ambiguity, "question", "")))


def confidence_note_of(result) -> str:
    """Why the engine's confidence is NaN or low ('' when it says nothing)."""
    return str(getattr(result, "confidence_note", "") or "")


def _heading(match) -> float | None:
    heading = _float(match.heading)
    return heading if math.isfinite(heading) else None


def place_to_msg(place, target: GroundTarget | None, datum: Datum, approach_height: float) -> RankedMatch:
    """One engine ``PlaceMatch`` (and its ground target) -> ``cgrs_ros/RankedMatch``."""
    best = place.best
    heading = _heading(best)
    msg = RankedMatch(rank=int(place.rank), place_id=str(place.place_id or ""), image_id=str(best.image_id),
                      platform=str(best.platform or ""), n_views=int(place.n_views), score=_float(place.score),
                      coarse_score=_float(best.coarse_score), caption_score=_float(best.caption_score),
                      caption=str(best.caption or ""), heading=NAN if heading is None else heading)
    msg.has_target = target is not None
    if target is not None:
        msg.target_latitude, msg.target_longitude = target.latitude, target.longitude
        msg.target_ground_altitude = _float(target.ground_altitude)
        msg.pose = target_pose(target, datum, approach_height, heading)
    else:
        msg.target_latitude = msg.target_longitude = msg.target_ground_altitude = NAN
    camera = camera_pose(best, datum)
    msg.has_geo = camera is not None
    if camera is not None:
        msg.latitude, msg.longitude, msg.altitude = float(best.lat), float(best.lon), _float(best.alt)
        msg.camera_pose = camera
    else:
        msg.latitude = msg.longitude = msg.altitude = NAN
    return msg


def result_to_msg(result, goal_id: str, header: Header, datum: Datum, targets: Mapping[str, GroundTarget],
                  approach_height: float = 0.0) -> RankedMatches:
    """An engine ``QueryResult`` -> ``cgrs_ros/RankedMatches``: one entry per place, the image ranking
    in ``image_ids``, the ambiguity if any; ``outcome``, ``confident`` and ``status`` are the node's to
    decide (:mod:`cgrs_ros.ros.outputs`)."""
    msg = RankedMatches(header=header, goal_id=goal_id, query=str(result.query), status=str(result.status))
    msg.matches = [place_to_msg(p, targets.get(p.place_id), datum, approach_height) for p in result.places]
    msg.image_ids = [str(m.image_id) for m in result.matches]
    msg.confidence = _float(result.confidence)
    msg.confidence_note = confidence_note_of(result)
    msg.reranked, msg.degraded = bool(result.reranked), bool(result.degraded)
    ambiguity = ambiguity_of(result)
    msg.ambiguous = ambiguity is not None
    if ambiguity is not None:
        msg.ambiguous_place_ids, msg.ambiguity_differences, msg.clarification = list(ambiguity[0]), \
            list(ambiguity[1]), ambiguity[2]
    return msg


def status_msg(goal_id: str, query: str, header: Header, outcome: int, status: str) -> RankedMatches:
    """A RankedMatches without matches: a goal that did not run (rejected, superseded, ...)."""
    return RankedMatches(header=header, goal_id=goal_id, query=query, matches=[], confidence=NAN,
                         reranked=False, degraded=False, outcome=outcome, status=status)


def pose_array(matches: Iterable[RankedMatch], header: Header) -> PoseArray:
    """Poses of the geo-tagged matches, best first."""
    return PoseArray(header=header, poses=[m.pose for m in matches if m.has_target])


def _colour(rank: int, count: int, degraded: bool) -> ColorRGBA:
    """Best match green, fading to red down the list; degraded results are drawn orange-ish."""
    t = 0.0 if count <= 1 else (rank - 1) / (count - 1)
    if degraded:
        return ColorRGBA(r=1.0, g=0.6 - 0.4 * t, b=0.0, a=0.9)
    return ColorRGBA(r=t, g=1.0 - t, b=0.1, a=0.9)


def markers(matches: Sequence[RankedMatch], header: Header, degraded: bool = False,
            sphere_diameter: float = 4.0) -> MarkerArray:
    """DELETEALL, then a sphere and a text label ('#rank place_id score') per place with a target."""
    out = MarkerArray()
    out.markers.append(Marker(header=header, action=Marker.DELETEALL))
    geo = [m for m in matches if m.has_target]
    for m in geo:
        colour = _colour(m.rank, len(matches), degraded)
        scale = sphere_diameter * (1.5 if m.rank == 1 else 1.0)
        sphere = Marker(header=header, ns=MARKER_NS_SPHERE, id=int(m.rank), type=Marker.SPHERE,
                        action=Marker.ADD, pose=m.pose, color=colour)
        sphere.scale.x = sphere.scale.y = sphere.scale.z = scale
        label = Marker(header=header, ns=MARKER_NS_LABEL, id=int(m.rank), type=Marker.TEXT_VIEW_FACING,
                       action=Marker.ADD, color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0),
                       text=f"#{m.rank} {m.place_id} {m.score:.2f}" + (" (degraded)" if degraded and m.rank == 1 else ""))
        label.pose.position = Point(x=m.pose.position.x, y=m.pose.position.y, z=m.pose.position.z + scale)
        label.pose.orientation.w = 1.0
        label.scale.z = max(1.0, 0.5 * sphere_diameter)
        out.markers += [sphere, label]
    return out


def contact_sheet_image(matches, header: Header, bridge=None, title: str = ""):
    """sensor_msgs/Image (bgr8) of the contact sheet (:mod:`cgrs_ros.contact_sheet`) of engine matches.

    ``header.frame_id`` should be :data:`CONTACT_SHEET_FRAME`: a picture has no place in the map."""
    from cgrs_ros.contact_sheet import render_contact_sheet

    if bridge is None:
        from cv_bridge import CvBridge
        bridge = CvBridge()
    sheet = render_contact_sheet(matches, title=title)
    image = bridge.cv2_to_imgmsg(sheet, encoding="bgr8")
    image.header = header
    return image
