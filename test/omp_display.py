"""What OpenMP wait policy a process's libgomp runs with, as libgomp itself reports it.

``OMP_DISPLAY_ENV=VERBOSE`` makes libgomp print its settings to stderr when it loads (with torch or
faiss).  ``OMP_WAIT_POLICY`` is printed as 'PASSIVE' whether it was set or not (libgomp prints
PASSIVE for "not ACTIVE"), so the tests read ``GOMP_SPINCOUNT``, which the policy decides: 0 for
PASSIVE, 300000 when the policy was unset, 30000000000 for ACTIVE.
"""
from __future__ import annotations

import os
import re

SPIN_COUNTS = {"PASSIVE": "0", "unset": "300000", "ACTIVE": "30000000000"}
_BLOCK = re.compile(r"OPENMP DISPLAY ENVIRONMENT BEGIN(.*?)OPENMP DISPLAY ENVIRONMENT END", re.S)
_SPIN = re.compile(r"GOMP_SPINCOUNT = '(\d+)'")


def displaying_env(**changes) -> dict:
    """This process's environment without ``OMP_WAIT_POLICY`` (importing cgrs_ros here set it, and a
    child would inherit it), with libgomp's display on and ``changes`` applied."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(OMP_DISPLAY_ENV="VERBOSE", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **changes)
    return env


def spin_counts(output: str) -> list[str]:
    """GOMP_SPINCOUNT of every libgomp that loaded in the process whose ``output`` this is."""
    return [m for block in _BLOCK.findall(output) for m in _SPIN.findall(block)]
