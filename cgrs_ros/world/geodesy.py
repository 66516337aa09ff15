"""Where the world sits on the Earth: one WGS-84 datum origin and a local east-north-up frame.

Everything inside the generator is laid out in metres (east, north, up) around the datum origin,
because geometry, rendering and spatial relations are simplest there; only the records written
for colleagues carry WGS-84 latitude/longitude/ellipsoidal height, converted here with pymap3d
(already a pinned dependency of the geo code) so both sides agree on the same ellipsoid.
"""
from __future__ import annotations

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


def enu_to_geodetic(datum: Datum, east: float, north: float) -> tuple[float, float]:
    """WGS-84 (lat, lon) of a ground point given in metres east/north of the datum origin.

    Heights are not converted: a record's altitude is the place's terrain height plus the camera's
    height above it, both already ellipsoidal (a tangent-plane "up" would drift with distance).
    """
    lat, lon, _ = pymap3d.enu2geodetic(east, north, 0.0, datum.lat, datum.lon, datum.height)
    return float(lat), float(lon)
