"""Recall benchmark on a procedural world: coarse vs CGRS (cached and online captions), one run.

    .venv/bin/python bench/recall_benchmark.py                       # held-out test world (seed 3)
    .venv/bin/python bench/recall_benchmark.py --split val --fusion-weights 0.2,0.35,0.5,0.65,0.8

The test world (seed 3: 300 places, 3,000 images, 900 queries) is never used to choose settings;
sweeps belong on the validation world (seed 2).  Worlds and indexes are cached under $CGRS_HOME
(default ~/.cache/cgrs_ros), keyed by the models' fingerprint.  Results go to bench/results/.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cgrs_ros.config import load_engine_config  # noqa: E402
from cgrs_ros.demo import cache_home  # noqa: E402
from cgrs_ros.engine import CGRSEngine  # noqa: E402
from cgrs_ros.evaluation import evaluate  # noqa: E402
from cgrs_ros.fingerprint import engine_fingerprint  # noqa: E402
from cgrs_ros.gallery import read_manifest  # noqa: E402
from cgrs_ros.index import META, build_index  # noqa: E402
from cgrs_ros.queries import read_queries  # noqa: E402
from cgrs_ros.world import generate_world  # noqa: E402

SPLITS = {"train": 1, "val": 2, "test": 3}
RESULTS = Path(__file__).resolve().parent / "results"


def prepare(config, seed: int, places: int) -> tuple[Path, Path, float]:
    world = cache_home() / f"bench_world_s{seed}_{places}"
    if not (world / "manifest.jsonl").is_file():
        generate_world(world, seed, places)
    key = hashlib.sha256(json.dumps(engine_fingerprint(config), sort_keys=True).encode()).hexdigest()[:12]
    index = cache_home() / f"bench_index_s{seed}_{places}_{key}"
    seconds = 0.0
    if not (index / META).is_file():
        started = time.perf_counter()
        build_index(read_manifest(world / "manifest.jsonl"), config, index)
        seconds = time.perf_counter() - started
    return world, index, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--places", type=int, default=300)
    parser.add_argument("--config", help="engine YAML (default: the embedded models)")
    parser.add_argument("--device")
    parser.add_argument("--modes", default="coarse,cached,online")
    parser.add_argument("--fusion-weights", help="comma list: evaluate each (validation only)")
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--out", help="JSON path (default bench/results/recall_<split>.json)")
    args = parser.parse_args(argv)
    if args.fusion_weights and args.split == "test":
        parser.error("sweeps choose settings: run them on --split val, never on the test world")

    config = load_engine_config(args.config, device=args.device)
    if args.top_k:
        config = replace(config, retrieval=replace(config.retrieval, top_k=args.top_k).validated())
    world, index, build_seconds = prepare(config, SPLITS[args.split], args.places)
    queries = read_queries(world / "queries.jsonl")
    engine = CGRSEngine.load(config, index)
    modes = [m for m in args.modes.split(",") if m]
    weights = [float(w) for w in args.fusion_weights.split(",")] if args.fusion_weights else [None]
    runs = []
    try:
        for weight in weights:
            settings = config.retrieval if weight is None else replace(config.retrieval, fusion_weight=weight).validated()
            report = evaluate(engine, queries, modes=modes if not runs else [m for m in modes if m != "coarse"],
                              settings=settings)
            print(f"\n{args.split} world (seed {SPLITS[args.split]}): {len(engine.index)} images, "
                  f"{report.n_queries} queries; top_k={settings.top_k} fusion_weight={settings.fusion_weight} "
                  f"normalization={settings.normalization}")
            print(report.table())
            runs.append(report.to_json())
    finally:
        engine.close()
    result = {"split": args.split, "seed": SPLITS[args.split], "places": args.places,
              "images": len(engine.index), "config": config.source, "index_build_seconds": round(build_seconds, 1),
              "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
              "device": config.device, "runs": runs}
    out = Path(args.out) if args.out else RESULTS / f"recall_{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
