"""How far the official Track 4 evaluation (`--protocol robosense-official`) is from the place protocol.

    .venv/bin/python bench/official_protocol_gap.py               # test world (seed 3), 300 places

The world is exported in the GeoText-1652 test layout (``geotext/test.json``: every image with its
three descriptions as the texts) and indexed from that file with the embedded models, as a
participant would index GeoText; then the same engine ranks every text once per protocol and
both recalls are written to ``bench/results/official_protocol_gap.json``.  The rankings are the
same in both runs: every difference is the protocol's (off-by-one building labels, fp16 ties).
GeoText files carry no headings, so aerial views are captioned as they are (no north-up turn).
Worlds and indexes are cached under $CGRS_HOME (default ~/.cache/cgrs_ros).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recall_benchmark import SPLITS, prepare_world  # noqa: E402

from cgrs_ros.config import load_engine_config  # noqa: E402
from cgrs_ros.paths import cache_home  # noqa: E402
from cgrs_ros.engine import CGRSEngine  # noqa: E402
from cgrs_ros.evaluation import PROTOCOLS, evaluate  # noqa: E402
from cgrs_ros.formats import load_geotext  # noqa: E402
from cgrs_ros.gallery import read_manifest  # noqa: E402
from cgrs_ros.index import build_index  # noqa: E402
from cgrs_ros.world.geotext_export import export_geotext  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("coarse", "cached")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--places", type=int, default=300)
    parser.add_argument("--out", default=str(RESULTS / "official_protocol_gap.json"))
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    config = replace(load_engine_config(None), calibration="")
    world = prepare_world(SPLITS[args.split], args.places)
    exported = cache_home() / f"geotext_{world.name}"
    if not (exported / "test.json").is_file():
        export_geotext(read_manifest(world / "manifest.jsonl"), world, exported)
    test_json = exported / "test.json"
    gallery, queries = load_geotext(test_json)
    index_dir = cache_home() / f"bench_index_geotext_{world.name}"
    started = time.perf_counter()
    build_index(gallery, config, index_dir, progress=False)      # a no-op when up to date
    build_seconds = time.perf_counter() - started

    engine = CGRSEngine.load(config, index_dir)
    try:
        recall = {}
        for protocol in PROTOCOLS:
            report = evaluate(engine, queries, modes=MODES, progress=False, protocol=protocol)
            recall[protocol] = report.to_json()["recall"]
    finally:
        engine.close()
    gap = {mode: {k: round(recall[PROTOCOLS[1]][mode][k] - recall[PROTOCOLS[0]][mode][k], 2)
                  for k in recall[PROTOCOLS[0]][mode]} for mode in MODES}
    result = {"split": args.split, "seed": SPLITS[args.split], "places": args.places,
              "images": len(gallery), "texts": len(queries), "annotations": str(test_json.relative_to(cache_home())),
              "config": "embedded (cgrs_ros/resources/engine_default.yaml)",
              "settings": {k: v for k, v in report.settings.items() if k != "protocol"},
              "index_build_seconds": round(build_seconds, 1),
              "machine": f"{platform.machine()}  {os.cpu_count()} cpus, no GPU" if not torch.cuda.is_available()
              else f"{platform.machine()}  {torch.cuda.get_device_name()}",
              "recall": recall, "official_minus_place": gap}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(queries)} texts on {len(gallery)} images ({args.places} places, seed {SPLITS[args.split]})")
    for mode in MODES:
        for protocol in PROTOCOLS:
            values = recall[protocol][mode]
            print(f"{mode:<8}{protocol:<20}" + "".join(f"{k:>6} {v:6.2f}" for k, v in values.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
