"""The node's parameters: one table (name, type, default, range, when it takes effect), validation,
the policy for runtime changes, and the Markdown table of the documentation.

Every parameter is declared *statically typed* (its default's type) with a range descriptor, so
``ros2 param describe`` shows type, range and constraints and rclpy itself refuses a value of the
wrong type or out of range; start-up parameters are ``read_only``.  Two YAML 1.1 readings would make
a params file crash the node at construction, so :func:`normalise_overrides` rewrites them before
the declarations, where they are unambiguous: ``caption_mode: off`` (read as the boolean false) is
the string 'off', and ``datum_altitude: 455`` (an integer) is 455.0 for a float parameter.  Any
other wrong type in a file is refused by rclpy at start-up, and the node exits with one line naming
it (rc 2).  What a range cannot say (a word from a list, a device name) is checked here
(:func:`check_parameter`): refused when set at runtime, a failed ``configure`` from a file.
"""
from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from typing import Any

from cgrs_ros.config import CAPTION_MODES
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.geo import ALTITUDE_RANGE_M, DEMO_DATUM, LATITUDE_RANGE, LONGITUDE_RANGE

_DEVICE_RE = re.compile(r"^(|auto|cpu|cuda(:\d+)?)$")

# When a runtime change takes effect.
PER_GOAL = "per goal"        # read when a goal arrives
CONFIGURE = "configure"      # read by on_configure: may change only while unconfigured
START_UP = "start-up"        # read by the constructor: fixed for the life of the process (read_only)
CHANGEABLE = {PER_GOAL: "yes", CONFIGURE: "while unconfigured", START_UP: "no (read-only)"}


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    constraints: str = ""
    applies: str = PER_GOAL
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()


PARAMETERS = (
    Param("engine_config", "", "Engine YAML (models, fusion); '' = the packaged default.", applies=CONFIGURE),
    Param("index_dir", "", "Gallery index folder; '' = the demo index (built on first use).", applies=CONFIGURE),
    Param("device", "", "Torch device for the models; '' = the engine config's device (auto in the "
          "packaged config).", "'' | auto | cpu | cuda | cuda:N", applies=CONFIGURE),
    Param("top_k", 0, "Coarse (CLIP) candidates reranked by captions; 0 = the engine config's value "
          "(the one its confidence calibration was fitted for).", int_range=(0, 100000)),
    Param("fusion_weight", -1.0, "Caption score's share of the fused score; < 0 = engine config's value.",
          float_range=(-1.0, 1.0)),
    Param("caption_mode", "", "Caption source for the rerank; '' = engine config's value "
          "(unquoted YAML off, read as false, is taken as off).", choices=("",) + CAPTION_MODES),
    Param("max_results", 0, "Gallery views (images) ranked per goal, from which the places are grouped; "
          "0 = the engine config's value.", int_range=(0, 10000)),
    Param("map_frame", "map", "frame_id of the pose outputs (ENU about the datum).", "non-empty"),
    Param("datum_latitude", DEMO_DATUM.latitude, "Map origin latitude (WGS-84 degrees).",
          applies=CONFIGURE, float_range=LATITUDE_RANGE),
    Param("datum_longitude", DEMO_DATUM.longitude, "Map origin longitude (WGS-84 degrees).",
          applies=CONFIGURE, float_range=LONGITUDE_RANGE),
    Param("datum_altitude", DEMO_DATUM.altitude, "Map origin height above the WGS-84 ellipsoid (m).",
          applies=CONFIGURE, float_range=ALTITUDE_RANGE_M),
    Param("target_approach_height", 0.0, "Target height above the place's ground (m): z of the target "
          "poses, added to the ellipsoid height of the GeoPoseStamped targets.", float_range=(0.0, 1000.0)),
    Param("min_confidence", 0.8, "Probability (the engine's calibrated confidence) the best place needs "
          "to be forwarded; an uncalibrated (NaN) confidence never forwards.", float_range=(0.0, 1.0)),
    Param("forward_to_nav2", False, "Publish a confident result's target on goal_pose (and goal_geopose) "
          "(see RankedMatches.confident)."),
    Param("nav2_action", "", "NavigateToPose action server to send a confident, forwarded target to "
          "(e.g. navigate_to_pose); '' = none.  Needs nav2_msgs.", applies=CONFIGURE),
    Param("goal_qos_reliability", "reliable", "Reliability of the ~/goal subscription (depth 1).",
          applies=START_UP, choices=("reliable", "best_effort")),
    Param("max_query_chars", 500, "Longest goal text accepted.", int_range=(1, 100000)),
    Param("publish_image", True, "Publish the contact sheet of the matches on ~/match_image (drawn only "
          "while it has a subscriber)."),
    Param("autostart", False, "Configure and activate by itself at every process start (no lifecycle "
          "manager; a respawned node comes back active).", applies=START_UP),
    Param("debug_stage_delay", 0.0, "Seconds to wait after each engine stage report (testing and demos "
          "of cancel/supersede only; 0 in production).", float_range=(0.0, 60.0)),
)
BY_NAME = {p.name: p for p in PARAMETERS}


