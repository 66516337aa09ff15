"""Fixtures of the ROS 2 tests: isolated discovery, a node subprocess, a client, a gallery without GPS.

Every module gets its own ROS_DOMAIN_ID and localhost-only discovery, so parallel runs and other
users of the machine never see each other's topics.  Where the ROS 2 runtime or the built cgrs_ros
interfaces are missing the ROS tests skip (with the reason) -- except in CI (``CI`` set, as CI
services do, or ``CGRS_REQUIRE_ROS=1``), where they *fail*: a green CI run must never mean that
the ROS half silently did not run.
"""
from __future__ import annotations

import os
import shutil
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from ros_support import require_ros

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")


def domain_id_for(name: str) -> int:
    """A ROS_DOMAIN_ID in [10, 100] derived from the test module and this process."""
    return 10 + zlib.crc32(f"{name}:{os.getpid()}".encode()) % 91


@pytest.fixture(scope="module")
def ros_domain(request) -> int:
    return domain_id_for(request.module.__name__)


@pytest.fixture(scope="module")
def ros_context(ros_domain):
    """An rclpy context of this module's domain (the client side of the tests)."""
    require_ros()
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture(scope="session")
def nogeo_gallery(tiny_gallery, tiny_engine_config_path, tmp_path_factory) -> tuple[Path, Path]:
    """(index folder, gallery folder): a copy of the tiny gallery with every record's coordinates
    removed (not geo-tagged), indexed with the tiny models.  The copy is this fixture's own, so tests
    may make its images vanish (online captions then fail: a degraded result)."""
    from cgrs_ros.config import load_engine_config
    from cgrs_ros.gallery import read_manifest, write_manifest
    from cgrs_ros.index import build_index

    gallery = read_manifest(tiny_gallery)
    folder = tmp_path_factory.mktemp("nogeo_gallery")
    shutil.copytree(Path(tiny_gallery).parent / "images", folder / "images")
    records = [replace(r, lat=None, lon=None, alt=None) for r in gallery.records]
    manifest = write_manifest(records, folder / "manifest.jsonl")
    index_dir = tmp_path_factory.mktemp("nogeo_index")
    build_index(read_manifest(manifest), load_engine_config(tiny_engine_config_path), index_dir, progress=False)
    return index_dir, folder


@pytest.fixture(scope="module")
def client(node, ros_context):
    """A client of the module's ``node`` fixture (each node test module starts its own node)."""
    from cgrs_ros.ros.client import CGRSClient

    c = CGRSClient(context=ros_context)
    c.wait_for_node(timeout=30.0)
    yield c
    c.close()
