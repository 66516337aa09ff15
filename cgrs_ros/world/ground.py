"""Ground-level view: a person standing 20-40 m from the building, looking at it.

Rendered in 3-D from the same place model the aerial views come from (the footprint extruded to
the building's height with its roof, the scene's own trees and cars, the flat features laid on
the ground), so the street-level photo agrees with the drone shots: same roof colour, same
massing (L, U and T wings, a round drum), the same trees and parked cars.  Painter's algorithm,
far to near, is enough for these few convex-ish solids.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..targets import EYE_HEIGHT_M  # the one camera height a ground photo is taken at (targets reads it back)
from . import nuisance
from .camera import PinholeCamera
from .layout import Place
from .scene import ROOF_RGB, Car, Scene, Tree, car_outline
from .views import View, visible_objects

CAR_HEIGHT_M = 1.45
PITCH_UP_DEG = 8.0
_WALLS = ((214, 206, 190), (196, 196, 192), (222, 214, 200), (180, 170, 156))
_WINDOW = (62, 72, 88)
_FLAT_RGB = {"field": (176, 150, 84), "sports field": (72, 152, 68), "lake": (52, 88, 108), "river": (62, 92, 104),
             "road": (84, 84, 88), "parking lot": (92, 92, 96), "round pool": (72, 186, 216),
             "rectangular pool": (72, 186, 216), "trees": (60, 104, 52)}
_WATER = ("lake", "river", "round pool", "rectangular pool")


def wall_rgb(place: Place) -> tuple[int, int, int]:
    """Wall colour of a place's building (also the Gazebo export's)."""
    return _WALLS[place.index % len(_WALLS)]


def ground_camera(place: Place, size: int, rng: np.random.Generator) -> PinholeCamera:
    """Stand somewhere around the building, on dry land if 20 tries find some, and face it."""
    reach = float(np.linalg.norm(place.footprint, axis=1).max())
    water = [f.outline.astype(np.float32) for f in place.features if f.kind in _WATER]
    for _attempt in range(20):
        bearing = rng.uniform(0.0, 360.0)
        distance = reach + rng.uniform(20.0, 40.0)
        spot = (distance * math.sin(math.radians(bearing)), distance * math.cos(math.radians(bearing)))
        if all(cv2.pointPolygonTest(w, spot, True) < -2.0 for w in water):
            break
    heading = (bearing + 180.0 + rng.uniform(-6.0, 6.0)) % 360.0
    return PinholeCamera(spot[0], spot[1], EYE_HEIGHT_M, heading, 90.0 + PITCH_UP_DEG, size)


def ground_view(scene: Scene, camera: PinholeCamera, rng: np.random.Generator) -> View:
    place, size = scene.place, camera.size
    image = _sky_and_land(camera, rng)
    for feature in sorted(place.features, key=lambda f: -_distance(camera, f.outline.mean(axis=0))):
        _fill(image, camera, np.column_stack([feature.outline, np.zeros(len(feature.outline))]),
              _FLAT_RGB[feature.kind])
    drawables = [(_distance(camera, place.footprint.mean(axis=0)), lambda: _building(image, camera, place))]
    for tree in scene.trees:
        drawables.append((_distance(camera, (tree.east, tree.north)), lambda t=tree: _tree(image, camera, t)))
    for car in scene.cars:
        drawables.append((_distance(camera, (car.east, car.north)), lambda c=car: _car(image, camera, c)))
    for _, draw in sorted(drawables, key=lambda item: -item[0]):
        draw()
    image = nuisance.jitter(image, rng, strength=1.0)
    return View("ground", 1, camera, EYE_HEIGHT_M, image, visible_objects(place, camera, size, side_view=True))


def _distance(camera: PinholeCamera, point) -> float:
    return math.hypot(point[0] - camera.east, point[1] - camera.north)


def _fill(image: np.ndarray, camera: PinholeCamera, polygon3d: np.ndarray, colour) -> None:
    pixels = camera.project_polygon(polygon3d)
    if len(pixels) >= 3:
        pts = np.round(np.clip(pixels, -4 * camera.size, 5 * camera.size) * 16).astype(np.int32)
        cv2.fillPoly(image, [pts], tuple(int(c) for c in colour), cv2.LINE_AA, 4)


def _sky_and_land(camera: PinholeCamera, rng: np.random.Generator) -> np.ndarray:
    """Sky gradient with a few clouds above the horizon, textured grass below it."""
    size = camera.size
    # A level ray sits PITCH_UP_DEG below the optical axis.
    horizon = int(np.clip(round((size - 1) / 2 + camera.focal * math.tan(math.radians(PITCH_UP_DEG))), 1, size - 1))
    rows = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None]
    top, low = np.array([96, 150, 214], np.float32), np.array([196, 212, 228], np.float32)
    image = np.empty((size, size, 3), np.uint8)
    image[:horizon] = (top + (low - top) * rows)[:, None, :].astype(np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        centre = (int(rng.integers(0, size)), int(rng.integers(0, max(horizon - 4, 1))))
        axes = (int(rng.integers(size // 12, size // 5)), int(rng.integers(size // 40 + 1, size // 16 + 2)))
        cv2.ellipse(image, centre, axes, 0, 0, 360, (236, 238, 240), -1, cv2.LINE_AA)
    grass = np.array([92, 124, 62], np.float32) + rng.uniform(-8, 8, 3).astype(np.float32)
    depth = np.linspace(0.75, 1.05, size - horizon, dtype=np.float32)[:, None]     # far grass looks paler
    land = (grass * depth)[:, None, :] + rng.standard_normal((size - horizon, size, 1), dtype=np.float32) * 6.0
    image[horizon:] = np.clip(land, 0, 255).astype(np.uint8)
    # A distant tree line sitting on the horizon.
    xs = np.arange(0, size + 8, 8)
    tops = horizon - rng.uniform(1, max(2.0, size / 28), len(xs))
    line = np.vstack([np.column_stack([xs, tops]), [[size, horizon], [0, horizon]]])
    cv2.fillPoly(image, [np.round(line).astype(np.int32)], (70, 96, 72), cv2.LINE_AA)
    return image


def _building(image: np.ndarray, camera: PinholeCamera, place: Place) -> None:
    """Roof first, then walls with windows over it, each far to near with back faces skipped.

    From eye level the near walls hide most of a roof; drawing the roof first lets them do so,
    while the part that rises above the walls (a ridge, a cone's tip) stays visible.  The eaves or
    parapet in the roof's colour run along every wall top, as they do on real buildings, so the
    roof colour is visible even where the roof itself is not.
    """
    fp, h = place.footprint, place.height_m
    roof = np.asarray(ROOF_RGB[place.colour], dtype=float)
    wall = np.asarray(wall_rgb(place), dtype=float)
    sun = np.array([math.sin(math.radians(place.sun_azimuth_deg)), math.cos(math.radians(place.sun_azimuth_deg))])
    eye = np.array([camera.east, camera.north])
    _roof(image, camera, place, roof, sun)
    faces = []
    for i in range(len(fp)):
        a, b = fp[i], fp[(i + 1) % len(fp)]
        normal = np.array([b[1] - a[1], a[0] - b[0]]) / (np.linalg.norm(b - a) + 1e-9)   # outward (CCW)
        mid = (a + b) / 2
        if (eye - mid) @ normal <= 0:
            continue
        light = 0.7 + 0.3 * max(0.0, float(normal @ sun))
        faces.append((np.linalg.norm(eye - mid), a, b, light))
    for _, a, b, light in sorted(faces, key=lambda f: -f[0]):
        _fill(image, camera, _quad(a, b, 0.0, h), wall * light)
        _windows(image, camera, a, b, h)
        band = 1.6 if place.roof_rise_m == 0.0 else 0.8      # a flat roof's parapet, a pitched roof's eaves
        _fill(image, camera, _quad(a, b, h - band, h + 0.3), roof * light)


def _quad(a: np.ndarray, b: np.ndarray, z0: float, z1: float) -> np.ndarray:
    return np.array([[a[0], a[1], z0], [b[0], b[1], z0], [b[0], b[1], z1], [a[0], a[1], z1]])


def _windows(image: np.ndarray, camera: PinholeCamera, a: np.ndarray, b: np.ndarray, height: float) -> None:
    length = float(np.linalg.norm(b - a))
    if length < 3.0:
        return
    along = (b - a) / length
    for z in np.arange(1.2, height - 1.8, 3.2):
        for s in np.arange(1.5, length - 1.0, 3.0):
            p, q = a + along * s, a + along * (s + 1.3)
            _fill(image, camera, _quad(p, q, z, z + 1.5), _WINDOW)


def _roof(image: np.ndarray, camera: PinholeCamera, place: Place, colour: np.ndarray, sun: np.ndarray) -> None:
    """Gable (rectangular), hip (square) or cone (round) roof faces, far to near."""
    rise = place.roof_rise_m
    if rise == 0.0:
        return
    h = place.height_m
    fp = np.column_stack([place.footprint, np.full(len(place.footprint), h)])    # eaves
    if place.shape == "rectangular":
        ridge_a = (fp[0] + fp[3]) / 2 + (0, 0, rise)
        ridge_b = (fp[1] + fp[2]) / 2 + (0, 0, rise)
        faces = [[fp[0], fp[1], ridge_b, ridge_a], [ridge_a, ridge_b, fp[2], fp[3]],
                 [fp[1], fp[2], ridge_b], [fp[3], fp[0], ridge_a]]
    else:
        apex = fp.mean(axis=0) + (0, 0, rise)
        faces = [[fp[i], fp[(i + 1) % len(fp)], apex] for i in range(len(fp))]
    eye = np.array([camera.east, camera.north])
    centre = place.footprint.mean(axis=0)
    order = sorted(faces, key=lambda f: -np.linalg.norm(eye - np.mean(f, axis=0)[:2]))
    for face in order:
        face = np.array(face)
        out = face.mean(axis=0)[:2] - centre
        light = 0.75 + 0.3 * float(out @ sun) / (np.linalg.norm(out) + 1e-9)
        _fill(image, camera, face, colour * light)


def _tree(image: np.ndarray, camera: PinholeCamera, tree: Tree) -> None:
    trunk = np.array([tree.east, tree.north])
    side = np.array([math.cos(math.radians(camera.heading)), -math.sin(math.radians(camera.heading))])
    _fill(image, camera, _quad(trunk - side * 0.25, trunk + side * 0.25, 0.0, tree.height * 0.5), (84, 62, 40))
    crown = [trunk + side * tree.radius * math.cos(t) for t in np.linspace(0, 2 * math.pi, 16, endpoint=False)]
    zs = [tree.height * 0.62 + tree.height * 0.36 * math.sin(t) for t in np.linspace(0, 2 * math.pi, 16, endpoint=False)]
    _fill(image, camera, np.array([[p[0], p[1], z] for p, z in zip(crown, zs)]), (44, 86, 42))


def _car(image: np.ndarray, camera: PinholeCamera, car: Car) -> None:
    corners = car_outline(car)
    box = np.array([[c[0], c[1], z] for z in (0.0, CAR_HEIGHT_M) for c in corners])
    pixels = camera.project_polygon(box[:4])
    if len(pixels) < 3:
        return
    hull = cv2.convexHull(np.round(np.vstack([pixels, camera.project_polygon(box[4:])]) * 16).astype(np.int32))
    cv2.fillConvexPoly(image, hull, tuple(int(c) for c in car.colour), cv2.LINE_AA, 4)
