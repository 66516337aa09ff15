"""The top-down scene of one place: a single painted orthophoto that every aerial view is cut from.

Painting each place once and deriving all satellite and drone views from it (crop, rotate,
perspective-warp) is what makes the views of one place agree with each other, as real imagery of
one site does, while keeping generation cheap.  The scene also keeps the 3-D props (trees, cars)
so the ground-level renderer shows the same trees and cars as the aerial views.

Canvas: RGB uint8, north up, centre pixel = the building's centre, ``mpp`` metres per pixel.
A small image pyramid lets far or high views sample a pre-smoothed level instead of aliasing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .layout import SCENE_HALF_M, Feature, Place

ROOF_RGB = {"red": (178, 42, 38), "blue": (42, 84, 176), "green": (30, 142, 96), "white": (236, 236, 230),
            "black": (36, 36, 40), "yellow": (226, 196, 50), "orange": (228, 122, 38), "brown": (112, 72, 44)}
_ASPHALT = (80, 80, 84)
_MARKING = (232, 232, 226)
_POOL_WATER = (72, 186, 216)
_POOL_DECK = (214, 208, 192)
_LAKE = (42, 78, 98)
_RIVER = (58, 88, 100)
_PITCH = (72, 152, 68)
_CROPS = ((192, 166, 92), (158, 128, 70))
_TREE = ((34, 78, 38), (46, 92, 42), (30, 66, 34))
_CAR = ((236, 236, 236), (30, 30, 34), (170, 172, 176), (168, 40, 36), (40, 70, 150))
_GRASS = (96, 128, 64)
_BRIDGE = (150, 150, 146)
_SHADOW = 0.55                  # ground brightness inside a shadow
BASE_MPP_AT_128 = 0.5           # canvas resolution for 128 px views; scales with the view size
PYRAMID_LEVELS = 4


@dataclass(frozen=True)
class Tree:
    east: float
    north: float
    radius: float
    height: float


@dataclass(frozen=True)
class Car:
    east: float
    north: float
    angle_deg: float             # long axis, counter-clockwise from east
    colour: tuple[int, int, int]


@dataclass(eq=False)
class Scene:
    place: Place
    mpp: float
    levels: list[np.ndarray]
    trees: list[Tree] = field(default_factory=list)
    cars: list[Car] = field(default_factory=list)

    def canvas_to_ground(self, level: int) -> np.ndarray:
        """3x3 affine taking pixel (x, y, 1) of pyramid ``level`` to local metres (east, north, 1)."""
        m = self.mpp * 2 ** level
        c = (self.levels[0].shape[0] - 1) / 2 * self.mpp
        return np.array([[m, 0.0, -c], [0.0, -m, c], [0.0, 0.0, 1.0]])


def paint_scene(place: Place, size: int, rng: np.random.Generator) -> Scene:
    """Paint the place: flat features, then shadows, then what casts them (cars, trees, the roof)."""
    mpp = BASE_MPP_AT_128 * 128 / size
    n = int(round(2 * SCENE_HALF_M / mpp)) | 1          # odd: the centre falls on a pixel
    painter = _Painter(n, mpp)
    canvas = _ground_texture(n, rng)
    trees, cars = _props(place, rng)
    order = sorted(range(len(place.features)), key=lambda i: DRAW_ORDER[place.features[i].kind])
    for i in order:
        _paint_feature(canvas, painter, place.features[i])
    _paint_shadows(canvas, painter, place, trees, cars)
    for car in cars:
        painter.fill(canvas, car_outline(car), car.colour)
        painter.fill(canvas, _oriented_box(car.east, car.north, 0.9, 0.75, car.angle_deg), _shade(car.colour, 0.8))
    sun = _sun_vector(place)
    for tree in trees:
        colour = tree_rgb(tree)
        painter.circle(canvas, tree.east, tree.north, tree.radius, colour)
        painter.circle(canvas, tree.east + sun[0] * tree.radius * 0.3, tree.north + sun[1] * tree.radius * 0.3,
                       tree.radius * 0.55, _shade(colour, 1.25))
    _paint_roof(canvas, painter, place, rng)
    levels = [canvas]
    for _ in range(PYRAMID_LEVELS - 1):
        levels.append(cv2.pyrDown(levels[-1]))
    return Scene(place, mpp, levels, trees, cars)


# Painting order of the flat features (later ones cover earlier ones; the Gazebo export stacks its slabs so).
DRAW_ORDER = {"field": 0, "sports field": 0, "lake": 1, "river": 1, "trees": 2, "road": 3,
               "parking lot": 4, "round pool": 5, "rectangular pool": 5}


class _Painter:
    """Draws local-metre polygons on the canvas with anti-aliased, sub-pixel edges."""

    _SHIFT = 4

    def __init__(self, n: int, mpp: float):
        self.n, self.mpp, self.c = n, mpp, (n - 1) / 2

    def px(self, points: np.ndarray) -> np.ndarray:
        xy = np.column_stack([self.c + points[:, 0] / self.mpp, self.c - points[:, 1] / self.mpp])
        return np.round(xy * (1 << self._SHIFT)).astype(np.int32)

    def fill(self, canvas: np.ndarray, polygon: np.ndarray, colour) -> None:
        cv2.fillPoly(canvas, [self.px(polygon)], _rgb(colour), cv2.LINE_AA, self._SHIFT)

    def line(self, canvas: np.ndarray, points: np.ndarray, colour, width_m: float) -> None:
        thickness = max(1, int(round(width_m / self.mpp)))
        cv2.polylines(canvas, [self.px(points)], False, _rgb(colour), thickness, cv2.LINE_AA, self._SHIFT)

    def circle(self, canvas: np.ndarray, east: float, north: float, radius: float, colour) -> None:
        centre = self.px(np.array([[east, north]]))[0]
        cv2.circle(canvas, (int(centre[0]), int(centre[1])), int(round(radius / self.mpp * (1 << self._SHIFT))),
                   _rgb(colour), -1, cv2.LINE_AA, self._SHIFT)


def _rgb(colour) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(c)))) for c in colour)


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return _rgb(np.asarray(colour, dtype=float) * factor)


# Main colour of every flat feature kind, of the grass, bridges and trees: what the aerial views show
# and what the Gazebo export (world/gazebo.py) paints its geometry with.
FEATURE_RGB = {"field": _CROPS[0], "sports field": _PITCH, "lake": _LAKE, "river": _RIVER, "road": _ASPHALT,
               "parking lot": _shade(_ASPHALT, 1.15), "trees": _shade(_TREE[1], 1.3),
               "round pool": _POOL_WATER, "rectangular pool": _POOL_WATER}
GRASS_RGB, BRIDGE_RGB = _GRASS, _BRIDGE


def tree_rgb(tree: Tree) -> tuple[int, int, int]:
    """Crown colour of a tree (varies with its size, so clumps are not one flat colour)."""
    return _TREE[int(tree.radius * 10) % len(_TREE)]


def _sun_vector(place: Place) -> np.ndarray:
    a = math.radians(place.sun_azimuth_deg)
    return np.array([math.sin(a), math.cos(a)])


def _ground_texture(n: int, rng: np.random.Generator) -> np.ndarray:
    """Grass with low-frequency patches (mown / dry areas) and fine grain."""
    base = np.array(_GRASS, dtype=np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)
    coarse = rng.standard_normal((n // 40 + 2, n // 40 + 2), dtype=np.float32)
    fine = rng.standard_normal((n // 4, n // 4), dtype=np.float32)
    patches = cv2.resize(coarse, (n, n), interpolation=cv2.INTER_CUBIC) * 11.0 \
        + cv2.resize(fine, (n, n), interpolation=cv2.INTER_LINEAR) * 5.0
    tint = np.array([1.0, 0.8, 1.1], dtype=np.float32)      # dry patches go yellow-brown
    return np.clip(base + patches[:, :, None] * tint, 0, 255).astype(np.uint8)


def car_outline(car: Car) -> np.ndarray:
    """Ground outline of a parked car (4.4 m x 1.9 m), shared with the ground-level renderer."""
    return _oriented_box(car.east, car.north, 2.2, 0.95, car.angle_deg)


def _oriented_box(east: float, north: float, half_long: float, half_short: float, angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    along, across = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
    centre = np.array([east, north])
    return np.array([centre + sl * half_long * along + ss * half_short * across
                     for sl, ss in ((-1, -1), (1, -1), (1, 1), (-1, 1))])


def _axes(feature: Feature) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre, long axis and short axis (unit vectors) of a box-like feature outline."""
    pts = feature.outline
    centre = pts.mean(axis=0)
    e1, e2 = pts[1] - pts[0], pts[2] - pts[1]
    if np.linalg.norm(e1) < np.linalg.norm(e2):
        e1, e2 = e2, e1
    return centre, e1 / np.linalg.norm(e1), e2 / np.linalg.norm(e2)


