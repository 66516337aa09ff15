"""cgrs_ros.targets: a place's ground target from its views (no ROS), checked against the procedural
world's ground truth (world.json), not against the code's own geodesy."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from cgrs_ros.gallery import GalleryRecord, read_manifest
from cgrs_ros.targets import EYE_HEIGHT_M, place_ground_altitude, place_targets, view_ground_point

PLACE_KEYS = ("place_lat", "place_lon", "ground_alt")


def metres_apart(lat1, lon1, lat2, lon2) -> float:
    """Equirectangular distance on a 6371 km sphere: independent of pymap3d, exact enough at < 1 km."""
    north = math.radians(lat2 - lat1) * 6_371_000.0
    east = math.radians(lon2 - lon1) * 6_371_000.0 * math.cos(math.radians(0.5 * (lat1 + lat2)))
    return math.hypot(east, north)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from cgrs_ros.world import generate_world

    folder = generate_world(tmp_path_factory.mktemp("world"), seed=3, n_places=4, views_drone=4, progress=False)
    truth = {p["place_id"]: p for p in json.loads((folder / "world.json").read_text())["places"]}
    return read_manifest(folder / "manifest.jsonl").records, truth


def without_place_keys(records):
    return [replace(r, extras={k: v for k, v in r.extras.items() if k not in PLACE_KEYS}) for r in records]


def test_manifest_place_keys_give_the_place_for_every_platform(world):
    records, truth = world
    for record in records:
        lat, lon, source = view_ground_point(record, None)
        place = truth[record.place_id]
        assert source == "manifest" and metres_apart(lat, lon, place["lat"], place["lon"]) < 0.01
    targets = place_targets(records)
    assert set(targets) == set(truth)
    for place_id, target in targets.items():
        assert target.ground_altitude == pytest.approx(truth[place_id]["ground_height_m"], abs=0.01)


def test_projected_views_agree_with_the_place_within_a_few_metres(world):
    """Without place keys: satellite (nadir) and oblique drone views project to the place; the
    far-off ground photo (tilt above the horizon) is not used while better evidence exists."""
    records, truth = world
    records = without_place_keys(records)
    for place_id, place in truth.items():
        views = [r for r in records if r.place_id == place_id]
        # no ground_alt key: the ground photo's camera height gives the ground
        ground = place_ground_altitude(views)
        assert ground == pytest.approx(place["ground_height_m"], abs=0.05)
        for view in views:
            lat, lon, source = view_ground_point(view, ground)
            error = metres_apart(lat, lon, place["lat"], place["lon"])
            if view.platform == "ground":
                assert source == "camera" and error > 15.0     # it stands tens of metres away
            else:
                assert source == "projected" and error < 8.0, (view.image_id, error)
    for place_id, target in place_targets(records).items():
        assert target.source == "projected"
        assert metres_apart(target.latitude, target.longitude, truth[place_id]["lat"], truth[place_id]["lon"]) < 5.0


def test_camera_position_is_the_last_resort_and_untagged_places_have_no_target():
    def record(image_id, place_id, lat, lon, platform="drone", alt=None, extras=None):
        return GalleryRecord(image_id, f"{image_id}.png", place_id, platform, lat, lon, alt, None, extras or {})

    records = [record("a", "p1", 47.0, 8.0), record("b", "p1", 47.0002, 8.0), record("c", "p1", 47.0004, 8.0),
               record("d", "p2", None, None),
               record("e", "p3", 47.1, 8.1, platform="ground", alt=501.7)]
    targets = place_targets(records)
    assert set(targets) == {"p1", "p3"}                        # p2: not geo-tagged
    assert (targets["p1"].latitude, targets["p1"].source, targets["p1"].n_views) == (47.0002, "camera", 3)
    assert targets["p1"].ground_altitude is None
    assert targets["p3"].ground_altitude == pytest.approx(501.7 - EYE_HEIGHT_M)


def test_targets_of_a_loaded_index_are_computed_per_place_and_equal_the_full_pass(tiny_engine_files):
    from cgrs_ros.index import load_index
    from cgrs_ros.targets import IndexTargets

    index = load_index(tiny_engine_files[1])
    lazy = IndexTargets(index)
    assert lazy.get("p03") == place_targets(r for r in index.records if r.place_id == "p03")["p03"]
    assert list(lazy._found) == ["p03"]               # only the place asked for was computed
    assert lazy.get("nowhere") is None
    assert dict(lazy) == place_targets(list(index.records))
