"""Export a generated world as a Gazebo (SDFormat) world, so simulated flights see the gallery's places.

The world's ``<spherical_coordinates>`` is the world's datum (WGS-84, ENU, heading 0): Gazebo's
world frame is then the node's map frame, and a simulated NavSat reads the manifest's lat/lon.
Each place is one static model whose origin is the building's centre at its ground, placed at the
ENU position (:func:`cgrs_ros.geo.geodetic_to_enu`, the one geodesy) of the place's lat/lon and
ground height: curvature and terrain height included, so the models sit where the manifest says.
Inside a model, positions are the generator's place-local metres (x east, y north; the meridian
convergence over the world, below 1e-4 rad, is ignored).

What a place model holds, all simple geometry with plain colours (the scene painter's):

- ``ground``: a grass disc of the place's footprint radius, reaching down to a common base plane
  (places differ in ground height by tens of metres; each place itself is flat);
- ``building``: the footprint outline extruded to the building's height (walls) under a thin slab
  in the roof colour, as a link rotated by the building's orientation (the outline is unrotated);
- one link per neighbour (pools, lakes, fields, roads, rivers with their bridge, ...): thin slabs of
  their outlines, roads and rivers cut to the footprint disc so they never cross another place;
- the scene's trees (cylinders) and parked cars (boxes), at the positions the images show.

Everything is inline in ``world.sdf`` (no ``model://`` lookups), so ``gz sim world.sdf`` works
from any folder without a resource path.  SDFormat 1.9 is what Debian's checker (``ign sdf -k``)
validates; Gazebo Harmonic and later read it unchanged.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import numpy as np

from ..gallery import write_text_atomic
from ..geo import Datum, geodetic_to_enu
from .ground import CAR_HEIGHT_M, wall_rgb
from .layout import Feature, Place
from .scene import (BRIDGE_RGB, DRAW_ORDER, FEATURE_RGB, GRASS_RGB, ROOF_RGB, Car, Tree, car_outline,
                    tree_rgb)

SDF_VERSION = "1.9"
GAZEBO_DIR = "gazebo"               # sub-folder of a world folder that holds the export
WORLD_FILE = "world.sdf"
DATUM_PARAMS_FILE = "cgrs_node_datum.yaml"   # the node's datum parameters for this world
ROOF_THICKNESS_M = 0.3
SLAB_M = 0.05                       # thickness of a flat feature; stacked in painting order
BRIDGE_DECK_M = (0.8, 0.4)          # deck height above the river, deck thickness
BASE_DEPTH_M = 2.0                  # base plane this far below the lowest place's ground
BASE_MARGIN_M = 400.0               # and this far beyond the outermost place centre (more than a place)
# gz-sim systems: a world that names any plugin loads only those, so the defaults are listed too.
_SYSTEMS = (("gz-sim-physics-system", "gz::sim::systems::Physics"),
            ("gz-sim-user-commands-system", "gz::sim::systems::UserCommands"),
            ("gz-sim-scene-broadcaster-system", "gz::sim::systems::SceneBroadcaster"),
            ("gz-sim-sensors-system", "gz::sim::systems::Sensors"),
            ("gz-sim-imu-system", "gz::sim::systems::Imu"),
            ("gz-sim-navsat-system", "gz::sim::systems::NavSat"))


def place_pose(place: Place, datum: Datum) -> tuple[float, float, float]:
    """ENU position (m) of a place's building centre at its ground, about ``datum``."""
    return geodetic_to_enu(place.lat, place.lon, place.ground_height, datum)


def write_gazebo_world(folder: Path, places: Sequence[Place], props: Sequence[tuple[list[Tree], list[Car]]],
                       datum: Datum, name: str) -> Path:
    """Write ``folder/world.sdf`` for ``places`` (with each place's scene trees and cars) and, beside it,
    the node's datum parameters for it (``launch/cgrs_sim.launch.py`` applies them); return the folder."""
    folder = Path(folder)
    write_text_atomic(folder / WORLD_FILE, world_sdf(places, props, datum, name))
    write_text_atomic(folder / DATUM_PARAMS_FILE, datum_params(datum))
    return folder


