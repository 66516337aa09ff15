"""Photometric nuisance: what makes two photos of the same place differ besides the viewpoint.

Real captures of one site vary in exposure, white balance, sensor noise, haze and passing cloud
shadows; adding mild amounts of each keeps a retriever from matching views by exact pixel colour,
while staying weak enough that roof colours remain nameable (a red roof stays red).
"""
from __future__ import annotations

import cv2
import numpy as np

_HAZE_RGB = np.array([200, 206, 214], dtype=np.float32)


def jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0,
           clouds: bool = False, haze: float = 0.0) -> np.ndarray:
    """Return a perturbed copy of an RGB uint8 image; ``strength`` scales every effect."""
    size = image.shape[0]
    x = image.astype(np.float32)
    if clouds and rng.random() < 0.3:
        x *= _cloud_shadow(size, rng)[:, :, None]
    if haze > 0.0:
        x += (_HAZE_RGB - x) * rng.uniform(0.0, haze)
    mean = x.mean()
    contrast = rng.uniform(1 - 0.12 * strength, 1 + 0.12 * strength)
    gain = rng.uniform(1 - 0.06 * strength, 1 + 0.06 * strength, 3).astype(np.float32)   # white balance
    x = ((x - mean) * contrast + mean + rng.uniform(-14, 14) * strength) * gain
    x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 4.0) * strength)
    out = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.25:      # slight defocus / motion blur
        out = cv2.GaussianBlur(out, (3, 3), rng.uniform(0.5, 0.9))
    return out


def _cloud_shadow(size: int, rng: np.random.Generator) -> np.ndarray:
    """A soft dark blob: multiplicative brightness map in [0.7, 1]."""
    small = max(8, size // 8)
    blob = np.zeros((small, small), dtype=np.float32)
    centre = tuple(int(v) for v in rng.integers(0, small, 2))
    axes = tuple(int(v) for v in rng.integers(small // 4, small // 2 + 1, 2))
    cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    blob = cv2.GaussianBlur(cv2.resize(blob, (size, size), interpolation=cv2.INTER_LINEAR), (0, 0), size / 12)
    return 1.0 - 0.3 * blob
