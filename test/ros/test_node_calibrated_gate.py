"""A nonsense goal never reaches Nav2: a real node process with the shipped, calibrated default models.

The gate compares the engine's calibrated confidence (an absolute probability, fitted on the
validation world) with ``min_confidence``; this runs the whole path across processes on a small
world the models never saw, with ``forward_to_nav2`` on, and listens on ``goal_pose``.
"""
from __future__ import annotations

import math
import time

import pytest

NONSENSE = ("banana", "xqzv plorb wibble", "🏠🏠🏠", "play some music")


@pytest.fixture(scope="module")
def default_index(tmp_path_factory):
    from cgrs_ros.config import load_engine_config
    from cgrs_ros.gallery import read_manifest
    from cgrs_ros.index import build_index
    from cgrs_ros.world import generate_world

    world = generate_world(tmp_path_factory.mktemp("gate_world") / "w", seed=13, n_places=6, views_drone=2,
                           progress=False)
    index_dir = tmp_path_factory.mktemp("gate_index")
    build_index(read_manifest(world / "manifest.jsonl"), load_engine_config(device="cpu"), index_dir, progress=False)
    return index_dir


@pytest.fixture(scope="module")
def client(default_index, ros_context, ros_domain, tmp_path_factory):
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import QoSProfile

    from cgrs_ros.ros.client import CGRSClient, start_node_process, stop_node_process

    log = tmp_path_factory.mktemp("gate_node") / "node.log"
    process = start_node_process(params={"index_dir": str(default_index), "device": "cpu", "autostart": True,
                                         "forward_to_nav2": True, "min_confidence": 0.8, "publish_image": False},
                                 log_path=log, domain_id=ros_domain)
    c = CGRSClient(context=ros_context)
    c.forwarded = []
    c.node.create_subscription(PoseStamped, "/goal_pose", c.forwarded.append, QoSProfile(depth=10))
    try:
        c.wait_for_node(timeout=60.0)
        c.wait_until(lambda: c.get_state() == "active", 180.0, "the node to become active")
        yield c
    finally:
        c.close()
        code = stop_node_process(process)
        assert code == 0, f"node exited with {code}; log:\n{log.read_text()[-3000:]}"


@pytest.mark.parametrize("goal", NONSENSE)
def test_a_nonsense_goal_is_not_forwarded(client, goal):
    status, result, _ = client.locate(goal)
    matches = result.matches
    assert status == "succeeded" and matches.reranked and not matches.degraded, result.message
    assert math.isfinite(matches.confidence) and matches.confidence < 0.8, matches.confidence
    assert not matches.confident and "no confident match: confidence" in matches.status, matches.status
    time.sleep(0.5)                       # a forwarded pose would have arrived by now
    assert client.forwarded == []