def _range_text(p: Param) -> str:
    if p.int_range:
        return f"[{p.int_range[0]}, {p.int_range[1]}]"
    if p.float_range:
        return f"[{p.float_range[0]:g}, {p.float_range[1]:g}]"
    if p.choices:
        return " \\| ".join(repr(c) if not c else c for c in p.choices)
    return p.constraints.replace("|", "\\|")


def descriptor(p: Param):
    """The ROS descriptor of a parameter: its type (the default's), range, constraints and when it
    applies; read-only when nothing reads it after start-up."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.parameter import Parameter

    notes = [p.constraints if not (p.int_range or p.float_range or p.choices) else "",
             f"one of: {', '.join(repr(c) for c in p.choices)}" if p.choices else "", f"read {p.applies}"]
    out = ParameterDescriptor(description=p.description, type=Parameter.Type.from_parameter_value(p.default).value,
                              additional_constraints="; ".join(filter(None, notes)),
                              read_only=p.applies == START_UP)
    if p.int_range:
        out.integer_range = [IntegerRange(from_value=p.int_range[0], to_value=p.int_range[1], step=0)]
    if p.float_range:
        out.floating_point_range = [FloatingPointRange(from_value=float(p.float_range[0]),
                                                       to_value=float(p.float_range[1]), step=0.0)]
    return out


def coerce(name: str, value: Any) -> Any:
    """The unambiguous YAML readings of a value as the parameter's type (else ``value`` unchanged)."""
    default = BY_NAME[name].default
    if name == "caption_mode" and value is False:
        return "off"
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def normalise_overrides(overrides: dict) -> list[str]:
    """Rewrite, in place, the overrides (``{name: rclpy Parameter}`` from the command line and params
    files) that YAML typed differently from the parameter but unambiguously (see :func:`coerce`), so
    that the statically typed declarations accept them; returns a note per rewrite."""
    from rclpy.parameter import Parameter

    notes = []
    for name, param in list(overrides.items()):
        if name in BY_NAME:
            value = coerce(name, param.value)
            if type(value) is not type(param.value) or value != param.value:
                overrides[name] = Parameter(name, value=value)
                notes.append(f"{name}: {param.value!r} read as {value!r}")
    return notes


def type_error_line(exc: Exception) -> str:
    """One line for an override rclpy refused at declaration (wrong type or out of range)."""
    text = " ".join(str(exc).split())
    return (f"cgrs_node: bad parameter value from the command line or params file: {text} "
            "(quote YAML words like on/off/yes/no; see `ros2 param describe`)")


def check_parameter(name: str, value: Any) -> str | None:
    """Why ``value`` (after :func:`coerce`) is not acceptable for parameter ``name`` (None when it is).

    rclpy checks type and range of a declared parameter; this repeats them (for params files read
    outside a node, e.g. by the tests) and adds what a descriptor cannot say."""
    p = BY_NAME[name]
    if type(value) is not type(p.default):
        return (f"{name} must be a {type(p.default).__name__}, got {type(value).__name__} {value!r}"
                + (" (quote YAML words like on/off/yes/no)" if isinstance(value, bool) else ""))
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be a finite number, got {value}"
    if p.int_range and not p.int_range[0] <= value <= p.int_range[1]:
        return f"{name} must be in [{p.int_range[0]}, {p.int_range[1]}], got {value}"
    if p.float_range and not p.float_range[0] <= value <= p.float_range[1]:
        return f"{name} must be in [{p.float_range[0]:g}, {p.float_range[1]:g}], got {value}"
    if p.choices and value not in p.choices:
        return f"{name} {value!r}: use {', '.join(repr(c) if not c else c for c in p.choices)}"
    if name == "device" and not _DEVICE_RE.match(value):
        return f"device {value!r}: use auto, cpu, cuda or cuda:N ('' = the engine config's)"
    if name == "map_frame" and not value.strip():
        return "map_frame must not be empty"
    if name == "nav2_action" and value and importlib.util.find_spec("nav2_msgs") is None:
        return (f"nav2_action {value!r} needs the nav2_msgs package, which is not installed "
                "(apt install ros-$ROS_DISTRO-nav2-msgs, or leave nav2_action '' and use goal_pose)")
    return None


def runtime_change(name: str, value: Any, configured: bool) -> tuple[bool, str]:
    """(accepted, reason) for setting ``name`` while the node runs (``configured``: not unconfigured).

    (rclpy has already refused wrong types, out-of-range values and read-only start-up parameters.)
    Configure parameters are accepted only while unconfigured (the next configure reads them), so a
    configured node's parameters always describe what it serves.
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


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value!r}`" if isinstance(value, str) else f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def markdown_table() -> str:
    """The parameter table of the documentation (docs/ros.md, the README), made from PARAMETERS so
    that it cannot drift from what the node declares (test/ros/test_parameters.py checks both)."""
    lines = ["| parameter | type | default | range / values | set at runtime | description |",
             "|---|---|---|---|---|---|"]
    for p in PARAMETERS:
        kind = {bool: "bool", int: "int", float: "double", str: "string"}[type(p.default)]
        lines.append(f"| `{p.name}` | {kind} | {_default_text(p.default)} | {_range_text(p) or '-'} | "
                     f"{CHANGEABLE[p.applies]} | {p.description.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"