def _props(place: Place, rng: np.random.Generator) -> tuple[list[Tree], list[Car]]:
    """Trees (feature clusters and scattered scenery) and parked cars, in local metres."""
    trees, cars = [], []
    outlines = [f.outline.astype(np.float32) for f in place.features]
    for index, feature in enumerate(place.features):
        if feature.kind == "trees":
            lo, hi = feature.outline.min(axis=0), feature.outline.max(axis=0)
            for _ in range(int(rng.integers(9, 16))):
                for _attempt in range(10):
                    p = rng.uniform(lo, hi)
                    if cv2.pointPolygonTest(outlines[index], (float(p[0]), float(p[1])), True) > 1.5:
                        trees.append(Tree(float(p[0]), float(p[1]), rng.uniform(2.2, 3.8),
                                          rng.uniform(6.0, 12.0)))
                        break
        elif feature.kind == "parking lot":
            centre, long_axis, short_axis = _axes(feature)
            angle = math.degrees(math.atan2(short_axis[1], short_axis[0]))   # cars park across the rows
            half_long = np.abs((feature.outline - centre) @ long_axis).max()
            for row in (-1, 1):
                for slot in np.arange(-half_long + 2.0, half_long - 1.0, 2.8):
                    if rng.random() < 0.7:
                        p = centre + long_axis * slot + short_axis * row * 4.2
                        cars.append(Car(float(p[0]), float(p[1]), angle + rng.uniform(-4, 4),
                                        _CAR[int(rng.integers(len(_CAR)))]))
    for _ in range(int(rng.integers(15, 30))):   # scenery trees, well away from the described ones
        r, a = rng.uniform(80.0, SCENE_HALF_M), rng.uniform(0.0, 2.0 * math.pi)
        p = (r * math.cos(a), r * math.sin(a))
        if all(cv2.pointPolygonTest(o, p, True) < -4.0 for o in outlines):
            trees.append(Tree(p[0], p[1], rng.uniform(2.5, 4.5), rng.uniform(6.0, 14.0)))
    return trees, cars


