"""Where the world sits on the Earth: one WGS-84 datum origin and a local east-north-up frame.

Everything inside the generator is laid out in metres (east, north, up) around the datum origin,
because geometry, rendering and spatial relations are simplest there; only the records written
for colleagues carry WGS-84 latitude/longitude/ellipsoidal height, converted here with pymap3d
(already a pinned dependency of the geo code) so both sides agree on the same ellipsoid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pymap3d


@dataclass(frozen=True)
class Datum:
    """Origin of the local ENU frame; ``height`` is the terrain's height above the ellipsoid there."""

    lat: float = 47.3769
    lon: float = 8.5417
    height: float = 455.0  # Zurich: ~408 m above sea level + ~47 m geoid undulation
    name: str = "WGS-84"

    def to_json(self) -> dict:
        return {"name": self.name, "lat": self.lat, "lon": self.lon, "height_m": self.height}


DEFAULT_DATUM = Datum()


def enu_to_geodetic(datum: Datum, east: float, north: float, up: float = 0.0) -> tuple[float, float, float]:
    """(lat, lon, ellipsoidal height) of a point given in metres from the datum origin."""
    lat, lon, height = pymap3d.enu2geodetic(east, north, up, datum.lat, datum.lon, datum.height)
    return float(lat), float(lon), float(height)


def horizontal_distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Ground distance between two nearby points, measured in the ENU frame of the first one."""
    east, north, _ = pymap3d.geodetic2enu(lat2, lon2, 0.0, lat1, lon1, 0.0)
    return math.hypot(float(east), float(north))
