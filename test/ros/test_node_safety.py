"""Issue 8 end to end, on a real node process with the tiny real models: a params file with YAML
booleans, services that answer during a slow configure, start-up parameters refused at runtime, and
one ground target for a place whether its satellite or its ground photo matched.

The slow configure is real, not simulated: ``engine_config`` is a named pipe, so configure blocks in
reading it until the test writes the config into it.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest

DATUM = (47.3695, 8.5405, 40.0)
CONFIGURING = "aborted: the node is configuring (loading the index and models); send it again once active"


@pytest.fixture(scope="module")
def slow_config(tiny_engine_config_path):
    """A FIFO next to the tiny engine config (its model paths are relative to its folder)."""
    fifo = Path(tiny_engine_config_path).parent / f"slow_engine_{os.getpid()}.yaml"
    os.mkfifo(fifo)
    yield fifo
    fifo.unlink()


@pytest.fixture(scope="module")
def node_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cgrs_safety") / "node.log"


@pytest.fixture(scope="module")
def node(tiny_engine_files, slow_config, ros_context, ros_domain, node_log):
    from cgrs_ros.ros.client import start_node_process, stop_node_process

    _, index_dir = tiny_engine_files
    params = node_log.parent / "params.yaml"
    # Unquoted `off` is YAML 1.1 false; `40` is an integer for a float parameter.
    params.write_text(f"""/**:
  ros__parameters:
    engine_config: "{slow_config}"
    index_dir: "{index_dir}"
    device: cpu
    caption_mode: off
    datum_latitude: {DATUM[0]}
    datum_longitude: {DATUM[1]}
    datum_altitude: 40
    top_k: 6
    max_results: 5
""")
    process = start_node_process(params_file=params, log_path=node_log, domain_id=ros_domain)
    yield process
    code = stop_node_process(process)
    assert code == 0, f"node exited with {code}; log:\n{node_log.read_text()[-3000:]}"


def test_services_answer_within_1_s_during_a_slow_configure(node, client, slow_config, tiny_engine_config_path):
    assert client.get_state() == "unconfigured" and node.poll() is None   # caption_mode: off did not crash it
    client.wait_for_connections(outputs=("matches",))
    future = client.change_state_async("configure")
    # configure now blocks reading the pipe; every answer below must come while it does.
    state = "unconfigured"
    while state == "unconfigured":
        started = time.monotonic()
        state = client.get_state(timeout=1.0)
        assert time.monotonic() - started < 1.0
    assert state == "configuring" and not future.done()
    assert client.set_parameter("top_k", 6, timeout=1.0) == (True, "")
    ok, reason = client.set_parameter("index_dir", "/elsewhere", timeout=1.0)
    assert not ok and "read by configure" in reason
    start = client.count("matches")
    client.send_goal("a red roof while configuring")
    answer = client.wait_for_query("a red roof while configuring", start)
    assert answer.status == CONFIGURING and not answer.matches
    assert not future.done()

    with open(slow_config, "w", encoding="utf-8") as pipe:   # configure reads it and goes on
        pipe.write(Path(tiny_engine_config_path).read_text(encoding="utf-8"))
    client.wait_until(future.done, 120.0, "the configure result")
    assert future.result().success and client.get_state() == "inactive"


def test_caption_mode_off_from_the_params_file_is_served(client):
    assert client.change_state("activate")
    status, result, _ = client.locate("a red roof")
    assert status == "succeeded" and not result.matches.reranked
    assert result.message.startswith("ok: coarse ranking (caption mode off)")


@pytest.mark.parametrize("name, value, why", [
    # rclpy itself refuses read-only (start-up) parameters and wrong types (typed descriptors)
    ("goal_qos_reliability", "best_effort", "read-only parameter"),
    ("autostart", True, "read-only parameter"),
    ("index_dir", "/elsewhere", "deactivate and clean up the node first"),
    ("engine_config", "/elsewhere.yaml", "deactivate and clean up the node first"),
    ("device", "cpu", "deactivate and clean up the node first"),
    ("datum_latitude", 47.0, "deactivate and clean up the node first"),
    ("top_k", "five", "Wrong parameter type"),
    ("max_results", 10**6, "out of range"),
    ("caption_mode", "telepathy", "caption_mode 'telepathy': use"),
    ("caption_mode", False, "Wrong parameter type"),
])
def test_runtime_sets_of_start_up_parameters_are_refused_with_a_reason(client, name, value, why):
    assert client.get_state() == "active"
    ok, reason = client.set_parameter(name, value)
    assert not ok and why in reason, reason


def expected_enu(lat: float, lon: float, alt: float) -> tuple[float, float, float]:
    """ENU about DATUM from the WGS-84 local radii (independent of pymap3d; ~0.2 m over 1 km)."""
    a, e2 = 6378137.0, 6.69437999014e-3
    phi = math.radians(DATUM[0])
    w = 1.0 - e2 * math.sin(phi) ** 2
    return (math.radians(lon - DATUM[1]) * a / math.sqrt(w) * math.cos(phi),
            math.radians(lat - DATUM[0]) * a * (1.0 - e2) / w ** 1.5, alt - DATUM[2])


@pytest.fixture(scope="module")
def platform_indexes(tiny_engine_config_path, tmp_path_factory):
    """A procedural world of 3 places indexed twice: satellite views only, ground photos only."""
    from cgrs_ros.config import load_engine_config
    from cgrs_ros.gallery import Gallery, read_manifest
    from cgrs_ros.index import build_index
    from cgrs_ros.world import generate_world

    world = generate_world(tmp_path_factory.mktemp("world"), seed=7, n_places=3, views_drone=1, progress=False)
    gallery = read_manifest(world / "manifest.jsonl")
    config = load_engine_config(tiny_engine_config_path)
    indexes = {}
    for platform in ("satellite", "ground"):
        records = [r for r in gallery.records if r.platform == platform]
        indexes[platform] = tmp_path_factory.mktemp(f"index_{platform}")
        build_index(Gallery(records, gallery.root), config, indexes[platform], progress=False)
    truth = {p["place_id"]: p for p in json.loads((world / "world.json").read_text())["places"]}
    return indexes, truth


def test_satellite_and_ground_matches_give_the_same_ground_target(client, platform_indexes, tiny_engine_config_path):
    indexes, truth = platform_indexes
    seen = {}
    for platform, index_dir in indexes.items():
        if client.get_state() == "active":
            assert client.change_state("deactivate")
        if client.get_state() == "inactive":
            assert client.change_state("cleanup")
        assert client.set_parameter("engine_config", str(tiny_engine_config_path))[0]
        assert client.set_parameter("index_dir", str(index_dir))[0]
        assert client.change_state("configure", 120.0) and client.change_state("activate")
        status, result, _ = client.locate("a building")
        assert status == "succeeded" and len(result.matches.matches) == 3, result.message
        for m in result.matches.matches:
            assert m.platform == platform and m.has_target
            seen.setdefault(m.place_id, {})[platform] = m
    for place_id, views in seen.items():
        place = truth[place_id]
        sat, ground = views["satellite"], views["ground"]
        p, q = sat.pose.position, ground.pose.position
        assert math.dist((p.x, p.y, p.z), (q.x, q.y, q.z)) < 3.0
        assert (p.x, p.y, p.z) == pytest.approx(expected_enu(place["lat"], place["lon"], place["ground_height_m"]),
                                                abs=1.0)
        # The camera poses stay apart: the orthophoto's nominal camera is ~600 m up, the photo at eye height.
        assert sat.camera_pose.position.z - p.z > 500.0
        assert 0.0 < ground.camera_pose.position.z - q.z < 3.0
        assert math.dist((ground.camera_pose.position.x, ground.camera_pose.position.y), (q.x, q.y)) > 15.0
