"""Heading-aware views: turn an aerial image so that north is up before it is captioned.

A caption can only state "the lake lies to the east" if east can be seen in the image.  A drone
image is rotated by its heading (the compass direction the top of the image faces), and north
cannot be recovered from the pixels, but every gallery record carries that heading.  Rotating the
image clockwise by the heading puts north at the top, so "above" in the image means north, "right"
means east, and a captioner (or a CLIP) trained on north-up views states true cardinal sides.

Which views are turned is an index setting (``index.rectify``), recorded in the index fingerprint:

- ``none``      images are used as they are (hub captioners that never learned north-up views);
- ``north_up``  aerial views with a heading are rotated north-up.  Views of the platforms in
  ``index.horizontal_platforms`` (street-level photos: the heading is where the camera looks
  along the ground, and no rotation of the picture can make north "up") and records without a
  heading are left as they are.

Whichever the mode, a caption's "north" means north only where the top of the picture the captioner
saw faced north: a view turned north-up, an aerial view taken with heading 0, or a view of one of
``index.north_up_platforms`` (satellite tiles are published north-up).  :func:`compass_views` says
which; the clause matcher reads no side from the other captions (a drone view without a heading, or
any aerial view under ``none``): their sides are right about a third of the time, and a wrong side is
a contradiction.  Street-level views (``horizontal_platforms``) face along the ground, not up, so
their captions' sides are not read either.

The rotation keeps the image size and fills the corners that rotate in by reflecting the border,
so no black wedge becomes a landmark the captioner might name.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

RECTIFY_MODES = ("none", "north_up")


def north_up(image: Image.Image, heading: float) -> Image.Image:
    """``image`` turned clockwise by ``heading`` degrees: its top then faces north."""
    import cv2

    angle = float(heading) % 360.0
    if angle == 0.0:
        return image
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    # cv2 angles are counter-clockwise: a clockwise turn by the heading is -heading.
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), -angle, 1.0)
    turned = cv2.warpAffine(pixels, matrix, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101)
    return Image.fromarray(turned)


def should_rectify(record, mode: str, horizontal_platforms) -> bool:
    """Whether ``record``'s image is turned north-up under ``mode`` (see the module docstring)."""
    return (mode == "north_up" and record.heading is not None
            and record.platform not in horizontal_platforms)


def compass_views(platform_codes: np.ndarray, headings: np.ndarray, settings) -> np.ndarray:
    """Per view (platform codes into :data:`~cgrs_ros.gallery.PLATFORMS`, headings with NaN for
    none), whether the sides its caption states are compass sides (see the module docstring)."""
    from .gallery import PLATFORMS

    def codes(names) -> list[int]:
        return [PLATFORMS.index(name) for name in names]

    platform_codes, headings = np.asarray(platform_codes), np.asarray(headings, dtype=np.float64)
    aerial_with_heading = ~np.isin(platform_codes, codes(settings.horizontal_platforms)) & ~np.isnan(headings)
    facing_north = aerial_with_heading & ((settings.rectify == "north_up") | (np.nan_to_num(headings) % 360.0 == 0.0))
    return facing_north | np.isin(platform_codes, codes(settings.north_up_platforms))


def views_for_captioner(images, records, mode: str, horizontal_platforms) -> list[Image.Image]:
    """The images a captioner sees: each rectified when :func:`should_rectify` says so."""
    return [north_up(image, record.heading) if should_rectify(record, mode, horizontal_platforms) else image
            for image, record in zip(images, records)]
