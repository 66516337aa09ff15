"""Places of the procedural world: what stands where, in metres around each place's centre.

A place is one target building plus 2-3 neighbouring features, each on a different cardinal side
of it.  Every attribute comes from a small vocabulary, so any single word ("red", "pool", "north")
is shared by many places; only the combination of roof colour x shape x size x which neighbour lies
on which side tells places apart.  That is the GeoText-1652 difficulty the retriever must learn:
read the whole description, not one keyword.  The combination space (96 buildings x ~2,400
neighbour arrangements) is far larger than any world we generate, and the generator additionally
refuses two places with the same full combination, so every place is identifiable in principle.

Local frame of a place: x = east, y = north (metres), origin = the building's centre, z = up from
the (flat) ground of the place.  Places sit on a jittered grid around the datum origin; each owns
a footprint disc of ``FOOTPRINT_RADIUS_M`` that no other footprint overlaps, and every camera of
the place stands inside it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..geo import DEMO_DATUM as DEFAULT_DATUM, Datum, enu_to_geodetic

ROOF_COLOURS = ("red", "blue", "green", "white", "black", "yellow", "orange", "brown")
SHAPES = ("rectangular", "square", "L-shaped", "U-shaped", "T-shaped", "round")
SIZES = ("small", "large")
FEATURE_KINDS = ("round pool", "rectangular pool", "parking lot", "sports field", "lake", "trees",
                 "field", "road", "river")
DIRECTIONS = ("north", "east", "south", "west")
UNIT = {"north": (0.0, 1.0), "east": (1.0, 0.0), "south": (0.0, -1.0), "west": (-1.0, 0.0)}
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}

PLACE_SPACING_M = 320.0       # grid pitch between place centres
PLACE_JITTER_M = 35.0         # random shift of each centre, so the grid is not obvious
FOOTPRINT_RADIUS_M = 120.0    # spacing - 2 * jitter > 2 * radius: footprints never overlap
SCENE_HALF_M = 180.0          # half-width of the painted area; linear features span all of it
_HALF_EXTENT_M = {"small": (9.0, 12.0), "large": (16.0, 21.0)}
_HEIGHT_M = {"small": (6.0, 10.0), "large": (12.0, 24.0)}


@dataclass(eq=False)
class Feature:
    """A neighbour of the building: its kind, the side it lies on, and its ground outline."""

    kind: str
    direction: str
    outline: np.ndarray            # (N, 2) polygon, local metres (east, north)
    gap_m: float                   # free ground between the building and the feature
    bridge: np.ndarray | None = None   # rivers only: the bridge deck polygon

    def to_json(self) -> dict:
        return {"kind": self.kind, "direction": self.direction, "gap_m": round(self.gap_m, 2)}


@dataclass(eq=False)
class Place:
    """One target: a building, its neighbours, and where it is on the Earth."""

    index: int
    east: float                    # centre, metres from the datum origin
    north: float
    lat: float
    lon: float
    ground_height: float           # terrain height above the ellipsoid (the place is flat)
    colour: str
    shape: str
    size: str
    height_m: float
    orientation_deg: float         # building rotation, counter-clockwise from the east axis
    footprint: np.ndarray          # (N, 2) counter-clockwise polygon, local metres
    features: list[Feature] = field(default_factory=list)
    sun_azimuth_deg: float = 180.0  # direction the sun shines from (shadows point away)
    sun_elevation_deg: float = 45.0
    radius_m: float = FOOTPRINT_RADIUS_M

    @property
    def place_id(self) -> str:
        return f"p{self.index:04d}"

    @property
    def roof_rise_m(self) -> float:
        """How far the roof rises above the walls: gabled, hipped and domed roofs do, flat ones not."""
        if self.shape in ("L-shaped", "U-shaped", "T-shaped"):
            return 0.0
        return 0.18 * float(np.linalg.norm(self.footprint - self.footprint.mean(axis=0), axis=1).max())

    @property
    def signature(self) -> tuple:
        """The full attribute combination; unique per world."""
        return (self.colour, self.shape, self.size,
                tuple(sorted((f.direction, f.kind) for f in self.features)))

    def to_json(self) -> dict:
        return {
            "place_id": self.place_id,
            "lat": round(self.lat, 8), "lon": round(self.lon, 8),
            "ground_height_m": round(self.ground_height, 2),
            "east_m": round(self.east, 2), "north_m": round(self.north, 2),
            "radius_m": self.radius_m,
            "building": {"colour": self.colour, "shape": self.shape, "size": self.size,
                         "height_m": round(self.height_m, 2),
                         "orientation_deg": round(self.orientation_deg, 2)},
            "neighbours": [f.to_json() for f in self.features],
        }


def build_places(seed: int, n_places: int, datum: Datum = DEFAULT_DATUM) -> list[Place]:
    """Lay out ``n_places`` places deterministically from ``seed``, all with distinct signatures."""
    rng = np.random.default_rng([seed, 1])
    side = math.ceil(math.sqrt(n_places))
    terrain_phase = rng.uniform(0.0, 2.0 * math.pi, 2)
    seen: set[tuple] = set()
    places = []
    for index in range(n_places):
        row, col = divmod(index, side)
        east = (col - (side - 1) / 2) * PLACE_SPACING_M + rng.uniform(-PLACE_JITTER_M, PLACE_JITTER_M)
        north = ((side - 1) / 2 - row) * PLACE_SPACING_M + rng.uniform(-PLACE_JITTER_M, PLACE_JITTER_M)
        while True:  # the space is ~230k combinations: a repeat is rare and one redraw fixes it
            place = _draw_place(index, east, north, rng, datum, terrain_phase)
            if place.signature not in seen:
                break
        seen.add(place.signature)
        places.append(place)
    return places


def _draw_place(index: int, east: float, north: float, rng: np.random.Generator, datum: Datum,
                terrain_phase: np.ndarray) -> Place:
    colour = ROOF_COLOURS[rng.integers(len(ROOF_COLOURS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    size = SIZES[rng.integers(len(SIZES))]
    half = rng.uniform(*_HALF_EXTENT_M[size])
    orientation = rng.uniform(-20.0, 20.0) + 90.0 * rng.integers(4)
    footprint = _rotate(building_outline(shape, half), orientation)
    # Gentle rolling terrain: places differ in ground height by a few tens of metres.
    ground = datum.altitude + 12.0 * math.sin(east / 850.0 + terrain_phase[0]) \
        + 9.0 * math.cos(north / 600.0 + terrain_phase[1])
    lat, lon, _ = enu_to_geodetic(east, north, 0.0, datum)
    n_neighbours = 2 + int(rng.integers(2))
    directions = sorted(rng.choice(len(DIRECTIONS), n_neighbours, replace=False))
    kinds = rng.choice(len(FEATURE_KINDS), n_neighbours, replace=False)
    features = [_place_feature(FEATURE_KINDS[k], DIRECTIONS[d], footprint, rng)
                for d, k in zip(directions, kinds)]
    return Place(index=index, east=east, north=north, lat=lat, lon=lon, ground_height=ground,
                 colour=colour, shape=shape, size=size, height_m=rng.uniform(*_HEIGHT_M[size]),
                 orientation_deg=orientation, footprint=footprint, features=features,
                 sun_azimuth_deg=rng.uniform(120.0, 240.0), sun_elevation_deg=rng.uniform(35.0, 60.0))


def building_outline(shape: str, half: float) -> np.ndarray:
    """Counter-clockwise outline of an unrotated building whose bounding box is about 2*half wide."""
    b, arm = half, 0.9 * half
    if shape == "round":
        angles = np.linspace(0.0, 2.0 * math.pi, 40, endpoint=False)
        return 0.95 * b * np.column_stack([np.cos(angles), np.sin(angles)])
    if shape == "square":
        s = 0.85 * b
        return np.array([(-s, -s), (s, -s), (s, s), (-s, s)])
    if shape == "rectangular":
        return np.array([(-b, -0.55 * b), (b, -0.55 * b), (b, 0.55 * b), (-b, 0.55 * b)])
    if shape == "L-shaped":
        return np.array([(-b, -b), (b, -b), (b, -b + arm), (-b + arm, -b + arm), (-b + arm, b), (-b, b)])
    if shape == "U-shaped":
        w = 0.7 * b
        return np.array([(-b, -b), (b, -b), (b, b), (b - w, b), (b - w, -b + w), (-b + w, -b + w),
                         (-b + w, b), (-b, b)])
    if shape == "T-shaped":
        w = 0.45 * arm
        return np.array([(-w, -b), (w, -b), (w, b - arm), (b, b - arm), (b, b), (-b, b),
                         (-b, b - arm), (-w, b - arm)])
    raise ValueError(f"unknown building shape {shape!r}")


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return points @ rot.T


def _ellipse(centre: np.ndarray, half_u: float, half_v: float, u: np.ndarray, v: np.ndarray,
             wobble: np.ndarray | None = None) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * math.pi, 32 if wobble is None else len(wobble), endpoint=False)
    scale = 1.0 if wobble is None else wobble
    return centre + np.outer(half_u * scale * np.sin(angles), u) + np.outer(half_v * scale * np.cos(angles), v)


def _box(centre: np.ndarray, half_u: float, half_v: float, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.array([centre + su * half_u * u + sv * half_v * v
                     for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1))])


def _place_feature(kind: str, direction: str, footprint: np.ndarray, rng: np.random.Generator) -> Feature:
    """Put a feature of ``kind`` on the ``direction`` side, a few metres clear of the building.

    ``u`` points away from the building, ``v`` along its side; sizes are in metres and chosen so
    that pools are a few pixels wide in the satellite view and fields fill a good part of it.
    """
    u = np.array(UNIT[direction])
    v = np.array((u[1], -u[0]))
    reach = float(np.max(footprint @ u))      # how far the building extends towards that side
    gap = rng.uniform(5.0, 12.0)
    near = reach + gap
    shift = rng.uniform(-5.0, 5.0)
    bridge = None
    if kind in ("road", "river"):
        width = rng.uniform(7.0, 9.0) if kind == "road" else rng.uniform(10.0, 15.0)
        along = np.linspace(-SCENE_HALF_M, SCENE_HALF_M, 73)
        offset = near + width / 2
        if kind == "river":       # rivers meander a little; roads are straight
            offset = offset + 3.0 * np.sin(along / rng.uniform(18.0, 30.0) + rng.uniform(0, 6.3)) + 3.0
        left = np.outer(offset - width / 2, u) + np.outer(along, v)
        right = np.outer(offset + width / 2, u) + np.outer(along, v)
        outline = np.vstack([left, right[::-1]])
        if kind == "river":
            at = int(np.argmin(np.abs(along - shift * 2)))
            bridge = _box(u * offset[at] + v * along[at], width / 2 + 4.0, 3.5, u, v)
        return Feature(kind, direction, outline, gap, bridge)
    half_u, half_v = {
        "round pool": (rng.uniform(3.5, 5.5),) * 2,
        "rectangular pool": tuple(rng.permutation([rng.uniform(5.0, 7.5), rng.uniform(2.5, 3.5)])),
        "parking lot": (rng.uniform(8.0, 10.0), rng.uniform(12.0, 16.0)),
        "sports field": (rng.uniform(10.0, 13.0), rng.uniform(17.0, 22.0)),
        "lake": (rng.uniform(9.0, 14.0), rng.uniform(13.0, 20.0)),
        "trees": (rng.uniform(6.0, 9.0), rng.uniform(9.0, 15.0)),
        "field": (rng.uniform(12.0, 17.0), rng.uniform(18.0, 25.0)),
    }[kind]
    centre = u * (near + half_u) + v * shift
    if kind == "round pool":
        outline = _ellipse(centre, half_u, half_u, u, v)
    elif kind == "lake":
        outline = _ellipse(centre, half_u, half_v, u, v, wobble=rng.uniform(0.85, 1.1, 14))
    elif kind == "trees":
        outline = _ellipse(centre, half_u, half_v, u, v)
    else:
        outline = _box(centre, half_u, half_v, u, v)
    return Feature(kind, direction, outline, gap, bridge)