def _paint_feature(canvas: np.ndarray, painter: _Painter, feature: Feature) -> None:
    kind, outline = feature.kind, feature.outline
    if kind == "field":
        painter.fill(canvas, outline, FEATURE_RGB[kind])
        centre, long_axis, short_axis = _axes(feature)
        half_long = np.abs((outline - centre) @ long_axis).max()
        half_short = np.abs((outline - centre) @ short_axis).max()
        for t in np.arange(-half_short + 1.0, half_short, 2.5):    # crop rows
            a = centre + short_axis * t
            painter.line(canvas, np.array([a - long_axis * half_long, a + long_axis * half_long]), _CROPS[1], 1.0)
    elif kind == "sports field":
        painter.fill(canvas, outline, FEATURE_RGB[kind])
        centre, long_axis, short_axis = _axes(feature)
        inner = centre + (outline - centre) * 0.9
        painter.line(canvas, np.vstack([inner, inner[:1]]), _MARKING, 0.4)
        half_short = np.abs((inner - centre) @ short_axis).max()
        painter.line(canvas, np.array([centre - short_axis * half_short, centre + short_axis * half_short]),
                     _MARKING, 0.4)
        angles = np.linspace(0, 2 * math.pi, 24)
        ring = centre + 3.0 * np.column_stack([np.cos(angles), np.sin(angles)])
        painter.line(canvas, ring, _MARKING, 0.4)
    elif kind == "lake":
        painter.fill(canvas, outline + (outline - outline.mean(axis=0)) * 0.08, (150, 140, 100))   # muddy shore
        painter.fill(canvas, outline, FEATURE_RGB[kind])
    elif kind == "river":
        painter.fill(canvas, outline, FEATURE_RGB[kind])
        painter.fill(canvas, feature.bridge, _BRIDGE)
        painter.line(canvas, np.vstack([feature.bridge, feature.bridge[:1]]), (110, 110, 108), 0.6)   # railings
    elif kind == "road":
        painter.fill(canvas, outline, FEATURE_RGB[kind])
        half = len(outline) // 2
        middle = (outline[:half] + outline[half:][::-1]) / 2
        for i in range(0, len(middle) - 1, 2):                      # dashed centre line
            painter.line(canvas, middle[i:i + 2], _MARKING, 0.3)
    elif kind == "parking lot":
        painter.fill(canvas, outline, FEATURE_RGB[kind])
        centre, long_axis, short_axis = _axes(feature)
        half_long = np.abs((outline - centre) @ long_axis).max()
        for row in (-1, 1):
            for slot in np.arange(-half_long + 0.6, half_long, 2.8):
                a = centre + long_axis * slot + short_axis * row * 2.0
                painter.line(canvas, np.array([a, a + short_axis * row * 4.8]), _MARKING, 0.2)
    elif kind == "trees":
        painter.fill(canvas, outline, FEATURE_RGB[kind])   # undergrowth under the crowns
    elif kind in ("round pool", "rectangular pool"):
        centre = outline.mean(axis=0)
        radius = np.linalg.norm(outline - centre, axis=1).max()
        painter.fill(canvas, centre + (outline - centre) * (1 + 1.2 / radius), _POOL_DECK)
        painter.fill(canvas, outline, FEATURE_RGB[kind])
        painter.fill(canvas, centre + (outline - centre) * 0.55, _shade(_POOL_WATER, 0.88))   # deeper middle
    else:
        raise ValueError(f"cannot paint feature kind {kind!r}")