def datum_params(datum: Datum) -> str:
    """A ROS parameters file setting the node's datum to ``datum`` (the world's spherical coordinates)."""
    return ("# The CGRS node's map origin = world.sdf's <spherical_coordinates>: the map frame is Gazebo's world\n"
            "# frame.  Applied over the node's params_file by launch/cgrs_sim.launch.py (extra_params_file).\n"
            "/**:\n  ros__parameters:\n"
            f"    datum_latitude: {datum.latitude!r}\n"
            f"    datum_longitude: {datum.longitude!r}\n"
            f"    datum_altitude: {datum.altitude!r}\n")


def world_sdf(places: Sequence[Place], props: Sequence[tuple[list[Tree], list[Car]]], datum: Datum,
              name: str) -> str:
    """The SDFormat text of the world (see the module docstring)."""
    poses = [place_pose(place, datum) for place in places]
    base = min(up for _, _, up in poses) - BASE_DEPTH_M
    sdf = ET.Element("sdf", version=SDF_VERSION)
    world = ET.SubElement(sdf, "world", name=name)
    for filename, plugin in _SYSTEMS:
        ET.SubElement(world, "plugin", filename=filename, name=plugin)
    _spherical_coordinates(world, datum)
    _sun(world)
    _base_plane(world, poses, base)
    for place, pose, (trees, cars) in zip(places, poses, props):
        _place_model(world, place, pose, base, trees, cars)
    ET.indent(sdf, space=" ")
    return '<?xml version="1.0"?>\n' + ET.tostring(sdf, encoding="unicode") + "\n"


def _text(parent: ET.Element, tag: str, text: object) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = str(text)
    return element


def _pose(parent: ET.Element, x: float = 0.0, y: float = 0.0, z: float = 0.0, yaw: float = 0.0) -> None:
    _text(parent, "pose", f"{x:.4f} {y:.4f} {z:.4f} 0 0 {yaw:.6f}")


def _colour(rgb: Sequence[int]) -> str:
    return " ".join(f"{c / 255:.3f}" for c in rgb) + " 1"


def _material(visual: ET.Element, rgb: Sequence[int]) -> None:
    material = ET.SubElement(visual, "material")
    _text(material, "ambient", _colour(rgb))
    _text(material, "diffuse", _colour(rgb))


def _polyline(geometry: ET.Element, outline: np.ndarray, height: float) -> None:
    polyline = ET.SubElement(geometry, "polyline")
    for east, north in outline:
        _text(polyline, "point", f"{east:.3f} {north:.3f}")
    _text(polyline, "height", f"{height:.3f}")


def _shape(link: ET.Element, name: str, rgb: Sequence[int], add_geometry, xyz=(0.0, 0.0, 0.0),
           collide: bool = False) -> None:
    """A visual coloured ``rgb`` (and, when ``collide``, a collision) of one geometry placed at ``xyz``."""
    for kind in ("visual",) + (("collision",) if collide else ()):
        element = ET.SubElement(link, kind, name=f"{name}_{kind}")   # sibling names must differ
        _pose(element, *xyz)
        add_geometry(ET.SubElement(element, "geometry"))
        if kind == "visual":
            _material(element, rgb)


def _prism(link: ET.Element, name: str, outline: np.ndarray, z: float, height: float, rgb, collide=False) -> None:
    """The outline extruded from ``z`` up by ``height`` (SDFormat polyline: any simple polygon)."""
    _shape(link, name, rgb, lambda g: _polyline(g, outline, height), (0.0, 0.0, z), collide)


def _spherical_coordinates(world: ET.Element, datum: Datum) -> None:
    coordinates = ET.SubElement(world, "spherical_coordinates")
    _text(coordinates, "surface_model", "EARTH_WGS84")
    _text(coordinates, "world_frame_orientation", "ENU")
    _text(coordinates, "latitude_deg", repr(datum.latitude))
    _text(coordinates, "longitude_deg", repr(datum.longitude))
    _text(coordinates, "elevation", repr(datum.altitude))
    _text(coordinates, "heading_deg", 0)


def _sun(world: ET.Element) -> None:
    light = ET.SubElement(world, "light", name="sun", type="directional")
    _text(light, "cast_shadows", "true")
    _pose(light, z=500.0)
    _text(light, "diffuse", "0.9 0.9 0.85 1")
    _text(light, "specular", "0.2 0.2 0.2 1")
    _text(light, "direction", "-0.3 0.4 -0.85")


