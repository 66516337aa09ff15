"""Cameras of a place: where each view is taken from, and how local metres map to its pixels.

One camera model for every platform keeps views of a place geometrically consistent: the image,
the manifest's lat/lon/alt/heading and the sentence bounding boxes are all derived from the same
pose.  Drones and the ground observer are pinhole cameras (yaw = heading, pitch = tilt away from
nadir); the satellite is an orthographic, north-up nadir view.

Conventions (local frame of the place, see :mod:`.layout`): x east, y north, z up, metres.
``heading`` is degrees clockwise from north and is the direction the top of the image faces
(for a nadir view) or the camera looks towards (oblique and ground views).  ``tilt`` is degrees
away from straight down: 0 = nadir, 90 = horizontal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

DRONE_HFOV_DEG = 70.0
NEAR_M = 0.5   # points closer than this in front of a pinhole camera are clipped away


@dataclass(frozen=True)
class PinholeCamera:
    east: float
    north: float
    height: float        # above the place's ground
    heading: float
    tilt: float
    size: int            # square image, pixels
    hfov: float = DRONE_HFOV_DEG

    @property
    def focal(self) -> float:
        return (self.size / 2) / math.tan(math.radians(self.hfov) / 2)

    @cached_property
    def rotation(self) -> np.ndarray:
        """Rows: the image's right, down and forward axes in local coordinates (computed once)."""
        psi, theta = math.radians(self.heading), math.radians(self.tilt)
        forward = np.array([math.sin(theta) * math.sin(psi), math.sin(theta) * math.cos(psi), -math.cos(theta)])
        right = np.array([math.cos(psi), -math.sin(psi), 0.0])
        return np.vstack([right, np.cross(forward, right), forward])

    @property
    def intrinsics(self) -> np.ndarray:
        c = (self.size - 1) / 2
        return np.array([[self.focal, 0.0, c], [0.0, self.focal, c], [0.0, 0.0, 1.0]])

    @property
    def position(self) -> np.ndarray:
        return np.array([self.east, self.north, self.height])

    def image_from_ground(self) -> np.ndarray:
        """3x3 homography taking ground points (east, north, 1) to homogeneous pixels."""
        rot = self.rotation
        return self.intrinsics @ np.column_stack([rot[:, 0], rot[:, 1], -rot @ self.position])

    def metres_per_pixel(self) -> float:
        """Ground sampling distance at the image centre (for picking a pyramid level)."""
        return self.height / max(math.cos(math.radians(self.tilt)), 0.2) / self.focal

    def project_polygon(self, polygon: np.ndarray) -> np.ndarray:
        """Pixels of the part of a 3-D polygon in front of the camera (clipped at ``NEAR_M``)."""
        cam = (polygon - self.position) @ self.rotation.T
        cam = _clip_in_front(cam)
        if len(cam) == 0:
            return cam[:, :2]
        uv = cam[:, :2] / cam[:, 2:3] * self.focal
        return uv + (self.size - 1) / 2


@dataclass(frozen=True)
class OrthoCamera:
    """North-up nadir orthophoto centred at (east, north), ``width_m`` metres across."""

    east: float
    north: float
    width_m: float
    size: int

    heading = 0.0
    tilt = 0.0

    def image_from_ground(self) -> np.ndarray:
        s = self.size / self.width_m
        c = (self.size - 1) / 2
        return np.array([[s, 0.0, c - s * self.east], [0.0, -s, c + s * self.north], [0.0, 0.0, 1.0]])

    def metres_per_pixel(self) -> float:
        return self.width_m / self.size

    def project_polygon(self, polygon: np.ndarray) -> np.ndarray:
        pts = np.column_stack([polygon[:, 0], polygon[:, 1], np.ones(len(polygon))]) @ self.image_from_ground().T
        return pts[:, :2]


def _clip_in_front(points: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon (camera coordinates) against the plane z = NEAR_M."""
    out = []
    for i in range(len(points)):
        a, b = points[i], points[(i + 1) % len(points)]
        a_in, b_in = a[2] >= NEAR_M, b[2] >= NEAR_M
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (NEAR_M - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out).reshape(-1, 3)


def normalized_bbox(pixels: np.ndarray, size: int) -> tuple[list[float], float] | None:
    """GeoText-style [cx, cy, w, h] (fractions of the image) of the visible part of some pixels.

    Returns the box and the fraction of the unclipped box that lies inside the image, or None
    when nothing of it is inside.
    """
    if len(pixels) == 0:
        return None
    x0, y0 = pixels.min(axis=0)
    x1, y1 = pixels.max(axis=0)
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, size), min(y1, size)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    full = max((x1 - x0) * (y1 - y0), 1e-9)
    inside = (cx1 - cx0) * (cy1 - cy0) / full
    box = [(cx0 + cx1) / 2 / size, (cy0 + cy1) / 2 / size, (cx1 - cx0) / size, (cy1 - cy0) / size]
    return [round(v, 4) for v in box], inside