def _paint_shadows(canvas: np.ndarray, painter: _Painter, place: Place, trees: list[Tree], cars: list[Car]) -> None:
    """Darken the ground where the building, trees and cars block a low sun."""
    away = -_sun_vector(place) / math.tan(math.radians(place.sun_elevation_deg))   # shadow per metre of height
    mask = np.zeros(canvas.shape[:2], dtype=np.uint8)
    fp, shift = place.footprint, away * place.height_m
    for i in range(len(fp)):               # the prism's shadow: every wall swept along the light
        a, b = fp[i], fp[(i + 1) % len(fp)]
        painter.fill(mask, np.array([a, b, b + shift, a + shift]), (255,))
    painter.fill(mask, fp + shift, (255,))
    for tree in trees:
        s = away * tree.height * 0.6
        painter.circle(mask, tree.east + s[0], tree.north + s[1], tree.radius * 0.9, (255,))
    for car in cars:
        s = away * 1.4
        painter.fill(mask, car_outline(car) + s, (255,))
    weight = 1.0 - (1.0 - _SHADOW) * cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32) / 255.0
    canvas[:] = (canvas.astype(np.float32) * weight[:, :, None]).astype(np.uint8)


def _paint_roof(canvas: np.ndarray, painter: _Painter, place: Place, rng: np.random.Generator) -> None:
    """Roof in the place's colour: pitched (rectangular), hipped (square), dome (round) or flat with kit."""
    colour = np.asarray(ROOF_RGB[place.colour], dtype=float) + rng.uniform(-8, 8, 3)
    fp, sun = place.footprint, _sun_vector(place)
    centre = fp.mean(axis=0)
    if place.shape == "round":
        radius = np.linalg.norm(fp - centre, axis=1).max()
        painter.fill(canvas, fp, _shade(colour, 0.8))
        for j in range(1, 4):
            c = centre + sun * radius * 0.08 * j
            painter.circle(canvas, c[0], c[1], radius * (1 - 0.22 * j), _shade(colour, 0.8 + 0.1 * j))
        return
    if place.shape in ("rectangular", "square"):
        if place.shape == "rectangular":       # gable: two slopes meeting at a ridge along the long axis
            mid_a, mid_b = (fp[0] + fp[3]) / 2, (fp[1] + fp[2]) / 2
            faces = [np.array([fp[0], fp[1], mid_b, mid_a]), np.array([mid_a, mid_b, fp[2], fp[3]])]
            ridge = np.array([mid_a, mid_b])
        else:                                  # hip: four triangles meeting at the apex
            faces = [np.array([fp[i], fp[(i + 1) % 4], centre]) for i in range(4)]
            ridge = None
        for face in faces:
            facing = float((face.mean(axis=0) - centre) @ sun) / (np.linalg.norm(face.mean(axis=0) - centre) + 1e-9)
            painter.fill(canvas, face, _shade(colour, 0.9 + 0.15 * facing))
        if ridge is not None:
            painter.line(canvas, ridge, _shade(colour, 0.7), 0.4)
        return
    painter.fill(canvas, fp, colour)                 # flat roof: parapet and rooftop units
    painter.line(canvas, np.vstack([fp, fp[:1]]), _shade(colour, 0.7), 0.7)
    lo, hi = fp.min(axis=0), fp.max(axis=0)
    poly = fp.astype(np.float32)
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(10):
            p = rng.uniform(lo, hi)
            if cv2.pointPolygonTest(poly, (float(p[0]), float(p[1])), True) > 2.5:
                painter.fill(canvas, _oriented_box(p[0], p[1], 1.2, 0.9, place.orientation_deg), (186, 186, 182))
                break
