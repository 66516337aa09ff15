"""A stand-in for /opt/ros/<distro>: the venv's ROS 2 pip wheels as a separate underlay prefix.

A ROS install is a prefix (share/, lib/, include/, lib/python3.X/site-packages) plus a setup.bash
that puts it on AMENT_PREFIX_PATH, CMAKE_PREFIX_PATH, PYTHONPATH, LD_LIBRARY_PATH and PATH, used
by the plain system Python.  The venv has the same layout, but it also holds cgrs_ros itself (the
editable install, the interfaces built by scripts/build_interfaces.sh): a workspace built over it
could silently import those instead of its own install tree.  So the underlay is a farm of
symlinks to the venv's entries *without* anything of cgrs_ros, and its interpreter is the venv's
base Python (no venv site-packages, no .pth files) -- the position of /usr/bin/python3 under a
system ROS.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

PACKAGE = "cgrs_ros"


def is_own(name: str) -> bool:
    """Entries of the package under test (or of its editable install) that the underlay must not hold."""
    return name.startswith((PACKAGE, f"lib{PACKAGE}_", f"__editable__.{PACKAGE}")) or name.endswith(".pth")


def link_entries(source: Path, dest: Path, skip: tuple[str, ...] = ()) -> None:
    """dest/<entry> -> source/<entry> for each entry of source except the package's and `skip`."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if not is_own(entry.name) and entry.name not in skip:
            (dest / entry.name).symlink_to(entry)


def make_pip_underlay(venv: Path, prefix: Path) -> Path:
    """Build the underlay at `prefix` from `venv`; returns its setup.bash."""
    venv = Path(venv).resolve()
    python_dir = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / python_dir / "site-packages"

    link_entries(venv / "share", prefix / "share", skip=("ament_index",))
    index = prefix / "share" / "ament_index"
    shutil.copytree(venv / "share" / "ament_index", index)
    for marker in index.glob(f"resource_index/*/{PACKAGE}"):
        marker.unlink()
    link_entries(venv / "include", prefix / "include")
    link_entries(venv / "lib", prefix / "lib", skip=(python_dir,))
    link_entries(site, prefix / "lib" / python_dir / "site-packages")

    base_python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (prefix / "bin").mkdir()
    (prefix / "bin" / "python3").symlink_to(base_python)
    native_libs = ":".join(f"$_p/lib/{python_dir}/site-packages/{libs.name}"   # the wheels' vendored .so
                           for libs in sorted((prefix / "lib" / python_dir / "site-packages").glob("ros_*.libs")))
    (prefix / "local_setup.bash").write_text(
        "# The pip-wheel ROS 2 underlay (test/ros/pip_underlay.py)\n"
        f"_p={prefix}\n"
        "export ROS_VERSION=2 ROS_PYTHON_VERSION=3 ROS_DISTRO=kilted\n"
        "export AMENT_PREFIX_PATH=$_p${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}\n"
        "export CMAKE_PREFIX_PATH=$_p${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}\n"
        f"export PYTHONPATH=$_p/lib/{python_dir}/site-packages${{PYTHONPATH:+:$PYTHONPATH}}\n"
        f"export LD_LIBRARY_PATH=$_p/lib:{native_libs}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\n"
        "export PATH=$_p/bin${PATH:+:$PATH}\n"
        "unset _p\n")
    setup = prefix / "setup.bash"
    setup.write_text('source "$(dirname "${BASH_SOURCE[0]}")/local_setup.bash"\n')
    return setup


def clean_environment(tools: Path) -> dict[str, str]:
    """The environment of a shell on a machine with nothing sourced: no venv, no ROS, only `tools`
    (colcon) and the system folders on PATH."""
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "HF_HUB_OFFLINE", "CGRS_HOME", "TERM")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PATH"] = f"{tools}:/usr/local/bin:/usr/bin:/bin"
    return env
