"""Dependency profiles: the lock files, the supported ranges and the compatibility rules agree.

Whether each lock resolves for its own Python and platform needs PyPI, so CI checks that
(scripts/check_profiles.sh) and runs the model tests on the JetPack 6 versions
(scripts/test_profile.sh); these tests need no network: the files, setup.py's metadata as pip sees
it, and cgrs_ros.compat against every profile's versions.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from cgrs_ros.compat import (cache_drops_rows, check_library_versions, onnx_export_options,
                             transformers_torch_problem)

REPO = Path(__file__).resolve().parents[1]
LOCKS = sorted((REPO / "requirements" / "locks").glob("*.txt"))
PROFILES = sorted((REPO / "requirements" / "profiles").glob("*.in"))
JETPACK_TORCH = "2.5.0a0+872d972e41.nv24.08"       # JetPack 6.1/6.2's torch wheel


def header(path: Path, key: str) -> str:
    found = re.search(rf"^# {key}: *(.*)$", path.read_text(), re.M)
    return found[1].strip() if found else ""


def pins(path: Path) -> dict[str, str]:
    """name -> version of a lock's pins and of what its platform provides."""
    out = {}
    for line in path.read_text().splitlines() + header(path, "provides").split():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name, _, ver = line.partition("==")
            out[re.sub(r"[-_.]+", "-", name.lower())] = ver.split(";")[0].strip()
    return out


def ranges() -> list[Requirement]:
    lines = (REPO / "requirements" / "ranges.txt").read_text().splitlines()
    return [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]


def test_every_profile_has_its_lock_with_a_target():
    assert {p.stem for p in PROFILES} == {lock.stem for lock in LOCKS}
    for lock in LOCKS:
        assert header(lock, "profile") == lock.stem
        assert re.fullmatch(r"3\.\d+", header(lock, "python")), lock.name
        assert re.fullmatch(r"manylinux_2_\d+_(x86_64|aarch64)", header(lock, "platform")), lock.name
        assert f"bash scripts/lock_profiles.sh {lock.stem}" in header(lock, "made by")


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.stem)
def test_lock_lies_within_the_supported_ranges(lock):
    locked = pins(lock)
    for req in ranges():
        name = re.sub(r"[-_.]+", "-", req.name.lower())
        if name in locked:
            assert req.specifier.contains(locked[name], prereleases=True), f"{lock.stem}: {name}=={locked[name]} not {req}"


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.stem)
def test_lock_transformers_runs_on_its_torch(lock):
    """The rule that transformers' metadata leaves out: the JetPack 6 lock's first resolution
    (transformers 5.20.2 beside torch 2.5) failed at import on scripts/test_profile.sh."""
    locked = pins(lock)
    assert "transformers" in locked and "torch" in locked, lock.name
    assert transformers_torch_problem(locked["transformers"], locked["torch"]) is None


def test_jetpack6_profile_is_python_310_and_keeps_the_platform_torch():
    lock = REPO / "requirements" / "locks" / "jetpack6-py310-aarch64.txt"
    assert header(lock, "python") == "3.10" and header(lock, "platform").endswith("_aarch64")
    body = [line.split("==")[0] for line in lock.read_text().splitlines() if line and line[0].isalnum()]
    assert not {"torch", "torchvision", "numpy"} & set(body)      # JetPack's own builds, never replaced


def test_transformers_torch_rule():
    problem = transformers_torch_problem("5.20.2", JETPACK_TORCH)
    assert problem and "transformers 5.20.2" in problem and JETPACK_TORCH in problem and "<5.18" in problem
    assert transformers_torch_problem("5.18.0", "2.5.1") is not None
    assert transformers_torch_problem("5.17.0", JETPACK_TORCH) is None      # a pre-release counts as 2.5
    assert transformers_torch_problem("5.23.0", "2.14.1+cu128") is None
    assert transformers_torch_problem("5.17.0", "2.4.0") is not None


def test_installed_libraries_pass_the_check():
    check_library_versions()


def test_onnx_export_keeps_the_torchscript_exporter():
    import torch

    def without_switch(model, args, f):
        pass

    assert onnx_export_options(without_switch) == {}
    assert onnx_export_options(torch.onnx.export) == {"dynamo": False}      # torch 2.5 .. 2.14 all have it


def test_cache_drops_rows():
    from transformers import DynamicCache

    assert cache_drops_rows(DynamicCache())
    assert not cache_drops_rows(((None, None),))       # a legacy tuple cache


def test_package_metadata_matches_the_profiles(tmp_path):
    """setup.py as pip sees it: Python from the oldest profile's, the ranges without torch."""
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)], cwd=REPO,
                   check=True, capture_output=True)
    info = next(tmp_path.glob("*.egg-info"))
    oldest = min(tuple(map(int, header(lock, "python").split("."))) for lock in LOCKS)
    assert f"Requires-Python: >={oldest[0]}.{oldest[1]}" in (info / "PKG-INFO").read_text()
    required = (info / "requires.txt").read_text().split("\n\n")[0].split()
    names = {Requirement(r).name for r in required}
    assert names == {r.name for r in ranges()} - {"torch", "torchvision"}
