"""Geodetic <-> local map frame, and compass heading -> orientation (no ROS imports).

Conventions (REP-103 / REP-105):

- The map frame is a local ENU (x east, y north, z up) tangent plane about a *datum*: the WGS-84
  latitude, longitude and ellipsoidal altitude of the map origin.  Conversion is exact (pymap3d,
  ellipsoid WGS-84), not a flat-earth approximation.
- A gallery ``heading`` is a compass bearing: degrees clockwise from true north.  The ENU yaw is
  counter-clockwise from east: ``yaw = 90deg - heading``.  Heading 0 (north) -> yaw +90deg
  (+y); heading 90 (east) -> yaw 0 (+x).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pymap3d

from .errors import CGRSInputError

# The one definition of valid coordinates (manifests, datums, node parameters).  Ellipsoidal
# altitudes outside ALTITUDE_RANGE_M are almost certainly unit or field mistakes.
LATITUDE_RANGE = (-90.0, 90.0)
LONGITUDE_RANGE = (-180.0, 180.0)
ALTITUDE_RANGE_M = (-1000.0, 100000.0)
_WGS84 = pymap3d.Ellipsoid.from_name("wgs84")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Datum:
    """Origin of the local ENU map frame (WGS-84 degrees, metres above the ellipsoid)."""

    latitude: float
    longitude: float
    altitude: float = 0.0

    def __post_init__(self) -> None:
        _check_datum_values(self.latitude, self.longitude, self.altitude)
        for name in ("latitude", "longitude", "altitude"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def to_json(self) -> dict:
        """The datum as the procedural world's ``world.json`` records it."""
        return {"name": "WGS-84", "lat": self.latitude, "lon": self.longitude, "height_m": self.altitude}



def validate_datum(latitude: object, longitude: object, altitude: object = 0.0) -> Datum:
    """A validated :class:`Datum`; raises :class:`CGRSInputError` naming the bad value."""
    return Datum(latitude, longitude, altitude)  # type: ignore[arg-type]


def _check_datum_values(latitude: object, longitude: object, altitude: object) -> None:
    checks = (("datum_latitude", latitude, LATITUDE_RANGE),
              ("datum_longitude", longitude, LONGITUDE_RANGE),
              ("datum_altitude", altitude, ALTITUDE_RANGE_M))
    for name, value, (low, high) in checks:
        if not _is_number(value) or not math.isfinite(value):
            raise CGRSInputError(f"{name} must be a finite number, got {value!r}")
        if not low <= value <= high:
            raise CGRSInputError(f"{name} = {value!r} is outside [{low:g}, {high:g}]")


# Origin of the packaged procedural world (Zurich; ~408 m above sea level + ~47 m geoid undulation)
# and the node's default map origin, so the demo's poses are metres from the world's centre.
DEMO_DATUM = Datum(47.3769, 8.5417, 455.0)


def has_coordinates(latitude: object, longitude: object) -> bool:
    """True when both are finite numbers inside the WGS-84 ranges (None/NaN = not geo-tagged)."""
    return (_is_number(latitude) and _is_number(longitude)
            and math.isfinite(latitude) and math.isfinite(longitude)
            and LATITUDE_RANGE[0] <= latitude <= LATITUDE_RANGE[1]
            and LONGITUDE_RANGE[0] <= longitude <= LONGITUDE_RANGE[1])


def geodetic_to_enu(latitude: float, longitude: float, altitude: float | None,
                    datum: Datum) -> tuple[float, float, float]:
    """WGS-84 (deg, deg, m) -> (east, north, up) metres about ``datum``.

    An unknown altitude (None or NaN) is taken as the datum's altitude.  Raises CGRSInputError for
    missing or out-of-range coordinates.
    """
    if not has_coordinates(latitude, longitude):
        raise CGRSInputError(f"no valid coordinates (latitude={latitude!r}, longitude={longitude!r})")
    if altitude is None or not _is_number(altitude) or not math.isfinite(altitude):
        altitude = datum.altitude
    east, north, up = pymap3d.geodetic2enu(float(latitude), float(longitude), float(altitude),
                                           datum.latitude, datum.longitude, datum.altitude,
                                           ell=_WGS84, deg=True)
    return float(east), float(north), float(up)


def enu_to_geodetic(east: float, north: float, up: float, datum: Datum) -> tuple[float, float, float]:
    """Inverse of :func:`geodetic_to_enu`: (east, north, up) metres -> (lat deg, lon deg, alt m)."""
    lat, lon, alt = pymap3d.enu2geodetic(float(east), float(north), float(up), datum.latitude,
                                         datum.longitude, datum.altitude, ell=_WGS84, deg=True)
    return float(lat), float(lon), float(alt)


def heading_to_yaw(heading_deg: float) -> float:
    """Compass heading (deg clockwise from north) -> ENU yaw (rad, CCW from east) in (-pi, pi]."""
    if not _is_number(heading_deg) or not math.isfinite(heading_deg):
        raise CGRSInputError(f"heading must be a finite number of degrees, got {heading_deg!r}")
    yaw = math.radians(90.0 - float(heading_deg))
    yaw = math.atan2(math.sin(yaw), math.cos(yaw))
    return math.pi if yaw == -math.pi else yaw


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """Rotation about +z by ``yaw`` rad as (x, y, z, w)."""
    half = 0.5 * yaw
    return 0.0, 0.0, math.sin(half), math.cos(half)


def heading_to_quaternion(heading_deg: float | None) -> tuple[float, float, float, float]:
    """Compass heading -> ENU orientation quaternion (x, y, z, w).

    An unknown heading (None or NaN) gives the identity quaternion (facing east, REP-103 default).
    """
    if heading_deg is None or (_is_number(heading_deg) and math.isnan(heading_deg)):
        return 0.0, 0.0, 0.0, 1.0
    return yaw_to_quaternion(heading_to_yaw(heading_deg))


def quaternion_to_heading(x: float, y: float, z: float, w: float) -> float:
    """Inverse of :func:`heading_to_quaternion` for yaw-only rotations: compass degrees in [0, 360)."""
    yaw = math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    return (90.0 - math.degrees(yaw)) % 360.0
