"""Where a cached goal's time goes and what each change to the text encoding buys, in turns, one run.

    .venv/bin/python bench/goal_latency_benchmark.py                # validation world (seed 2), 3,000 images
    .venv/bin/python bench/goal_latency_benchmark.py --goals 60 --warm-up 100

Rows (``engine.query`` in cached mode at one thread, goals never seen before, after ``--warm-up``
other goals warmed each engine's clause cache, the engines taking turns goal by goal so that a shared
machine's load weighs on each alike; p50/p90 and the medians of the engine's stage timings):

1. ``fp32 (onnx), as shipped``: both text encoders on ONNX Runtime fp32, the default on a CPU;
2. ``int8 (onnx_int8), one text per call``: both on int8 weights (its recall on the validation
   world: ``bench/text_runtime_benchmark.py``).

And one measured idea that was not taken, "one forward for both encoders": the embedded CLIP text
tower is a frozen all-MiniLM-L6-v2 with a trained projection, the clause matcher's encoder the same
MiniLM, so one MiniLM call over [goal, its clauses] could serve both.  Timed on the clause
matcher's fp32 encoder (the MiniLM both share): the goal alone, the goal and its clauses in one
call, and the goal then its clauses in two calls.  Results: ``bench/results/goal_latency.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from recall_benchmark import RESULTS, SPLITS, Bench, on_runtime, prepare_index, prepare_world  # noqa: E402
from scale_benchmark import timed_in_turn  # noqa: E402

from cgrs_ros.config import load_engine_config  # noqa: E402
from cgrs_ros.engine import QueryOptions  # noqa: E402
from cgrs_ros.index import load_index  # noqa: E402
from cgrs_ros.models.device import apply_threads  # noqa: E402
from cgrs_ros.models.text_similarity import relations  # noqa: E402
from cgrs_ros.queries import read_queries  # noqa: E402

ROWS = (("fp32 (onnx), as shipped", "onnx"), ("int8 (onnx_int8), one text per call", "onnx_int8"))


def engine_rows(default, index, goals: list[str], warm: list[str]) -> dict:
    cached = QueryOptions(caption_mode="cached")
    benches, engines = {}, {}
    try:
        for label, runtime in ROWS:
            config = on_runtime(default, runtime)
            benches[label] = Bench(config)
            engines[label] = benches[label].engine(config, index)
            for goal in warm:
                engines[label].query(goal, cached)
        times, answers = timed_in_turn({label: (lambda goal, e=engine: e.query(goal, cached))
                                        for label, engine in engines.items()}, goals, warmup=0)
    finally:
        for bench in benches.values():
            bench.close()
    for label in times:
        times[label]["stages p50_ms"] = {stage: round(1000 * float(np.median([a.timings[stage] for a in answers[label]])), 2)
                                         for stage in answers[label][0].timings if stage != "total"}
    return times


def one_forward_rows(default, goals: list[str]) -> dict:
    """The "one forward for both encoders" idea on the MiniLM both encoders share."""
    bench = Bench(default)
    try:
        encode = bench.matcher(default).encoder.encode
        clauses = [[r.what for r in relations(goal)] for goal in goals]
        calls = {"goal alone": lambda n: encode([goals[n]]),
                 "goal and its clauses, one call": lambda n: encode([goals[n], *clauses[n]]),
                 "goal, then its clauses: two calls": lambda n: (encode([goals[n]]), encode(clauses[n]))}
        times, _ = timed_in_turn(calls, list(range(len(goals))))
    finally:
        bench.close()
    times["clauses per goal (mean)"] = round(float(np.mean([len(c) for c in clauses])), 2)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=sorted(SPLITS), default="val")
    parser.add_argument("--places", type=int, default=300)
    parser.add_argument("--goals", type=int, default=100)
    parser.add_argument("--warm-up", type=int, default=200)
    parser.add_argument("--out", default=str(RESULTS / "goal_latency.json"))
    args = parser.parse_args(argv)

    default = replace(load_engine_config(None), calibration="")
    world = prepare_world(SPLITS[args.split], args.places)
    path, _ = prepare_index(default, world)
    index = load_index(path, default)
    texts = [q.text for q in read_queries(world / "queries.jsonl")]
    goals, warm = texts[:args.goals], texts[args.goals:args.goals + args.warm_up]
    apply_threads(1)
    result = {"split": args.split, "rows": len(index), "threads": 1, "goals": len(goals), "warm_up": len(warm),
              "machine": f"{platform.machine()} {os.cpu_count()} cpus, no GPU",
              "load_average_1m_before": round(os.getloadavg()[0], 2)}
    result["cached goal -> matches (in turns)"] = engine_rows(default, index, goals, warm)
    print(json.dumps(result["cached goal -> matches (in turns)"], indent=1), flush=True)
    result["one forward for both encoders? (fp32 MiniLM, in turns)"] = one_forward_rows(default, goals)
    print(json.dumps(result["one forward for both encoders? (fp32 MiniLM, in turns)"], indent=1), flush=True)
    result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
