"""``threads: 2`` as a user gets it: the OpenMP wait policy unset (as shipped before) against PASSIVE
(what the package now sets when it starts, cgrs_ros/__init__.py), through the installed console
script and in a long-running process, the two taking turns, one run.

    .venv/bin/python bench/threads_benchmark.py                 # validation world (seed 2), 3,000 images
    .venv/bin/python bench/threads_benchmark.py --goals 60 --cli-goals 4

Rows, each with the engine config at ``threads: 2`` (the packaged default engine otherwise):

1. ``cgrs-query``, one goal per process: the installed console script (``<venv>/bin/cgrs-query
   --json``), a fresh process per goal, as a user runs it; the goal's own time (``timings.total``
   of its JSON answer, the models' loading not included) and the process's wall time.
2. One process, many goals: a worker process that loads the engine as ``cgrs-query`` does
   (``load_engine_config`` + ``CGRSEngine.load``) and answers goals read from its stdin; the two
   workers (one per policy) take turns goal by goal, after ``--warm-up`` goals each (a running
   node's clause cache).  Per goal: ``engine.query`` p50/p90 and its stages' medians.

The "unset" leg is the same code with the variable the package set removed again before torch
loads (``import cgrs_ros; del os.environ['OMP_WAIT_POLICY']``), i.e. what every process got before;
no leg inherits a value from this process.  Each leg's libgomp reports the spin count it took
(``OMP_DISPLAY_ENV=VERBOSE``: 300000 unset, 0 PASSIVE), recorded with the rows, so a row is what its
label says.  Results: ``bench/results/threads_wait_policy.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from recall_benchmark import RESULTS, SPLITS, prepare_index, prepare_world  # noqa: E402

from cgrs_ros.config import DEFAULT_ENGINE_CONFIG, load_engine_config  # noqa: E402
from cgrs_ros.queries import read_queries  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).parent / "cgrs-query"
POLICIES = ("unset", "PASSIVE")
# before anything loads libgomp: the unset leg takes back the value the package set at its start
_UNSET = "import os, cgrs_ros; os.environ.pop('OMP_WAIT_POLICY', None)\n"
_WORKER = """
import json, sys
from cgrs_ros.config import load_engine_config
from cgrs_ros.engine import CGRSEngine
engine = CGRSEngine.load(load_engine_config(sys.argv[1]), sys.argv[2])
print("ready", flush=True)
for line in sys.stdin:
    result = engine.query(json.loads(line))
    print(json.dumps(result.timings), flush=True)
