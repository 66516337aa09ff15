"""Aerial views of a place (as in GeoText-1652 / University-1652): one satellite, several drone shots.

Satellite: north-up orthophoto of ``SATELLITE_WIDTH_M`` around the building.  Drone: cameras
orbiting the building at different headings (image rotation), altitudes 30-120 m (scale) and
tilts up to 30 degrees (perspective), all aimed near the building, each warped out of the place's
single painted scene.  Each view also lists which objects it shows and where (normalized bboxes),
which the captions turn into GeoText's "sentences" + "bboxes".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import nuisance
from .camera import OrthoCamera, PinholeCamera, normalized_bbox
from .layout import SCENE_HALF_M, Place
from .scene import Scene

SATELLITE_WIDTH_M = 170.0
# An orthophoto has no camera height; the manifest needs one, so satellite records carry this
# nominal height above the place's ground: well above any drone, inside the manifest's range.
SATELLITE_ALT_AGL_M = 600.0
DRONE_ALT_RANGE_M = (30.0, 120.0)
DRONE_MAX_TILT_DEG = 30.0
BUILDING = -1            # object key of the target building; features use their index
FEATURE_HEIGHT_M = {"trees": 10.0, "parking lot": 1.5}   # what rises above the ground, for side views


@dataclass(eq=False)
class View:
    """One rendered image of a place and everything the records need about it."""

    platform: str
    number: int                       # 1-based within the platform
    camera: PinholeCamera | OrthoCamera
    alt_agl: float
    image: np.ndarray                 # RGB uint8
    objects: list[tuple[int, list[float]]] = field(default_factory=list)   # (object key, bbox)

    def image_id(self, place: Place) -> str:
        return f"{place.place_id}_{self.platform}_{self.number:02d}"


def satellite_view(scene: Scene, size: int, rng: np.random.Generator) -> View:
    camera = OrthoCamera(rng.uniform(-4, 4), rng.uniform(-4, 4), SATELLITE_WIDTH_M, size)
    image = nuisance.jitter(_warp(scene, camera, size), rng, strength=1.2, haze=0.15)
    return View("satellite", 1, camera, SATELLITE_ALT_AGL_M, image, visible_objects(scene.place, camera, size))


def drone_cameras(place: Place, count: int, size: int, rng: np.random.Generator) -> list[PinholeCamera]:
    """An orbit: headings spread around the circle, altitudes stratified over the range, random tilts."""
    start = rng.uniform(0.0, 360.0)
    strata = rng.permutation(count)
    low, high = DRONE_ALT_RANGE_M
    cameras = []
    for k in range(count):
        heading = (start + k * 360.0 / count + rng.uniform(-15, 15)) % 360.0
        height = low + (high - low) * (strata[k] + rng.uniform()) / count
        tilt = rng.uniform(0.0, DRONE_MAX_TILT_DEG)
        look = rng.uniform(-5.0, 5.0, 2)
        direction = np.array([math.sin(math.radians(heading)), math.cos(math.radians(heading))])
        # Keep the far edge of the view on the painted scene: lower the tilt until it fits.
        half_fov = math.radians(35.0)
        while tilt > 0 and np.linalg.norm(look + direction * height * (
                math.tan(math.radians(tilt) + half_fov) - math.tan(math.radians(tilt)))) > 0.9 * SCENE_HALF_M:
            tilt = max(0.0, tilt - 2.0)
        position = look - direction * height * math.tan(math.radians(tilt))
        cameras.append(PinholeCamera(float(position[0]), float(position[1]), height, heading, tilt, size))
    return cameras


def drone_view(scene: Scene, camera: PinholeCamera, number: int, rng: np.random.Generator) -> View:
    image = nuisance.jitter(_warp(scene, camera, camera.size), rng, strength=1.0, clouds=True)
    return View("drone", number, camera, camera.height, image, visible_objects(scene.place, camera, camera.size))


def _warp(scene: Scene, camera: PinholeCamera | OrthoCamera, size: int) -> np.ndarray:
    """Sample the scene through the camera, from the pyramid level closest to the view's scale."""
    ratio = camera.metres_per_pixel() / scene.mpp
    level = int(min(max(math.floor(math.log2(max(ratio, 1.0))), 0), len(scene.levels) - 1))
    matrix = camera.image_from_ground() @ scene.canvas_to_ground(level)
    return cv2.warpPerspective(scene.levels[level], matrix, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)


def visible_objects(place: Place, camera: PinholeCamera | OrthoCamera, size: int,
                    side_view: bool = False) -> list[tuple[int, list[float]]]:
    """The building (first, when in frame) and every feature seen well enough to be worth a sentence.

    A feature counts when its box covers at least 5% of the image in both directions and either
    a third of it is in frame or it is a road/river (long bands are never wholly in frame).  Aerial
    views show the scene as an orthophoto, so outlines are projected on the ground; a ``side_view``
    also projects them at their height, since from the ground a wall or a tree is seen upright.
    Occlusion is ignored: a bbox may cover something hidden behind the building.
    """
    found = []
    heights = [place.height_m + place.roof_rise_m] if side_view else []
    building = normalized_bbox(_project(camera, place.footprint, heights), size)
    if building is not None:
        found.append((BUILDING, building[0]))
    for index, feature in enumerate(place.features):
        heights = [FEATURE_HEIGHT_M[feature.kind]] if side_view and feature.kind in FEATURE_HEIGHT_M else []
        seen = normalized_bbox(_project(camera, feature.outline, heights), size)
        if seen is None:
            continue
        box, inside = seen
        if box[2] >= 0.05 and box[3] >= 0.05 and (inside >= 0.33 or feature.kind in ("road", "river")):
            found.append((index, box))
    return found


def _project(camera: PinholeCamera | OrthoCamera, outline: np.ndarray, heights: list[float]) -> np.ndarray:
    """Pixels of an outline laid on the ground and, for each height given, lifted to that height."""
    parts = [camera.project_polygon(np.column_stack([outline, np.full(len(outline), z)]))
             for z in [0.0, *heights]]
    return np.vstack(parts)
