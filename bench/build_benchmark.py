"""Index-build throughput (images/s) with the embedded models: captions all / none x background
decoding threads (``index.loader_threads``), one torch thread, models loaded once, median of repeats.

    .venv/bin/python bench/build_benchmark.py            # 256 images of the test world, 3 repeats

A throughput (images per second of a whole build, decoding included), not a latency.  Writes
bench/results/build.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cgrs_ros.config import load_engine_config  # noqa: E402
from cgrs_ros.gallery import read_manifest  # noqa: E402
from cgrs_ros.index import build_index  # noqa: E402
from cgrs_ros.models import load_models  # noqa: E402
from cgrs_ros.models.device import apply_threads  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recall_benchmark import SPLITS, prepare_world  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def build_rate(config, gallery, models) -> float:
    folder = Path(tempfile.mkdtemp(prefix="cgrs_build_"))
    try:
        started = time.perf_counter()
        build_index(gallery, config, folder, models=models, progress=False)
        return len(gallery) / (time.perf_counter() - started)
    finally:
        shutil.rmtree(folder)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loader-threads", default="0,1,2")
    parser.add_argument("--batches", default="",
                        help="also time captions 'all' at these batch sizes, INDEX:CAPTIONER pairs, e.g. 32:16,64:64")
    parser.add_argument("--out", default=str(RESULTS / "build.json"))
    args = parser.parse_args(argv)

    config = load_engine_config(None)
    apply_threads(config.threads)
    full = read_manifest(prepare_world(SPLITS["test"], 300) / "manifest.jsonl")
    gallery = type(full)(full.records[:args.images], root=full.root, source=full.source)
    models = load_models(config)
    rows = {}
    try:
        build_rate(config, gallery, models)                  # warm-up: first-call allocations
        for captions in ("all", "none"):
            for threads in (int(t) for t in args.loader_threads.split(",")):
                setting = replace(config, index=replace(config.index, captions=captions, loader_threads=threads))
                rates = [build_rate(setting, gallery, models) for _ in range(args.repeats)]
                rows[f"captions {captions}, loader_threads {threads}"] = {
                    "img/s median": round(statistics.median(rates), 1), "img/s runs": [round(r, 1) for r in rates]}
                print(json.dumps(rows), flush=True)
        for pair in filter(None, args.batches.split(",")):
            index_batch, caption_batch = (int(n) for n in pair.split(":"))
            setting = replace(config, index=replace(config.index, batch_size=index_batch))
            models.captioner.batch_size = caption_batch      # a generate() call's batch, read per call
            rates = [build_rate(setting, gallery, models) for _ in range(args.repeats)]
            rows[f"captions all, batch_size {index_batch}, captioner batch_size {caption_batch}"] = {
                "img/s median": round(statistics.median(rates), 1), "img/s runs": [round(r, 1) for r in rates]}
            print(json.dumps(rows), flush=True)
    finally:
        models.close()
    result = {"images": len(gallery), "repeats": args.repeats, "torch_threads": config.threads,
              "batch_size": config.index.batch_size, "captioner batch_size": config.captioner.get("batch_size"),
              "machine": f"{platform.machine()} {os.cpu_count()} cpus",
              "load_average_1m_at_end": round(os.getloadavg()[0], 2), "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
