"""The CGRS lifecycle node end to end: a real node process, the real engine with small real models.

One node process serves the whole module (model loading dominates the cost); the tests run in file
order and each one first brings the node into the lifecycle state it needs.  The client lives in
the test process (cgrs_ros.ros.client) on this module's own ROS domain, localhost only.
Skipped (by the ``ros_context`` fixture) where rclpy or the built interfaces are missing.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

MAP_FRAME = "map_test"
DATUM = (47.3695, 8.5405, 40.0)   # south of the tiny gallery (47.370-47.375 N), 10-12 m below it
STATE_TIMEOUT = 120.0             # configure loads models: generous on 2 busy cores


@pytest.fixture(scope="module")
def node_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cgrs_node") / "node.log"


@pytest.fixture(scope="module")
def node(tiny_engine_files, ros_context, ros_domain, node_log):
    """The node process, started with an index folder that does not exist (configure must fail)."""
    from cgrs_ros.ros.client import start_node_process, stop_node_process

    engine_config, _ = tiny_engine_files
    process = start_node_process(
        {"engine_config": str(engine_config), "index_dir": str(node_log.parent / "no_such_index"),
         "device": "cpu", "map_frame": MAP_FRAME, "datum_latitude": DATUM[0], "datum_longitude": DATUM[1],
         "datum_altitude": DATUM[2], "top_k": 6, "max_results": 5, "max_query_chars": 200},
        log_path=node_log, domain_id=ros_domain)
    yield process
    code = stop_node_process(process)
    assert code == 0, f"node exited with {code}; log:\n{node_log.read_text()[-3000:]}"


def log_text(path: Path) -> str:
    return path.read_text(errors="replace")


def wait_log(path: Path, text: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while text not in log_text(path):
        if time.monotonic() > end:
            raise AssertionError(f"{text!r} not in the node log:\n{log_text(path)[-2000:]}")
        time.sleep(0.05)


def ensure_active(client) -> None:
    state = client.get_state()
    if state == "unconfigured":
        assert client.change_state("configure", STATE_TIMEOUT)
        state = "inactive"
    if state == "inactive":
        assert client.change_state("activate")
    assert client.get_state() == "active"
    client.wait_for_connections(timeout=20.0)


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


# ------------------------------------------------------------------------------------------------
def test_configure_fails_cleanly_then_succeeds(node, client, node_log, tiny_engine_files):
    assert client.get_state() == "unconfigured"
    assert client.change_state("configure", STATE_TIMEOUT) is False
    assert node.poll() is None, "the node must survive a failed configure"
    assert client.get_state() == "unconfigured"
    assert "configure failed" in log_text(node_log) and "no_such_index" in log_text(node_log)

    # Goals while unconfigured: the action is aborted with a reason, the topic goal answered on ~/matches.
    status, result, _ = client.locate("a red roof", timeout=20.0)
    assert status == "aborted" and not result.success
    assert "unconfigured" in result.message and "configure" in result.message
    client.wait_for_connections(outputs=("matches",))
    start = client.count("matches")
    client.send_goal("a red roof, unconfigured")
    msg = client.wait_for_query("a red roof, unconfigured", start)
    assert msg.goal_id.startswith("topic-") and not msg.matches
    assert msg.outcome == msg.OUTCOME_NOT_ACTIVE and result.matches.outcome == msg.OUTCOME_NOT_ACTIVE
    assert msg.status == "aborted: the node is unconfigured; configure and activate it first"

    # Invalid parameter values are refused with a reason; valid ones accepted.
    ok, reason = client.set_parameter("device", "gpu")
    assert not ok and "cuda" in reason
    ok, reason = client.set_parameter("top_k", -1)
    assert not ok and "top_k" in reason

    _, index_dir = tiny_engine_files
    assert client.set_parameter("index_dir", str(index_dir)) == (True, "")   # unconfigured: next configure
    wait_log(node_log, "parameter set: index_dir applies at the next configure")
    assert client.change_state("configure", STATE_TIMEOUT)
    assert client.get_state() == "inactive"
    status, result, _ = client.locate("a red roof", timeout=20.0)
    assert status == "aborted" and "inactive" in result.message
    start = client.count("matches")
    client.send_goal("a red roof, inactive")
    assert client.wait_for_query("a red roof, inactive", start).status == \
        "aborted: the node is inactive; activate it first"
    assert client.change_state("activate")
    assert client.get_state() == "active"


def expected_enu(lat: float, lon: float, up: float) -> tuple[float, float, float]:
    """ENU about DATUM from the textbook local radii of the WGS-84 ellipsoid (not pymap3d): good to
    centimetres over the few hundred metres of the tiny gallery."""
    a, e2 = 6378137.0, 6.69437999014e-3
    phi = math.radians(DATUM[0])
    w = 1.0 - e2 * math.sin(phi) ** 2
    meridian, normal = a * (1.0 - e2) / w ** 1.5, a / math.sqrt(w)
    return (math.radians(lon - DATUM[1]) * normal * math.cos(phi), math.radians(lat - DATUM[0]) * meridian, up)


def tiny_place_target(place_id: str) -> tuple[float, float, float]:
    """The tiny gallery's place p<k>: three views at lat 47.37 + k/1000, lon 8.54, 8.5401, 8.5402 and no
    place or ground keys, so its target is the median camera position at the datum's height."""
    k = int(place_id[1:])
    return expected_enu(47.37 + k * 0.001, 8.5401, 0.0)


