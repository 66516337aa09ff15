"""cgrs_ros.geo: WGS-84 -> local ENU about a datum, compass heading -> REP-103 yaw (no ROS needed)."""
from __future__ import annotations

import math

import pytest

from cgrs_ros.errors import CGRSInputError
from cgrs_ros.geo import (Datum, enu_to_geodetic, geodetic_to_enu, has_coordinates, heading_to_quaternion,
                          heading_to_yaw, quaternion_to_heading, validate_datum, yaw_to_quaternion)

ZURICH = Datum(47.3769, 8.5417, 455.0)


def test_datum_itself_is_the_origin():
    assert geodetic_to_enu(47.3769, 8.5417, 455.0, ZURICH) == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)


def test_axes_point_east_north_up():
    east, north, up = geodetic_to_enu(47.3769 + 0.001, 8.5417, 455.0, ZURICH)   # 0.001 deg north
    assert north == pytest.approx(111.19, abs=0.2) and abs(east) < 1e-6 and abs(up) < 0.01
    east, north, up = geodetic_to_enu(47.3769, 8.5417 + 0.001, 455.0, ZURICH)   # 0.001 deg east
    assert east == pytest.approx(75.45, abs=0.2) and abs(north) < 0.01
    assert geodetic_to_enu(47.3769, 8.5417, 485.0, ZURICH)[2] == pytest.approx(30.0, abs=1e-6)


def test_curvature_is_exact_not_flat_earth():
    east, north, up = geodetic_to_enu(47.3769, 8.5417 + 0.1, 455.0, ZURICH)   # ~7.5 km east
    assert up == pytest.approx(-(east ** 2) / (2 * 6_378_000), rel=0.02)      # the surface drops away


def test_round_trip():
    lat, lon, alt = enu_to_geodetic(*geodetic_to_enu(47.40, 8.50, 600.0, ZURICH), ZURICH)
    assert (lat, lon, alt) == pytest.approx((47.40, 8.50, 600.0), abs=1e-7)


def test_unknown_altitude_is_the_datum_altitude():
    with_none = geodetic_to_enu(47.3779, 8.5417, None, ZURICH)
    assert with_none == geodetic_to_enu(47.3779, 8.5417, 455.0, ZURICH)
    assert geodetic_to_enu(47.3779, 8.5417, math.nan, ZURICH) == with_none


@pytest.mark.parametrize("lat, lon", [(None, 8.5), (47.0, None), (math.nan, 8.5), (91.0, 8.5), (47.0, 181.0)])
def test_missing_or_bad_coordinates_are_refused(lat, lon):
    assert not has_coordinates(lat, lon)
    with pytest.raises(CGRSInputError, match="no valid coordinates"):
        geodetic_to_enu(lat, lon, 0.0, ZURICH)


@pytest.mark.parametrize("heading, yaw_deg", [(0, 90), (90, 0), (180, -90), (270, 180), (360, 90),
                                              (45, 45), (-90, 180), (315, 135)])
def test_heading_to_yaw_is_rep103(heading, yaw_deg):
    assert math.degrees(heading_to_yaw(heading)) == pytest.approx(yaw_deg, abs=1e-9)


@pytest.mark.parametrize("heading", [0.0, 10.0, 90.0, 179.5, 180.0, 271.0, 359.9])
def test_quaternion_is_a_unit_yaw_and_round_trips(heading):
    x, y, z, w = heading_to_quaternion(heading)
    assert x == 0.0 and y == 0.0 and math.hypot(z, w) == pytest.approx(1.0)
    assert quaternion_to_heading(x, y, z, w) == pytest.approx(heading, abs=1e-9)


def test_north_heading_faces_plus_y():
    x, y, z, w = heading_to_quaternion(0.0)                 # facing north = +y = yaw +90 deg
    assert (z, w) == pytest.approx((math.sin(math.pi / 4), math.cos(math.pi / 4)))
    assert yaw_to_quaternion(0.0) == (0.0, 0.0, 0.0, 1.0)  # yaw 0 faces east (+x)


@pytest.mark.parametrize("heading", [None, math.nan])
def test_unknown_heading_is_identity(heading):
    assert heading_to_quaternion(heading) == (0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("heading", [math.inf, "north", True])
def test_bad_heading_is_refused(heading):
    with pytest.raises(CGRSInputError, match="heading"):
        heading_to_yaw(heading)


@pytest.mark.parametrize("lat, lon, alt, name", [
    (91.0, 8.0, 0.0, "datum_latitude"), (-90.5, 8.0, 0.0, "datum_latitude"),
    (47.0, 180.5, 0.0, "datum_longitude"), (47.0, 8.0, math.nan, "datum_altitude"),
    (47.0, 8.0, 2e5, "datum_altitude"), (math.inf, 8.0, 0.0, "datum_latitude"),
    ("47", 8.0, 0.0, "datum_latitude"), (None, 8.0, 0.0, "datum_latitude"),
])
def test_bad_datum_is_refused_naming_the_value(lat, lon, alt, name):
    with pytest.raises(CGRSInputError, match=name):
        validate_datum(lat, lon, alt)


def test_valid_datum():
    datum = validate_datum(-33, 151, 10)
    assert datum == Datum(-33.0, 151.0, 10.0) and isinstance(datum.latitude, float)
