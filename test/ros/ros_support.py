"""Whether the ROS tests can run here, and what to do when they cannot (skip locally, fail in CI)."""
from __future__ import annotations

import os

import pytest


def ros_available() -> str | None:
    """Why the ROS tests cannot run here (None when they can)."""
    try:
        import rclpy  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"rclpy not importable ({exc})"
    try:
        import cgrs_ros.action  # noqa: F401
        import cgrs_ros.msg  # noqa: F401
    except Exception as exc:  # pragma: no cover
        return f"cgrs_ros interfaces not built ({exc}); run scripts/build_interfaces.sh"
    return None


def ros_required() -> bool:
    """True in CI (or when asked): missing ROS is then an error, not a skip."""
    return any(os.environ.get(name, "").lower() not in ("", "0", "false") for name in ("CI", "CGRS_REQUIRE_ROS"))


def require_ros() -> None:
    """Skip (locally) or fail (CI) the calling module or test when the ROS tests cannot run."""
    reason = ros_available()
    if reason and ros_required():
        pytest.fail(f"the ROS tests cannot run in CI: {reason}", pytrace=False)
    if reason:
        pytest.skip(reason, allow_module_level=True)
