"""The package's OpenMP wait policy is in effect in a freshly started ``cgrs-query``.

Busy-waiting OpenMP threads made ``threads: 2`` goals 3.7-4.2x slower beside other processes (issue
34); the package sets ``OMP_WAIT_POLICY=PASSIVE`` when it starts, before torch and faiss load their
OpenMP runtime.  Checked the way it matters: the installed console script answers a real query on
the tiny index (so torch's libgomp loads), and libgomp itself says what spin count it took
(:mod:`omp_display`).  The node's twin is ``test/ros/test_node_wait_policy.py``.
"""
import subprocess
import sys
from pathlib import Path

import pytest

from omp_display import SPIN_COUNTS, displaying_env, spin_counts

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).parent / "cgrs-query"


@pytest.mark.parametrize("policy", ["unset", "ACTIVE"])
def test_console_script_runs_with_passive_wait_unless_the_user_chose(tiny_engine_files, policy):
    assert CONSOLE_SCRIPT.is_file(), f"{CONSOLE_SCRIPT} not installed (pip install -e .)"
    config, index = tiny_engine_files
    user = {} if policy == "unset" else {"OMP_WAIT_POLICY": policy}
    # the worktree's package, not whatever the editable install points at
    env = displaying_env(PYTHONPATH=str(ROOT), **user)
    done = subprocess.run([str(CONSOLE_SCRIPT), "--config", str(config), "--index", str(index), "--json",
                           "a red-roofed building"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = spin_counts(done.stderr)
    assert counts, f"libgomp did not load (torch not imported?):\n{done.stderr[-2000:]}"
    expected = SPIN_COUNTS["PASSIVE" if policy == "unset" else policy]
    assert set(counts) == {expected}, f"GOMP_SPINCOUNT {counts}, expected {expected}"
