"""The Gazebo export (cgrs-world --gazebo): valid SDFormat, models where the gallery says, targets on roofs.

The world is read back as plain XML and checked against the generator's own layout and pymap3d
(not against the exporter's helpers), and against the real SDFormat checker (``ign sdf -k``,
Debian: ignition-tools + libsdformat-dev) when it is installed; CI installs it (.ci/run).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pymap3d
import pytest
import yaml

from cgrs_ros.gallery import read_manifest
from cgrs_ros.targets import place_targets
from cgrs_ros.world import generate_world
from cgrs_ros.world.cli import main as world_main
from cgrs_ros.world.layout import build_places
from cgrs_ros.world.scene import ROOF_RGB

SEED, PLACES = 5, 12            # the demo world's seed; its first 12 places have all six building shapes
WGS84 = pymap3d.Ellipsoid.from_name("wgs84")
# The generator's place centre is the footprint's bounding-box centre: in the courtyard of a U and
# just outside the inner corner of an L, so the node's target for them is beside the roof, not on it.
CENTRE_OFF_THE_ROOF = ("L-shaped", "U-shaped")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gz") / "world"
    assert world_main(["--seed", str(SEED), "--places", str(PLACES), "--out", str(folder), "--views-drone", "1",
                       "--size", "32", "--gazebo", "--quiet"]) == 0
    return folder


def _sdf(world) -> ET.Element:
    return ET.parse(world / "gazebo" / "world.sdf").getroot()


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.split()]


def _places(world) -> dict[str, dict]:
    return {p["place_id"]: p for p in json.loads((world / "world.json").read_text())["places"]}


def _origin(root: ET.Element) -> tuple[float, float, float]:
    coordinates = root.find("world/spherical_coordinates")
    assert coordinates.findtext("surface_model") == "EARTH_WGS84"
    assert coordinates.findtext("world_frame_orientation") == "ENU"
    assert float(coordinates.findtext("heading_deg")) == 0.0
    return tuple(float(coordinates.findtext(t)) for t in ("latitude_deg", "longitude_deg", "elevation"))


def _building(model: ET.Element) -> tuple[float, np.ndarray, float]:
    """(yaw, footprint outline in the place frame, wall height) of a place model's building."""
    link = model.find("link[@name='building']")
    yaw = _numbers(link.findtext("pose"))[5]
    walls = link.find("visual[@name='walls_visual']/geometry/polyline")
    outline = np.array([_numbers(p.text) for p in walls.findall("point")])
    c, s = math.cos(yaw), math.sin(yaw)
    return yaw, outline @ np.array([[c, s], [-s, c]]), float(walls.findtext("height"))


