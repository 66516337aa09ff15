"""Engine results -> ROS messages, without a node (needs the ROS message packages and interfaces)."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from ros_support import require_ros  # noqa: E402  (test/ros/ros_support.py)

require_ros()
from cgrs_ros.ros import conversions  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from cgrs_ros.engine import Match, PlaceMatch, QueryResult  # noqa: E402
from cgrs_ros.geo import Datum  # noqa: E402
from cgrs_ros.msg import RankedMatches  # noqa: E402
from cgrs_ros.ros.outputs import gate  # noqa: E402
from cgrs_ros.targets import GroundTarget  # noqa: E402

DATUM = Datum(47.37, 8.54, 400.0)
HEADER = conversions.make_header(Time(sec=12, nanosec=34), "map")
# Independent reference values (WGS-84 local radii at 47.37 N, not pymap3d): 0.001 deg of latitude is
# 111.18 m north, 0.001 deg of longitude 75.53 m east.  An east/north swap cannot pass these.
NORTH_PER_MILLIDEGREE, EAST_PER_MILLIDEGREE = 111.18, 75.53


def match(rank, place="p1", lat=47.371, lon=8.541, alt=410.0, heading=90.0, caption_score=0.5, platform="drone"):
    return Match(rank=rank, image_id=f"img{rank}", place_id=place, platform=platform, score=1.0 / rank,
                 coarse_score=0.3, caption_score=caption_score, caption=f"caption {rank}", lat=lat, lon=lon,
                 alt=alt, heading=heading, image_path=Path(f"/nowhere/{rank}.png"), row=rank)


def place(rank, *views):
    return PlaceMatch(rank, views[0].place_id, views[0].score, tuple(views))


def target(place_id="p1", lat=47.372, lon=8.542, ground=395.0):
    return GroundTarget(place_id, lat, lon, ground, "manifest", 3)


def result(places, confidence=math.nan, degraded=False):
    matches = [v for p in places for v in p.views]
    return QueryResult("a red roof", matches, reranked=not degraded, degraded=degraded, status="engine status",
                       settings=None, places=places, confidence=confidence)


def test_target_pose_is_the_place_on_the_ground_camera_pose_the_view():
    msg = conversions.place_to_msg(place(1, match(1), match(2)), target(), DATUM, approach_height=5.0)
    assert msg.has_target and msg.has_geo and msg.n_views == 2 and msg.image_id == "img1"
    assert (msg.target_latitude, msg.target_longitude, msg.target_ground_altitude) == (47.372, 8.542, 395.0)
    p = msg.pose.position
    assert (p.x, p.y, p.z) == pytest.approx((2 * EAST_PER_MILLIDEGREE, 2 * NORTH_PER_MILLIDEGREE, 0.0), abs=0.1)
    c = msg.camera_pose.position
    assert (c.x, c.y, c.z) == pytest.approx((EAST_PER_MILLIDEGREE, NORTH_PER_MILLIDEGREE, 10.0), abs=0.1)
    assert (msg.latitude, msg.longitude, msg.altitude, msg.heading) == (47.371, 8.541, 410.0, 90.0)
    for pose in (msg.pose, msg.camera_pose):   # heading east = ENU yaw 0
        q = pose.orientation
        assert (q.x, q.y, q.z, q.w) == pytest.approx((0.0, 0.0, 0.0, 1.0))


def test_heading_north_is_yaw_plus_90_and_unknown_ground_is_the_datum_height():
    msg = conversions.place_to_msg(place(1, match(1, heading=0.0)), target(ground=None), DATUM, 30.0)
    q = msg.pose.orientation
    assert (q.z, q.w) == pytest.approx((math.sqrt(0.5), math.sqrt(0.5)))
    assert msg.pose.position.z == pytest.approx(30.0, abs=0.01) and math.isnan(msg.target_ground_altitude)


@pytest.mark.parametrize("lat, lon", [(None, None), (math.nan, 8.5)])
def test_place_without_coordinates_is_listed_without_poses(lat, lon):
    msg = conversions.place_to_msg(place(2, match(2, lat=lat, lon=lon, alt=None, heading=None)), None, DATUM, 0.0)
    assert not msg.has_target and not msg.has_geo
    assert math.isnan(msg.latitude) and math.isnan(msg.target_latitude) and math.isnan(msg.heading)


def test_result_pose_array_and_markers():
    places = [place(1, match(1, place="p1")), place(2, match(2, place="p2", lat=None, lon=None)),
              place(3, match(3, place="p3"), match(4, place="p3"))]
    targets = {"p1": target("p1"), "p3": target("p3", lat=47.373)}
    msg = conversions.result_to_msg(result(places, confidence=0.9), "topic-1", HEADER, DATUM, targets)
    assert msg.goal_id == "topic-1" and msg.query == "a red roof" and msg.status == "engine status"
    assert list(msg.image_ids) == ["img1", "img2", "img3", "img4"] and msg.confidence == pytest.approx(0.9)
    assert [(m.place_id, m.n_views, m.has_target) for m in msg.matches] == [("p1", 1, True), ("p2", 1, False),
                                                                             ("p3", 2, True)]
    poses = conversions.pose_array(msg.matches, HEADER)
    assert poses.header == HEADER and list(poses.poses) == [msg.matches[0].pose, msg.matches[2].pose]
    markers = conversions.markers(msg.matches, HEADER).markers
    assert markers[0].action == Marker.DELETEALL
    assert [(m.ns, m.id, m.type) for m in markers[1:]] == [
        ("cgrs_matches", 1, Marker.SPHERE), ("cgrs_labels", 1, Marker.TEXT_VIEW_FACING),
        ("cgrs_matches", 3, Marker.SPHERE), ("cgrs_labels", 3, Marker.TEXT_VIEW_FACING)]
    assert markers[2].text == "#1 p1 1.00" and markers[4].text == "#3 p3 0.33"
    assert all(m.header == HEADER for m in markers)


R = RankedMatches


@pytest.mark.parametrize("confidence, degraded, targets, refused", [
    (math.nan, False, {"p1": target()}, (R.OUTCOME_NOT_CONFIDENT, "confidence uncalibrated (NaN)")),
    (0.79, False, {"p1": target()}, (R.OUTCOME_NOT_CONFIDENT, "confidence 0.790 < min_confidence 0.800")),
    (0.95, True, {"p1": target()}, (R.OUTCOME_DEGRADED, "degraded result (caption stage failed)")),
    (0.95, False, {}, (R.OUTCOME_NO_TARGET, "place p1 has no ground target")),
    (0.8, False, {"p1": target()}, None),
])
def test_navigation_gate(confidence, degraded, targets, refused):
    msg = conversions.result_to_msg(result([place(1, match(1))], confidence, degraded), "g", HEADER, DATUM, targets)
    assert gate(msg, 0.8) == refused


def test_nan_confidence_never_passes_even_a_zero_threshold_and_says_why():
    res = result([place(1, match(1))])
    res.confidence_note = "calibration not fitted for top_k=5"
    msg = conversions.result_to_msg(res, "g", HEADER, DATUM, {"p1": target()})
    assert msg.confidence_note == "calibration not fitted for top_k=5"
    assert gate(msg, 0.0) == (R.OUTCOME_NOT_CONFIDENT,
                              "confidence uncalibrated (NaN) (calibration not fitted for top_k=5)")


def test_an_ambiguous_result_is_never_confident_and_names_the_places():
    """QueryResult.ambiguity (issue 29): the places, what tells them apart and a question, in the message."""
    places = [place(1, match(1, place="p1")), place(2, match(2, place="p2"))]
    res = result(places, confidence=0.99)
    res.ambiguity = SimpleNamespace(place_ids=("p1", "p2"), differences=("pool to the west vs to the east",),
                                    question="Is the pool west or east of the hall?")
    msg = conversions.result_to_msg(res, "g", HEADER, DATUM, {"p1": target("p1"), "p2": target("p2")})
    assert msg.ambiguous and list(msg.ambiguous_place_ids) == ["p1", "p2"]
    assert list(msg.ambiguity_differences) == ["pool to the west vs to the east"]
    assert msg.clarification == "Is the pool west or east of the hall?"
    code, why = gate(msg, 0.0)
    assert code == R.OUTCOME_AMBIGUOUS and "p1, p2" in why and "west or east" in why
    plain = conversions.result_to_msg(result(places, confidence=0.99), "g", HEADER, DATUM, {"p1": target("p1")})
    assert not plain.ambiguous and list(plain.ambiguous_place_ids) == [] and gate(plain, 0.8) is None


def test_geo_pose_is_the_enu_target_on_the_ellipsoid():
    """GeoPoseStamped of a target = the map-frame target pose taken back to WGS-84 (cgrs_ros.geo)."""
    from geographic_msgs.msg import GeoPoseStamped

    from cgrs_ros.geo import enu_to_geodetic

    for ground, approach in ((395.0, 0.0), (395.0, 25.0), (None, 10.0)):
        msg = conversions.place_to_msg(place(1, match(1, heading=30.0)), target(ground=ground), DATUM, approach)
        geo = conversions.geo_pose_stamped(msg, HEADER, DATUM, approach, GeoPoseStamped)
        assert isinstance(geo, GeoPoseStamped) and geo.header == HEADER
        p = msg.pose.position
        lat, lon, alt = enu_to_geodetic(p.x, p.y, p.z, DATUM)
        g = geo.pose.position
        assert (g.latitude, g.longitude) == pytest.approx((lat, lon), abs=1e-7)   # 1 cm
        assert g.altitude == pytest.approx(alt, abs=1e-3)
        assert g.altitude == pytest.approx((DATUM.altitude if ground is None else ground) + approach, abs=1e-3)
        assert geo.pose.orientation == msg.pose.orientation       # ENU yaw, as geographic_msgs takes it
    nowhere = conversions.place_to_msg(place(2, match(2, lat=None, lon=None)), None, DATUM, 0.0)
    assert conversions.geo_pose_stamped(nowhere, HEADER, DATUM, 0.0, GeoPoseStamped) is None


def test_status_message_and_truncated_query():
    msg = conversions.status_msg("g", conversions.truncate_query("y" * 5000, 10), HEADER, R.OUTCOME_REJECTED,
                                 "rejected: why")
    assert msg.matches == [] and msg.status == "rejected: why" and not msg.degraded
    assert msg.outcome == R.OUTCOME_REJECTED
    assert msg.query == "yyyyyyyyyy... [truncated: 5000 characters]" and math.isnan(msg.confidence)
    assert conversions.truncate_query("short", 10) == "short"


def test_contact_sheet_image(tiny_gallery):
    image_path = Path(tiny_gallery).parent / "images" / "p00_v0.png"
    m = SimpleNamespace(**{**match(1).__dict__, "image_path": image_path})
    header = conversions.make_header(Time(sec=12, nanosec=34), conversions.CONTACT_SHEET_FRAME)
    image = conversions.contact_sheet_image([m], header, title="a red roof")
    assert image.encoding == "bgr8" and image.header == header and image.width > 0 and image.height > 0
