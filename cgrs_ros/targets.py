"""Ground targets: where a place is on the ground, from all of its gallery views (no ROS).

A gallery record's ``lat``/``lon``/``alt`` are the *camera's* position: a satellite orthophoto sits
hundreds of metres above the place, a drone view is offset along its line of sight, a ground photo
stands tens of metres away.  Navigating to the camera would send a drone to the wrong place, so a
place's navigation target is estimated from every view of it in the index (not only the views a
query returned), so that whichever view matched, the place gets the same target.

Evidence per view, best first (optional manifest keys, kept in ``record.extras``):

1. ``place_lat`` / ``place_lon``: the place's own WGS-84 position, when the gallery knows it;
2. projection of the optical axis to the ground: the camera position, ``heading``, ``tilt`` (degrees
   from nadir: 0 straight down, 90 horizontal) and the ground height; the look point lies
   ``(alt - ground) * tan(tilt)`` metres ahead along the heading.  Only for tilts up to
   ``MAX_PROJECTION_TILT_DEG`` (a near-horizontal axis meets the ground far away, or never);
3. the camera position itself (a nadir view without a tilt key; the weakest evidence).

A place's target is the median, per coordinate, of its views at the best level any of them reaches
(a median, so one mis-tagged view cannot drag the target).  Its ground height is the median of the
views' ``ground_alt`` (metres above the ellipsoid), else of its ground photos' ``alt`` minus
``EYE_HEIGHT_M``, else unknown (None).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from .gallery import GalleryRecord
from .geo import Datum, enu_to_geodetic, has_coordinates

MAX_PROJECTION_TILT_DEG = 75.0
EYE_HEIGHT_M = 1.7                      # camera height of a ground photo above its ground
EVIDENCE_LEVELS = ("manifest", "projected", "camera")   # where a target comes from, best first


@dataclass(frozen=True)
class GroundTarget:
    """Where a place is on the ground (WGS-84) and which evidence says so."""

    place_id: str
    latitude: float
    longitude: float
    ground_altitude: float | None   # metres above the ellipsoid; None when no view tells
    source: str                     # one of EVIDENCE_LEVELS
    n_views: int                    # views whose estimates were combined


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def place_ground_altitude(records: Iterable[GalleryRecord]) -> float | None:
    """Ground height of a place from its views (see the module docstring), or None."""
    records = list(records)
    tagged = [g for g in (_number(r.extras.get("ground_alt")) for r in records) if g is not None]
    if tagged:
        return statistics.median(tagged)
    eyes = [r.alt - EYE_HEIGHT_M for r in records if r.platform == "ground" and _number(r.alt) is not None]
    return statistics.median(eyes) if eyes else None


def view_ground_point(record: GalleryRecord, ground_altitude: float | None) -> tuple[float, float, str] | None:
    """(lat, lon, source) of the ground point a view shows, or None when the view cannot tell."""
    place_lat, place_lon = _number(record.extras.get("place_lat")), _number(record.extras.get("place_lon"))
    if has_coordinates(place_lat, place_lon):
        return place_lat, place_lon, "manifest"
    if not has_coordinates(record.lat, record.lon):
        return None
    tilt, heading, alt = _number(record.extras.get("tilt")), _number(record.heading), _number(record.alt)
    if None in (tilt, ground_altitude, alt, heading) or abs(tilt) > MAX_PROJECTION_TILT_DEG:
        return float(record.lat), float(record.lon), "camera"
    reach = max(alt - ground_altitude, 0.0) * math.tan(math.radians(tilt))
    east, north = reach * math.sin(math.radians(heading)), reach * math.cos(math.radians(heading))
    lat, lon, _ = enu_to_geodetic(east, north, 0.0, Datum(record.lat, record.lon, ground_altitude))
    return lat, lon, "projected"


def place_target(place_id: str, records: Iterable[GalleryRecord]) -> GroundTarget | None:
    """The ground target of one place from its views, or None when no view is geo-tagged."""
    records = list(records)
    ground = place_ground_altitude(records)
    points = [p for p in (view_ground_point(r, ground) for r in records) if p is not None]
    if not points:
        return None
    source = min((p[2] for p in points), key=EVIDENCE_LEVELS.index)
    best = [p for p in points if p[2] == source]
    return GroundTarget(place_id, statistics.median(p[0] for p in best), statistics.median(p[1] for p in best),
                        ground, source, len(best))


def place_targets(records: Iterable[GalleryRecord]) -> dict[str, GroundTarget]:
    """Ground target of every place with a geo-tagged view, keyed by place id (one pass per place)."""
    by_place: dict[str, list[GalleryRecord]] = {}
    for record in records:
        by_place.setdefault(record.place_id, []).append(record)
    targets = {place_id: place_target(place_id, views) for place_id, views in by_place.items()}
    return {place_id: target for place_id, target in targets.items() if target is not None}


class IndexTargets(Mapping[str, GroundTarget]):
    """Ground targets of a loaded index's places, each computed from all of its views the first
    time it is asked for (``targets.get(place_id)``), then kept.

    Why lazy: :func:`place_targets` over every record decodes the whole index (minutes and
    gigabytes at a million images), while a goal needs the targets of the few places it returns.
    A full iteration (``len``, ``items``) still computes them all.
    """

    def __init__(self, index):
        self._index = index
        self._order = np.argsort(index.place_codes, kind="stable")
        self._starts = np.searchsorted(index.place_codes[self._order], np.arange(len(index.place_names) + 1))
        self._codes = {name: code for code, name in enumerate(index.place_names)}
        self._found: dict[str, GroundTarget | None] = {}

    def __getitem__(self, place_id: str) -> GroundTarget:
        if place_id not in self._found:
            code = self._codes[place_id]       # KeyError for a place the index does not hold
            rows = self._order[self._starts[code]:self._starts[code + 1]]
            self._found[place_id] = place_target(place_id, [self._index.records[int(r)] for r in rows])
        target = self._found[place_id]
        if target is None:
            raise KeyError(place_id)
        return target

    def __iter__(self):
        return (name for name in self._codes if name in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)