def _base_plane(world: ET.Element, poses: list[tuple[float, float, float]], base: float) -> None:
    """Grass under everything, at ``base``: what lies between the places' discs."""
    reach = max(max(abs(e), abs(n)) for e, n, _ in poses) + BASE_MARGIN_M
    model = ET.SubElement(world, "model", name="base_ground")
    _text(model, "static", "true")
    _pose(model, z=base)
    link = ET.SubElement(model, "link", name="ground")

    def plane(geometry: ET.Element) -> None:
        element = ET.SubElement(geometry, "plane")
        _text(element, "normal", "0 0 1")
        _text(element, "size", f"{2 * reach:.1f} {2 * reach:.1f}")

    _shape(link, "grass", GRASS_RGB, plane, collide=True)


def _place_model(world: ET.Element, place: Place, pose: tuple[float, float, float], base: float,
                 trees: list[Tree], cars: list[Car]) -> None:
    model = ET.SubElement(world, "model", name=place.place_id)
    _text(model, "static", "true")
    _pose(model, *pose)
    _ground_disc(model, place, depth=pose[2] - base)
    _building(model, place)
    for feature in place.features:
        _feature(model, feature, place.radius_m)
    kept = [t for t in trees if math.hypot(t.east, t.north) + t.radius <= place.radius_m]
    if kept:
        link = ET.SubElement(model, "link", name="trees")
        for k, tree in enumerate(kept):
            def cylinder(geometry: ET.Element, tree=tree) -> None:
                element = ET.SubElement(geometry, "cylinder")
                _text(element, "radius", f"{tree.radius:.2f}")
                _text(element, "length", f"{tree.height:.2f}")
            _shape(link, f"tree_{k}", tree_rgb(tree), cylinder, (tree.east, tree.north, tree.height / 2), True)
    if cars:
        link = ET.SubElement(model, "link", name="cars")
        for k, car in enumerate(cars):
            _prism(link, f"car_{k}", car_outline(car), 0.0, CAR_HEIGHT_M, car.colour, collide=True)


def _ground_disc(model: ET.Element, place: Place, depth: float) -> None:
    link = ET.SubElement(model, "link", name="ground")

    def cylinder(geometry: ET.Element) -> None:
        element = ET.SubElement(geometry, "cylinder")
        _text(element, "radius", f"{place.radius_m:.2f}")
        _text(element, "length", f"{depth:.3f}")

    _shape(link, "grass", GRASS_RGB, cylinder, (0.0, 0.0, -depth / 2), collide=True)


def _building(model: ET.Element, place: Place) -> None:
    """Walls and roof of the unrotated outline, in a link turned by the building's orientation."""
    yaw = math.radians(place.orientation_deg)
    c, s = math.cos(yaw), math.sin(yaw)
    outline = place.footprint @ np.array([[c, -s], [s, c]])     # undo the layout's rotation
    link = ET.SubElement(model, "link", name="building")
    _pose(link, yaw=yaw)
    _prism(link, "walls", outline, 0.0, place.height_m, wall_rgb(place), collide=True)
    _prism(link, "roof", outline, place.height_m, ROOF_THICKNESS_M, ROOF_RGB[place.colour], collide=True)


def _feature(model: ET.Element, feature: Feature, radius: float) -> None:
    """A slab of the feature's outline, stacked in painting order (and a river's bridge deck)."""
    link = ET.SubElement(model, "link", name=f"{feature.direction}_{feature.kind.replace(' ', '_')}")
    outline = _band_within(feature.outline, radius) if feature.kind in ("road", "river") else feature.outline
    _prism(link, "surface", outline, SLAB_M * DRAW_ORDER[feature.kind], SLAB_M, FEATURE_RGB[feature.kind])
    if feature.bridge is not None:
        lift, thickness = BRIDGE_DECK_M
        _prism(link, "bridge", feature.bridge, lift, thickness, BRIDGE_RGB, collide=True)


def _band_within(outline: np.ndarray, radius: float) -> np.ndarray:
    """The part of a road/river band inside the disc of ``radius``.

    The layout builds a band as its left edge followed by its right edge reversed, both sampled at
    the same stations along the band; stations with both edge points inside the disc are kept.
    """
    half = len(outline) // 2
    left, right = outline[:half], outline[half:][::-1]
    inside = (np.hypot(*left.T) <= radius) & (np.hypot(*right.T) <= radius)
    return np.vstack([left[inside], right[inside][::-1]])