"""
_CONSOLE = "import runpy, sys\nsys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n"
_SPIN = re.compile(r"GOMP_SPINCOUNT = '(\d+)'")


def threads_config(folder: Path, threads: int) -> Path:
    """The packaged default engine config at ``threads``, its relative paths made absolute."""
    data = yaml.safe_load(DEFAULT_ENGINE_CONFIG.read_text())
    here = DEFAULT_ENGINE_CONFIG.parent
    for spec in (data["retriever"], data["captioner"]):
        for key in ("checkpoint", "model"):
            if isinstance(spec.get(key), str) and (here / spec[key]).exists():
                spec[key] = str(here / spec[key])
    data["calibration"] = str(here / data["calibration"])
    data["threads"] = threads
    path = folder / f"engine_threads{threads}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def leg_env(policy: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               OMP_DISPLAY_ENV="VERBOSE")
    return env


def console_command(policy: str, args: list[str]) -> list[str]:
    """The installed console script; for the unset leg the same file run after taking the value back."""
    if policy == "PASSIVE":
        return [str(CONSOLE_SCRIPT), *args]
    return [sys.executable, "-c", _UNSET + _CONSOLE, str(CONSOLE_SCRIPT), *args]


def spin_counts(stderr: str) -> list[str]:
    return sorted(set(_SPIN.findall(stderr)))


def stats(values: list[float]) -> dict:
    ms = 1000 * np.asarray(values)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1),
            "goals": len(values)}


def console_rows(config: Path, index: Path, goals: list[str]) -> dict:
    """One fresh ``cgrs-query`` process per goal, the policies taking turns (order rotating)."""
    import time

    seconds = {p: [] for p in POLICIES}
    walls = {p: [] for p in POLICIES}
    spins = {p: set() for p in POLICIES}
    for number, goal in enumerate(goals):
        for policy in POLICIES[number % 2:] + POLICIES[:number % 2]:
            started = time.perf_counter()
            done = subprocess.run(console_command(policy, ["--config", str(config), "--index", str(index),
                                                           "--json", goal]),
                                  env=leg_env(policy), capture_output=True, text=True, timeout=600)
            walls[policy].append(time.perf_counter() - started)
            if done.returncode:
                raise RuntimeError(f"cgrs-query ({policy}) failed: {done.stderr[-1500:]}")
            seconds[policy].append(json.loads(done.stdout)["timings"]["total"])
            spins[policy].update(spin_counts(done.stderr))
    return {policy: {"goal (timings.total)": stats(seconds[policy]),
                     "process wall s (median)": round(float(np.median(walls[policy])), 1),
                     "GOMP_SPINCOUNT": sorted(spins[policy])} for policy in POLICIES}


def worker_rows(config: Path, index: Path, goals: list[str], warm: list[str]) -> dict:
    """Two long-running workers (one per policy) taking turns goal by goal."""
    import time

    workers = {}
    logs = {}
    for policy in POLICIES:
        logs[policy] = tempfile.TemporaryFile(mode="w+")
        code = (_UNSET if policy == "unset" else "") + _WORKER
        workers[policy] = subprocess.Popen([sys.executable, "-c", code, str(config), str(index)], env=leg_env(policy),
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logs[policy], text=True)
    try:
        for policy, worker in workers.items():
            if worker.stdout.readline().strip() != "ready":
                logs[policy].seek(0)
                raise RuntimeError(f"worker ({policy}) did not start: {logs[policy].read()[-1500:]}")

        def ask(policy: str, goal: str) -> dict:
            workers[policy].stdin.write(json.dumps(goal) + "\n")
            workers[policy].stdin.flush()
            return json.loads(workers[policy].stdout.readline())

        for goal in warm:
            for policy in POLICIES:
                ask(policy, goal)
        timings = {p: [] for p in POLICIES}
        walls = {p: [] for p in POLICIES}
        for number, goal in enumerate(goals):
            for policy in POLICIES[number % 2:] + POLICIES[:number % 2]:
                started = time.perf_counter()
                timings[policy].append(ask(policy, goal))
                walls[policy].append(time.perf_counter() - started)
    finally:
        for worker in workers.values():
            worker.stdin.close()
            worker.wait(60)
    rows = {}
    for policy in POLICIES:
        logs[policy].seek(0)
        stages = {stage: round(1000 * float(np.median([t[stage] for t in timings[policy]])), 2)
                  for stage in timings[policy][0] if stage != "total"}
        rows[policy] = {"goal (engine.query)": stats([t["total"] for t in timings[policy]]),
                        "goal, round trip through the pipe": stats(walls[policy]),
                        "stages p50_ms": stages, "GOMP_SPINCOUNT": spin_counts(logs[policy].read())}
        logs[policy].close()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=sorted(SPLITS), default="val")
    parser.add_argument("--places", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--goals", type=int, default=60, help="goals timed per policy in the long-running workers")
    parser.add_argument("--warm-up", type=int, default=100, help="goals each worker answers before the timed ones")
    parser.add_argument("--cli-goals", type=int, default=3, help="cgrs-query processes per policy (0: skip)")
    parser.add_argument("--out", default=str(RESULTS / "threads_wait_policy.json"))
    args = parser.parse_args(argv)
    if not CONSOLE_SCRIPT.is_file():
        parser.error(f"{CONSOLE_SCRIPT} is not installed (pip install -e .)")

    default = replace(load_engine_config(None), calibration="")
    world = prepare_world(SPLITS[args.split], args.places)
    index, _ = prepare_index(default, world)
    texts = [q.text for q in read_queries(world / "queries.jsonl")]
    goals, warm = texts[:args.goals], texts[args.goals:args.goals + args.warm_up]
    result = {"split": args.split, "threads": args.threads, "index": str(index),
              "machine": f"{platform.machine()} {os.cpu_count()} cpus, no GPU",
              "load_average_1m_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="cgrs_threads_") as folder:
        config = threads_config(Path(folder), args.threads)
        if args.cli_goals:
            result["cgrs-query, one goal per process"] = console_rows(config, index, goals[:args.cli_goals])
            print(json.dumps(result["cgrs-query, one goal per process"]), flush=True)
        result["one process, many goals (workers in turn)"] = worker_rows(config, index, goals, warm)
        print(json.dumps(result["one process, many goals (workers in turn)"]), flush=True)
    result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
