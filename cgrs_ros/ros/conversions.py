"""Engine results -> ROS messages (RankedMatches, PoseStamped, PoseArray, MarkerArray, Image).

Pure functions of their arguments (no node needed), so they are easy to test and reuse.
Conventions: every header carries the time the goal arrived and the map frame; poses are ENU
about the datum (:mod:`cgrs_ros.geo`); matches without coordinates are listed with NaN
latitude/longitude/altitude and ``has_geo`` false but get no pose, marker or PoseArray entry.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseArray, PoseStamped, Quaternion
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from cgrs_ros.geo import Datum, geodetic_to_enu, has_coordinates, heading_to_quaternion
from cgrs_ros.msg import RankedMatch, RankedMatches

NAN = float("nan")
MARKER_NS_SPHERE = "cgrs_matches"
MARKER_NS_LABEL = "cgrs_labels"


def make_header(stamp: Time, frame_id: str) -> Header:
    return Header(stamp=stamp, frame_id=frame_id)


def _float(value, default: float = NAN) -> float:
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def match_has_geo(match) -> bool:
    """True when a match can become a navigation target (finite, in-range lat/lon)."""
    return has_coordinates(getattr(match, "lat", None), getattr(match, "lon", None))


def match_pose(match, datum: Datum, header: Header) -> PoseStamped | None:
    """PoseStamped of a match in the map frame, or None when it has no coordinates."""
    if not match_has_geo(match):
        return None
    east, north, up = geodetic_to_enu(match.lat, match.lon, match.alt, datum)
    qx, qy, qz, qw = heading_to_quaternion(_heading(match))
    return PoseStamped(header=header, pose=Pose(position=Point(x=east, y=north, z=up),
                                                orientation=Quaternion(x=qx, y=qy, z=qz, w=qw)))


def _heading(match) -> float | None:
    heading = getattr(match, "heading", None)
    if heading is None:
        return None
    heading = _float(heading)
    return heading if math.isfinite(heading) else None


def match_to_msg(match, datum: Datum, header: Header) -> RankedMatch:
    """One engine ``Match`` -> ``cgrs_ros/RankedMatch``."""
    msg = RankedMatch()
    msg.rank = int(match.rank)
    msg.image_id = str(match.image_id)
    msg.place_id = str(match.place_id or "")
    msg.platform = str(match.platform or "")
    msg.score = _float(match.score)
    msg.coarse_score = _float(match.coarse_score)
    msg.caption_score = _float(getattr(match, "caption_score", None))
    msg.caption = str(getattr(match, "caption", "") or "")
    pose = match_pose(match, datum, header)
    msg.has_geo = pose is not None
    if pose is not None:
        msg.latitude, msg.longitude = float(match.lat), float(match.lon)
        msg.altitude = _float(match.alt)
        msg.pose = pose
    else:
        msg.latitude = msg.longitude = msg.altitude = NAN
    heading = _heading(match)
    msg.heading = NAN if heading is None else heading
    return msg


def result_to_msg(result, goal_id: str, header: Header, datum: Datum, status: str | None = None) -> RankedMatches:
    """An engine ``QueryResult`` -> ``cgrs_ros/RankedMatches`` (``status`` overrides the engine's)."""
    msg = RankedMatches(header=header, goal_id=goal_id, query=str(result.query))
    msg.matches = [match_to_msg(m, datum, header) for m in result.matches]
    msg.reranked = bool(result.reranked)
    msg.degraded = bool(result.degraded)
    msg.status = status if status is not None else str(result.status)
    return msg


def status_msg(goal_id: str, query: str, header: Header, status: str) -> RankedMatches:
    """A RankedMatches without matches: a rejected, superseded or failed goal."""
    return RankedMatches(header=header, goal_id=goal_id, query=query, matches=[], reranked=False,
                         degraded=False, status=status)


def pose_array(matches: Iterable[RankedMatch], header: Header) -> PoseArray:
    """Poses of the geo-tagged matches, best first."""
    return PoseArray(header=header, poses=[m.pose.pose for m in matches if m.has_geo])


def _colour(rank: int, count: int, degraded: bool) -> ColorRGBA:
    """Best match green, fading to red down the list; degraded results are drawn orange-ish."""
    t = 0.0 if count <= 1 else (rank - 1) / (count - 1)
    if degraded:
        return ColorRGBA(r=1.0, g=0.6 - 0.4 * t, b=0.0, a=0.9)
    return ColorRGBA(r=t, g=1.0 - t, b=0.1, a=0.9)


def markers(matches: Sequence[RankedMatch], header: Header, degraded: bool = False,
            sphere_diameter: float = 4.0) -> MarkerArray:
    """DELETEALL, then a sphere and a text label ('#rank image_id score') per geo-tagged match."""
    out = MarkerArray()
    out.markers.append(Marker(header=header, action=Marker.DELETEALL))
    geo = [m for m in matches if m.has_geo]
    for m in geo:
        colour = _colour(m.rank, len(matches), degraded)
        scale = sphere_diameter * (1.5 if m.rank == 1 else 1.0)
        sphere = Marker(header=header, ns=MARKER_NS_SPHERE, id=int(m.rank), type=Marker.SPHERE,
                        action=Marker.ADD, pose=m.pose.pose, color=colour)
        sphere.scale.x = sphere.scale.y = sphere.scale.z = scale
        label = Marker(header=header, ns=MARKER_NS_LABEL, id=int(m.rank), type=Marker.TEXT_VIEW_FACING,
                       action=Marker.ADD, color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0),
                       text=f"#{m.rank} {m.image_id} {m.score:.2f}" + (" (degraded)" if degraded and m.rank == 1 else ""))
        label.pose.position = Point(x=m.pose.pose.position.x, y=m.pose.pose.position.y,
                                    z=m.pose.pose.position.z + scale)
        label.pose.orientation.w = 1.0
        label.scale.z = max(1.0, 0.5 * sphere_diameter)
        out.markers += [sphere, label]
    return out


def contact_sheet_image(matches, header: Header, bridge=None, title: str = ""):
    """sensor_msgs/Image (bgr8) of the contact sheet (:mod:`cgrs_ros.contact_sheet`) of engine matches."""
    from cgrs_ros.contact_sheet import render_contact_sheet

    if bridge is None:
        from cv_bridge import CvBridge
        bridge = CvBridge()
    sheet = render_contact_sheet(matches, title=title)
    image = bridge.cv2_to_imgmsg(sheet, encoding="bgr8")
    image.header = header
    return image
