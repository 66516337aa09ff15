"""The node's parameters: one table (name, default, description, when it takes effect), validation,
and the policy for runtime changes.

Every parameter is declared with ``dynamic_typing`` so that a params file can never crash the node
at construction: YAML 1.1 reads ``caption_mode: off`` as the boolean false, and ``datum_altitude: 455``
as an integer.  Types are checked here instead (:func:`check_parameter`), where a bad value gets a
message naming it: refused when set at runtime, a failed ``configure`` (node stays unconfigured) when
it came from a file.  :func:`coerce` maps the YAML readings that are unambiguous (false -> 'off',
an integer for a float).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from cgrs_ros.config import CAPTION_MODES
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.geo import ALTITUDE_RANGE_M, DEMO_DATUM, LATITUDE_RANGE, LONGITUDE_RANGE

_DEVICE_RE = re.compile(r"^(|auto|cpu|cuda(:\d+)?)$")

# When a runtime change takes effect.
PER_GOAL = "per goal"        # read when a goal arrives
CONFIGURE = "configure"      # read by on_configure: may change only while unconfigured
START_UP = "start-up"        # read by the constructor: fixed for the life of the process


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    constraints: str = ""
    applies: str = PER_GOAL
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None


PARAMETERS = (
    Param("engine_config", "", "Engine YAML (models, fusion); '' = the packaged default.", applies=CONFIGURE),
    Param("index_dir", "", "Gallery index folder; '' = the demo index (built on first use).", applies=CONFIGURE),
    Param("device", "auto", "Torch device for the models; '' = the engine config's device.",
          "'' | auto | cpu | cuda | cuda:N", applies=CONFIGURE),
    Param("top_k", 0, "Coarse (CLIP) candidates reranked by captions; 0 = the engine config's value "
          "(the one its confidence calibration was fitted for).", ">= 0", int_range=(0, 100000)),
    Param("fusion_weight", -1.0, "Caption score's share of the fused score; < 0 = engine config's value.",
          "<= 1", float_range=(-1.0, 1.0)),
    Param("caption_mode", "", "Caption source for the rerank; '' = engine config's value.",
          "'' | cached | online | off (YAML false reads as off)"),
    Param("max_results", 10, "Views ranked per goal (places are grouped from them).", ">= 1",
          int_range=(1, 10000)),
    Param("map_frame", "map", "frame_id of the pose outputs (ENU about the datum).", "non-empty"),
    Param("datum_latitude", DEMO_DATUM.latitude, "Map origin latitude (WGS-84 degrees).", "[-90, 90]",
          applies=CONFIGURE),
    Param("datum_longitude", DEMO_DATUM.longitude, "Map origin longitude (WGS-84 degrees).", "[-180, 180]",
          applies=CONFIGURE),
    Param("datum_altitude", DEMO_DATUM.altitude, "Map origin height above the WGS-84 ellipsoid (m).",
          applies=CONFIGURE),
    Param("target_approach_height", 0.0, "Target pose z: metres above the place's ground.", "[0, 1000]",
          float_range=(0.0, 1000.0)),
    Param("min_confidence", 0.8, "Probability (the engine's calibrated confidence) the best place needs "
          "to be forwarded to goal_pose; an uncalibrated (NaN) confidence never forwards.", "[0, 1]",
          float_range=(0.0, 1.0)),
    Param("forward_to_nav2", False, "Publish the best place's ground target on goal_pose when the result "
          "is confident (see RankedMatches.confident)."),
    Param("goal_qos_reliability", "reliable", "Reliability of the ~/goal subscription (depth 1).",
          "reliable | best_effort", applies=START_UP),
    Param("max_query_chars", 500, "Longest goal text accepted.", ">= 1", int_range=(1, 100000)),
    Param("publish_image", True, "Publish the contact sheet of the matches on ~/match_image."),
    Param("autostart", False, "Configure and activate by itself after start-up (no lifecycle manager).",
          applies=START_UP),
    Param("debug_stage_delay", 0.0, "Seconds to wait after each engine stage report (testing and demos "
          "of cancel/supersede only; 0 in production).", "[0, 60]", float_range=(0.0, 60.0)),
)
BY_NAME = {p.name: p for p in PARAMETERS}


def descriptor(p: Param) -> ParameterDescriptor:
    """The ROS descriptor of a parameter: its description, constraints and when it applies."""
    out = ParameterDescriptor(description=p.description, dynamic_typing=True,
                              additional_constraints="; ".join(filter(None, (p.constraints, f"read {p.applies}"))))
    if p.int_range:
        out.integer_range = [IntegerRange(from_value=p.int_range[0], to_value=p.int_range[1], step=0)]
    if p.float_range:
        out.floating_point_range = [FloatingPointRange(from_value=p.float_range[0], to_value=p.float_range[1],
                                                       step=0.0)]
    return out


def coerce(name: str, value: Any) -> Any:
    """The unambiguous YAML readings of a value as the parameter's type (else ``value`` unchanged)."""
    default = BY_NAME[name].default
    if name == "caption_mode" and value is False:
        return "off"
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def check_parameter(name: str, value: Any) -> str | None:
    """Why ``value`` (after :func:`coerce`) is not acceptable for parameter ``name`` (None when it is)."""
    default = BY_NAME[name].default
    if type(value) is not type(default):
        return (f"{name} must be a {type(default).__name__}, got {type(value).__name__} {value!r}"
                + (" (quote YAML words like on/off/yes/no)" if isinstance(value, bool) else ""))
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be a finite number, got {value}"
    p = BY_NAME[name]
    if p.int_range and not p.int_range[0] <= value <= p.int_range[1]:
        return f"{name} must be in [{p.int_range[0]}, {p.int_range[1]}], got {value}"
    if p.float_range and not p.float_range[0] <= value <= p.float_range[1]:
        return f"{name} must be in [{p.float_range[0]:g}, {p.float_range[1]:g}], got {value}"
    ranges = {"datum_latitude": LATITUDE_RANGE, "datum_longitude": LONGITUDE_RANGE,
              "datum_altitude": ALTITUDE_RANGE_M}
    if name in ranges and not ranges[name][0] <= value <= ranges[name][1]:
        return f"{name} = {value} is outside [{ranges[name][0]:g}, {ranges[name][1]:g}]"
    if name == "device" and not _DEVICE_RE.match(value):
        return f"device {value!r}: use auto, cpu, cuda or cuda:N ('' = the engine config's)"
    if name == "caption_mode" and value not in ("",) + CAPTION_MODES:
        return f"caption_mode {value!r}: use '', cached, online or off"
    if name == "map_frame" and not value.strip():
        return "map_frame must not be empty"
    if name == "goal_qos_reliability" and value not in ("reliable", "best_effort"):
        return f"goal_qos_reliability {value!r}: use reliable or best_effort"
    return None


