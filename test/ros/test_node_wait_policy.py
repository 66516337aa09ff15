"""The package's OpenMP wait policy is in effect in a freshly started node process.

The node (``python -m cgrs_ros.ros.node``, the same module the installed ``cgrs_node`` runs)
imports torch when it configures; started with ``autostart`` on the tiny index and with libgomp's
display on, its log says which spin count libgomp took when it loaded (see ``test/omp_display.py``).
"""
import sys
import time
from pathlib import Path

from ros_support import require_ros

require_ros()

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from omp_display import SPIN_COUNTS, displaying_env, spin_counts  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent.parent


def test_node_runs_with_passive_wait(tiny_engine_files, ros_domain, tmp_path):
    from cgrs_ros.ros.client import start_node_process, stop_node_process

    config, index = tiny_engine_files
    log = tmp_path / "node.log"
    process = start_node_process({"engine_config": str(config), "index_dir": str(index), "device": "cpu",
                                  "autostart": True}, log_path=log, domain_id=ros_domain,
                                 env=displaying_env(PYTHONPATH=str(ROOT)))
    try:
        end = time.monotonic() + 120.0          # configure loads the models: generous on busy cores
        while not spin_counts(log.read_text(errors="replace")):
            assert process.poll() is None, f"node exited with {process.returncode}:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < end, f"libgomp never loaded in the node:\n{log.read_text()[-2000:]}"
            time.sleep(0.2)
    finally:
        stop_node_process(process)
    counts = spin_counts(log.read_text(errors="replace"))
    assert set(counts) == {SPIN_COUNTS["PASSIVE"]}, f"GOMP_SPINCOUNT {counts}"