def test_topic_goal_publishes_every_output(client):
    from geographic_msgs.msg import GeoPoseStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile

    from cgrs_ros.geo import quaternion_to_heading

    ensure_active(client)
    geoposes = []
    geo_sub = client.node.create_subscription(GeoPoseStamped, "/cgrs_node/target_geopose", geoposes.append,
                                              QoSProfile(depth=5, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    client.wait_until(lambda: geo_sub.get_publisher_count() > 0, 20.0, "the ~/target_geopose publisher")
    starts = {name: client.count(name) for name in client.received}
    before = time.time()
    client.send_goal("the building with the red roof")
    matches = client.wait_for_query("the building with the red roof", start=starts["matches"])
    after = time.time()

    assert matches.goal_id.startswith("topic-")
    assert matches.status.startswith("ok: reranked"), matches.status
    assert matches.reranked and not matches.degraded
    assert matches.header.frame_id == MAP_FRAME
    assert before - 0.5 <= stamp_seconds(matches.header.stamp) <= after + 0.5  # the goal's arrival
    # One entry per place; the image ranking (5 views = max_results) behind them.
    assert len(matches.image_ids) == 5
    assert [m.rank for m in matches.matches] == list(range(1, len(matches.matches) + 1))
    assert len({m.place_id for m in matches.matches}) == len(matches.matches)
    assert all(m.n_views == 3 for m in matches.matches)        # every view of the place (3 in the tiny gallery)
    assert {m.image_id for m in matches.matches} <= set(matches.image_ids)
    assert matches.image_ids[0] == matches.matches[0].image_id
    assert all(m.has_target and m.has_geo for m in matches.matches)
    scores = [m.score for m in matches.matches]
    assert scores == sorted(scores, reverse=True)
    # Nothing calibrates the engine yet: never confident, and the status says why.
    assert math.isnan(matches.confidence) and not matches.confident
    assert matches.outcome == matches.OUTCOME_NOT_CONFIDENT and not matches.ambiguous
    assert "no confident match: confidence uncalibrated (NaN)" in matches.status

    for m in matches.matches:
        p = m.pose.position
        assert (p.x, p.y, p.z) == pytest.approx(tiny_place_target(m.place_id), abs=0.05)
        c = m.camera_pose.position
        assert (c.x, c.y, c.z) == pytest.approx(expected_enu(m.latitude, m.longitude, m.altitude - DATUM[2]), abs=0.05)
        assert c.z > 9.0                                 # the cameras are 10-12 m above the datum
        for q in (m.pose.orientation, m.camera_pose.orientation):
            assert quaternion_to_heading(q.x, q.y, q.z, q.w) == pytest.approx(m.heading % 360.0, abs=1e-6)
        assert not math.isnan(m.caption_score) and m.caption

    stamp = matches.header.stamp
    same_goal = lambda msg: msg.header.stamp == stamp  # noqa: E731
    target = client.wait_for("target_pose", same_goal, starts["target_pose"])
    assert target.header.frame_id == MAP_FRAME and target.pose == matches.matches[0].pose
    poses = client.wait_for("target_poses", same_goal, starts["target_poses"])
    assert poses.header.frame_id == MAP_FRAME
    assert list(poses.poses) == [m.pose for m in matches.matches]   # the ground targets
    markers = client.wait_for("markers", lambda msg: msg.markers[-1].header.stamp == stamp, starts["markers"])
    assert markers.markers[0].action == 3  # DELETEALL first
    body = markers.markers[1:]
    assert len(body) == 2 * len(matches.matches)
    assert all(mk.header.frame_id == MAP_FRAME for mk in body)
    texts = [mk.text for mk in body if mk.type == 9]
    assert texts[0].startswith(f"#1 {matches.matches[0].place_id} ")
    image = client.wait_for("match_image", same_goal, starts["match_image"])
    assert image.header.frame_id == "cgrs_contact_sheet" and image.encoding == "bgr8"
    assert image.width > 0 and image.height > 0 and len(image.data) == image.step * image.height

    # The best place's target as a geographic pose: its latitude/longitude, ground height on the ellipsoid.
    client.wait_until(lambda: any(g.header.stamp == stamp for g in geoposes), 10.0, "~/target_geopose")
    geo = next(g for g in geoposes if g.header.stamp == stamp)
    client.node.destroy_subscription(geo_sub)
    best = matches.matches[0]
    assert geo.header.frame_id == MAP_FRAME
    assert (geo.pose.position.latitude, geo.pose.position.longitude) == (best.target_latitude, best.target_longitude)
    assert geo.pose.position.altitude == pytest.approx(DATUM[2], abs=1e-6)   # ground unknown: the datum's height
    assert geo.pose.orientation == best.pose.orientation


@pytest.mark.parametrize("text, echoed, expected", [
    ("", "", "rejected: the goal text is empty"),
    ("   \t ", "   \t ", "rejected: the goal text is empty"),
    ("x" * 200_000, "x" * 200 + "... [truncated: 200000 characters]",
     "rejected: the goal text is 200000 characters; the cap is max_query_chars = 200"),
])
def test_bad_topic_goals_are_rejected(client, text, echoed, expected):
    ensure_active(client)
    start = client.count("matches")
    client.send_goal(text)
    msg = client.wait_for("matches", lambda m: m.query == echoed, start)
    assert msg.status == expected and len(msg.matches) == 0 and msg.outcome == msg.OUTCOME_REJECTED
    assert msg.header.frame_id == MAP_FRAME


@pytest.mark.parametrize("options, expected", [
    ({"top_k": -1}, "top_k must be >= 0"),
    ({"fusion_weight": 1.5}, "fusion_weight must be in [0, 1]"),
    ({"caption_mode": "telepathy"}, "caption_mode 'telepathy' is unknown"),
    ({"query": "  "}, "the goal text is empty"),
])
def test_bad_action_goals_are_aborted_with_a_reason(client, options, expected):
    ensure_active(client)
    query = options.pop("query", "a red roof")
    status, result, _ = client.locate(query, timeout=20.0, **options)
    assert status == "aborted" and not result.success
    assert result.message.startswith("rejected: ") and expected in result.message
    assert result.matches.status == result.message and result.matches.outcome == result.matches.OUTCOME_REJECTED


def test_action_goal_reports_feedback_and_result(client):
    ensure_active(client)
    # Feedback and result travel on different channels and rclpy's action client drops feedback that
    # arrives after the result: a short pause after each stage keeps the order observable.
    assert client.set_parameter("debug_stage_delay", 0.2)[0]
    try:
        status, result, feedback = client.locate("a blue roof", top_k=4, fusion_weight=0.7, caption_mode="cached")
    finally:
        assert client.set_parameter("debug_stage_delay", 0.0)[0]
    assert status == "succeeded" and result.success
    from cgrs_ros.action import Locate

    stages = [stage for stage, _, _ in feedback]
    F = Locate.Feedback
    codes = {"starting": F.STAGE_STARTING, "coarse": F.STAGE_COARSE, "captions": F.STAGE_CAPTIONS,
             "rerank": F.STAGE_RERANK, "done": F.STAGE_DONE}
    assert [code for _, _, code in feedback] == [codes[stage] for stage in stages]
    order = ["starting", "coarse", "captions", "rerank", "done"]
    assert stages == [s for s in order if s in stages], stages          # in order, no repeats
    assert {"coarse", "captions", "rerank", "done"} <= set(stages), stages
    progress = [p for _, p, _ in feedback]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
    # top_k 4 finds the places; each brings all its views, so the image ranking fills max_results 5
    assert result.matches.reranked and len(result.matches.image_ids) == 5
    assert all(m.n_views == 3 for m in result.matches.matches)
    places = len(result.matches.matches)      # the 4 candidate images name at most 4 places
    assert 1 <= places <= 4 and result.message == result.matches.status
    assert f"reranked {places} candidate places" in result.message
    assert len(result.matches.goal_id) == 32   # the action goal's UUID


def start_running_and_pending(client, node_log, running_query: str, pending_query: str):
    """An action goal that is running (slowed by debug_stage_delay) and one waiting behind it.

    The node's log says when a goal is accepted and when it starts: more dependable under load
    than feedback, which rclpy's action client may see late or (after the result) not at all.
    """
    from cgrs_ros.ros.client import goal_id_of

    running = client.send_locate(running_query)
    wait_log(node_log, f"goal {goal_id_of(running)} started", 20.0)
    pending = client.send_locate(pending_query)
    wait_log(node_log, f"goal {goal_id_of(pending)} (action) accepted", 20.0)
    assert f"goal {goal_id_of(pending)} started" not in log_text(node_log)
    return running, pending


def test_cancel_running_and_pending_goals(client, node_log):
    ensure_active(client)
    assert client.set_parameter("debug_stage_delay", 1.0)[0]
    try:
        running, pending = start_running_and_pending(client, node_log, "a green roof", "a white roof")
        client.cancel(pending)
        status, result = client.result_of(pending, 20.0)
        assert status == "canceled" and "before it started" in result.message, (status, result.message)
        assert result.matches.outcome == result.matches.OUTCOME_CANCELED
        client.cancel(running)
        status, result = client.result_of(running, 20.0)
        assert status == "canceled" and "while running" in result.message, (status, result.message)
        assert result.matches.outcome == result.matches.OUTCOME_CANCELED
    finally:
        assert client.set_parameter("debug_stage_delay", 0.0)[0]
    status, _, _ = client.locate("a green roof")   # still serving
    assert status == "succeeded"


def test_new_goal_supersedes_the_pending_one(client, node_log):
    ensure_active(client)
    assert client.set_parameter("debug_stage_delay", 0.6)[0]
    try:
        start = client.count("matches")
        running, pending = start_running_and_pending(client, node_log, "a yellow roof", "a black roof")
        client.send_goal("a white roof")   # the topic goal takes the pending slot
        status, result = client.result_of(pending, 20.0)
        assert client.set_parameter("debug_stage_delay", 0.0)[0]   # the newer goal need not crawl
        assert status == "aborted" and not result.success
        assert result.message.startswith("superseded: goal topic-")
        assert result.matches.outcome == result.matches.OUTCOME_SUPERSEDED
        assert result.matches.goal_id in result.message and "started" in result.message
        newer = client.wait_for_query("a white roof", start, timeout=30.0)
        assert newer.goal_id in result.message and newer.status.startswith("ok:")
        published = client.wait_for_goal(result.matches.goal_id, start)
        assert published.status == result.message and not published.matches
        status, result = client.result_of(running, 30.0)
        assert status == "succeeded"
    finally:
        assert client.set_parameter("debug_stage_delay", 0.0)[0]


def test_forward_to_nav2_respects_min_confidence(client):
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import QoSProfile

    ensure_active(client)
    received = []
    sub = client.node.create_subscription(PoseStamped, "/goal_pose", received.append, QoSProfile(depth=5))
    try:
        client.wait_until(lambda: sub.get_publisher_count() > 0, 20.0, "the goal_pose publisher")
        assert client.set_parameter("forward_to_nav2", True)[0]
        ok, reason = client.set_parameter("min_confidence", 1.5)
        assert not ok and "min_confidence" in reason        # a probability
        # The engine is not calibrated (confidence NaN): no threshold lets a goal through.
        assert client.set_parameter("min_confidence", 0.0)[0]
        status, result, _ = client.locate("a red roof")
        assert status == "succeeded" and math.isnan(result.matches.confidence) and not result.matches.confident
        assert "no confident match: confidence uncalibrated (NaN)" in result.message
        assert "forwarded" not in result.message
        client.locate("a blue roof")                         # a later goal: still nothing forwarded
        assert received == []
    finally:
        client.set_parameter("min_confidence", 0.8)
        client.set_parameter("forward_to_nav2", False)
        client.node.destroy_subscription(sub)


def test_records_without_coordinates_and_degraded_captions(client, nogeo_gallery, node_log):
    """Reconfigure (deactivate, cleanup, configure, activate) onto a gallery without GPS."""
    ensure_active(client)
    index_dir, gallery_dir = nogeo_gallery
    assert client.change_state("deactivate") and client.get_state() == "inactive"
    assert client.change_state("cleanup") and client.get_state() == "unconfigured"
    wait_log(node_log, "engine released")
    assert client.set_parameter("index_dir", str(index_dir))[0]
    ensure_active(client)

    starts = {name: client.count(name) for name in client.received}
    client.send_goal("a red roof")
    msg = client.wait_for_query("a red roof", starts["matches"])
    assert msg.status.startswith("ok: ") and "has no coordinates: no target pose published" in msg.status
    assert msg.outcome == msg.OUTCOME_NO_TARGET
    assert len(msg.image_ids) == 5 and not any(m.has_geo or m.has_target for m in msg.matches)
    assert all(math.isnan(m.latitude) and math.isnan(m.longitude) for m in msg.matches)
    stamp = msg.header.stamp
    poses = client.wait_for("target_poses", lambda p: p.header.stamp == stamp, starts["target_poses"])
    assert len(poses.poses) == 0
    markers = client.wait_for("markers", lambda m: m.markers[0].header.stamp == stamp, starts["markers"])
    assert [m.action for m in markers.markers] == [3]   # only DELETEALL: nothing to draw
    time.sleep(0.3)
    assert not any(p.header.stamp == stamp for p in client.received["target_pose"])

    # Images vanish: online captions fail, the node answers with the coarse ranking, degraded.
    images = gallery_dir / "images"
    aside = gallery_dir / "images_aside"
    images.rename(aside)
    try:
        status, result, _ = client.locate("a red roof", caption_mode="online")
    finally:
        aside.rename(images)
    assert status == "succeeded" and result.success
    assert result.matches.degraded and not result.matches.reranked
    assert result.message.startswith("degraded: caption stage failed")
    assert result.matches.outcome == result.matches.OUTCOME_DEGRADED
    assert len(result.matches.image_ids) == 5
    assert all(m.score == m.coarse_score and math.isnan(m.caption_score) for m in result.matches.matches)


def test_shutdown_transition(client, node):
    assert client.get_state() in ("active", "inactive", "unconfigured")
    request_state = client.get_state()
    if request_state == "active":
        assert client.change_state("deactivate")
    if client.get_state() == "inactive":
        assert client.change_state("cleanup")
    assert client.change_state("shutdown")
    assert client.get_state() == "finalized"
    assert node.poll() is None
    status, result, _ = client.locate("a red roof", timeout=20.0)
    assert status == "aborted" and result.message == "aborted: the node is finalized (shut down); restart it"