def test_the_sdformat_checker_accepts_the_world(world):
    if shutil.which("ign") is None:
        reason = "SDFormat checker `ign` not installed (Debian: apt-get install ignition-tools libsdformat-dev)"
        if os.environ.get("CGRS_REQUIRE_SDF"):      # CI installs it: there a missing checker is a failure
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run(["ign", "sdf", "-k", str(world / "gazebo" / "world.sdf")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "Valid." in done.stdout, done.stdout + done.stderr


def test_spherical_coordinates_and_node_datum_are_the_worlds_datum(world):
    root = _sdf(world)
    assert root.get("version") == "1.9"
    datum = json.loads((world / "world.json").read_text())["datum"]
    assert _origin(root) == (datum["lat"], datum["lon"], datum["height_m"])
    params = yaml.safe_load((world / "gazebo" / "cgrs_node_datum.yaml").read_text())["/**"]["ros__parameters"]
    assert params == {"datum_latitude": datum["lat"], "datum_longitude": datum["lon"],
                      "datum_altitude": datum["height_m"]}


def test_every_building_stands_at_the_enu_of_its_place(world):
    root, places = _sdf(world), _places(world)
    lat0, lon0, h0 = _origin(root)
    layout = {p.place_id: p for p in build_places(SEED, PLACES)}
    models = {m.get("name"): m for m in root.findall("world/model") if m.get("name") in places}
    assert set(models) == set(places)
    for place_id, place in places.items():
        model = models[place_id]
        assert model.findtext("static") == "true"
        expected = pymap3d.geodetic2enu(place["lat"], place["lon"], place["ground_height_m"], lat0, lon0, h0,
                                        ell=WGS84)
        pose = _numbers(model.findtext("pose"))
        assert np.allclose(pose[:3], expected, atol=0.02), place_id
        assert pose[3:] == [0.0, 0.0, 0.0]
        yaw, footprint, height = _building(model)
        building = place["building"]
        assert math.isclose(math.remainder(yaw - math.radians(building["orientation_deg"]), 2 * math.pi), 0.0,
                            abs_tol=1e-3)
        assert np.allclose(footprint, layout[place_id].footprint, atol=0.005), place_id     # shape and size
        assert height == pytest.approx(building["height_m"], abs=0.01)
        roof = model.find("link[@name='building']/visual[@name='roof_visual']")
        assert _numbers(roof.findtext("pose"))[2] == pytest.approx(height, abs=0.01)
        assert _numbers(roof.findtext("material/diffuse"))[:3] == pytest.approx(
            [c / 255 for c in ROOF_RGB[building["colour"]]], abs=0.002)


def test_neighbours_are_laid_out_inside_their_place(world):
    root, places = _sdf(world), _places(world)
    for place_id, place in places.items():
        model = root.find(f"world/model[@name='{place_id}']")
        links = {link.get("name") for link in model.findall("link")}
        for neighbour in place["neighbours"]:
            assert f"{neighbour['direction']}_{neighbour['kind'].replace(' ', '_')}" in links, (place_id, neighbour)
        points = np.array([_numbers(p.text) for p in model.iterfind(".//polyline/point")])
        assert np.hypot(*points.T).max() <= place["radius_m"] + 1e-6, place_id   # never onto another place


def _targets_on_buildings(world):
    """Per place: (place id, the node's ground target in the building's frame, target up - model z, footprint).

    The target is the node's (cgrs_ros.targets, from the manifest), converted with pymap3d about the
    world's spherical coordinates: the simulator's frame.
    """
    root = _sdf(world)
    lat0, lon0, h0 = _origin(root)
    targets = place_targets(read_manifest(world / "manifest.jsonl"))
    assert set(targets) == set(_places(world))
    for place_id, target in targets.items():
        model = root.find(f"world/model[@name='{place_id}']")
        pose = _numbers(model.findtext("pose"))
        east, north, up = pymap3d.geodetic2enu(target.latitude, target.longitude, target.ground_altitude,
                                               lat0, lon0, h0, ell=WGS84)
        _, footprint, _ = _building(model)
        yield place_id, (float(east - pose[0]), float(north - pose[1])), up - pose[2], footprint.astype(np.float32)


def test_the_nodes_target_for_a_place_is_on_its_building(world):
    places = _places(world)
    for place_id, point, height, footprint in _targets_on_buildings(world):
        assert height == pytest.approx(0.0, abs=0.02), place_id                   # on the place's ground
        assert cv2.pointPolygonTest(cv2.convexHull(footprint), point, False) >= 0, place_id   # never beside it
        if places[place_id]["building"]["shape"] not in CENTRE_OFF_THE_ROOF:
            assert cv2.pointPolygonTest(footprint, point, False) >= 0, place_id


@pytest.mark.xfail(strict=True, reason="the place centre of L- and U-shaped buildings is off the roof "
                                       "(layout.building_outline centres the bounding box)")
def test_the_target_of_every_building_shape_is_on_its_roof(world):
    off_roof = [place_id for place_id, point, _, footprint in _targets_on_buildings(world)
                if cv2.pointPolygonTest(footprint, point, False) < 0]
    assert not off_roof


def test_generator_is_deterministic_with_the_export(world, tmp_path):
    again = generate_world(tmp_path / "again", SEED, PLACES, views_drone=1, size=32, gazebo=True, progress=False)
    assert (again / "gazebo" / "world.sdf").read_bytes() == (world / "gazebo" / "world.sdf").read_bytes()