def runtime_change(name: str, value: Any, configured: bool) -> tuple[bool, str]:
    """(accepted, reason) for setting ``name`` while the node runs (``configured``: not unconfigured).

    Start-up parameters are refused: nothing would read them again.  Configure parameters are
    accepted only while unconfigured (the next configure reads them), so a configured node's
    parameters always describe what it serves.
    """
    reason = check_parameter(name, coerce(name, value))
    if reason:
        return False, reason
    applies = BY_NAME[name].applies
    if applies == START_UP:
        return False, (f"{name} is read once at start-up; restart the node with the new value "
                       "(params file or --ros-args -p)")
    if applies == CONFIGURE and configured:
        return False, (f"{name} is read by configure; deactivate and clean up the node first, then set it "
                       "(it applies at the next configure)")
    if applies == CONFIGURE:
        return True, f"{name} applies at the next configure"
    return True, ""


def read_all(get) -> dict:
    """Every parameter through ``get(name)``, coerced and checked; raises CGRSInputError naming the first
    bad one (used by on_configure)."""
    values = {p.name: coerce(p.name, get(p.name)) for p in PARAMETERS}
    for name, value in values.items():
        reason = check_parameter(name, value)
        if reason:
            raise CGRSInputError(f"parameter {reason}")
    return values
