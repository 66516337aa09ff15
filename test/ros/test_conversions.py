"""Engine results -> ROS messages, without a node (needs the ROS message packages and interfaces)."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("rclpy")
try:
    from cgrs_ros.ros import conversions
except ImportError as exc:  # pragma: no cover - interfaces not built
    pytest.skip(f"cgrs_ros interfaces not built ({exc}); run scripts/build_interfaces.sh", allow_module_level=True)

from builtin_interfaces.msg import Time  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from cgrs_ros.engine import Match, QueryResult  # noqa: E402
from cgrs_ros.geo import Datum, geodetic_to_enu  # noqa: E402

DATUM = Datum(47.37, 8.54, 400.0)
HEADER = conversions.make_header(Time(sec=12, nanosec=34), "map")


def match(rank, lat=47.371, lon=8.541, alt=410.0, heading=90.0, caption_score=0.5):
    return Match(rank=rank, image_id=f"img{rank}", place_id=f"p{rank}", platform="drone", score=1.0 / rank,
                 coarse_score=0.3, caption_score=caption_score, caption=f"caption {rank}", lat=lat, lon=lon,
                 alt=alt, heading=heading, image_path=Path(f"/nowhere/{rank}.png"), row=rank)


def result(matches, degraded=False):
    return QueryResult("a red roof", matches, reranked=not degraded, degraded=degraded, status="engine status",
                       settings=None)


def test_geo_match_gets_a_pose_in_the_map_frame():
    msg = conversions.match_to_msg(match(1), DATUM, HEADER)
    assert msg.has_geo and msg.rank == 1 and msg.image_id == "img1" and msg.caption == "caption 1"
    assert (msg.latitude, msg.longitude, msg.altitude, msg.heading) == (47.371, 8.541, 410.0, 90.0)
    assert msg.pose.header == HEADER
    p = msg.pose.pose.position
    assert (p.x, p.y, p.z) == pytest.approx(geodetic_to_enu(47.371, 8.541, 410.0, DATUM))
    q = msg.pose.pose.orientation
    assert (q.x, q.y, q.z, q.w) == pytest.approx((0.0, 0.0, 0.0, 1.0))   # heading east = yaw 0


@pytest.mark.parametrize("lat, lon", [(None, None), (math.nan, 8.5)])
def test_match_without_coordinates_is_listed_without_pose(lat, lon):
    msg = conversions.match_to_msg(match(2, lat=lat, lon=lon, alt=None, heading=None), DATUM, HEADER)
    assert not msg.has_geo
    assert math.isnan(msg.latitude) and math.isnan(msg.longitude) and math.isnan(msg.altitude)
    assert math.isnan(msg.heading) and msg.pose.header.frame_id == ""


def test_unknown_altitude_and_caption_score():
    msg = conversions.match_to_msg(match(1, alt=None, caption_score=math.nan), DATUM, HEADER)
    assert msg.has_geo and math.isnan(msg.altitude) and math.isnan(msg.caption_score)


def test_result_pose_array_and_markers():
    matches = [match(1), match(2, lat=None, lon=None), match(3, lat=47.372)]
    msg = conversions.result_to_msg(result(matches), "topic-1", HEADER, DATUM)
    assert msg.goal_id == "topic-1" and msg.query == "a red roof" and msg.status == "engine status"
    assert [m.has_geo for m in msg.matches] == [True, False, True]
    poses = conversions.pose_array(msg.matches, HEADER)
    assert poses.header == HEADER and list(poses.poses) == [msg.matches[0].pose.pose, msg.matches[2].pose.pose]
    markers = conversions.markers(msg.matches, HEADER).markers
    assert markers[0].action == Marker.DELETEALL
    assert [(m.ns, m.id, m.type) for m in markers[1:]] == [
        ("cgrs_matches", 1, Marker.SPHERE), ("cgrs_labels", 1, Marker.TEXT_VIEW_FACING),
        ("cgrs_matches", 3, Marker.SPHERE), ("cgrs_labels", 3, Marker.TEXT_VIEW_FACING)]
    assert markers[2].text == "#1 img1 1.00" and markers[4].text == "#3 img3 0.33"
    assert all(m.header == HEADER for m in markers)


def test_status_message():
    msg = conversions.status_msg("g", "q", HEADER, "rejected: why")
    assert msg.matches == [] and msg.status == "rejected: why" and not msg.degraded


def test_contact_sheet_image(tiny_gallery):
    image_path = Path(tiny_gallery).parent / "images" / "p00_v0.png"
    m = SimpleNamespace(**{**match(1).__dict__, "image_path": image_path})
    image = conversions.contact_sheet_image([m], HEADER, title="a red roof")
    assert image.encoding == "bgr8" and image.header == HEADER and image.width > 0 and image.height > 0
