"""Index-build throughput (images/s) with the embedded models: captions all / none x background
decoding threads (``index.loader_threads``), one torch thread, models loaded once, median of repeats;
the captioner's generate of the whole model (before) against its decoder-only fast path, its
decoding of every caption to its batch's longest (before) against dropping the ended ones, and
dropping them at every step (before) against once they are more than an eighth of the batch; and
whole builds in 1 process against N worker processes (``cgrs-index --workers N``).

    .venv/bin/python bench/build_benchmark.py            # 512 images of the test world, 3 repeats;
                                                         # worker rows on 2048 images

A throughput (images per second of a whole build, decoding included), not a latency.  The worker
rows time whole builds as ``cgrs-index`` runs them after reading the gallery: in one process the
models are loaded inside the timed build, with workers each process starts (spawn, imports) and
loads its own; their start-up is timed apart (a build of one image per worker, just before each
whole build) and taken out in "img/s after start-up", the rate a large gallery builds at.  Writes
bench/results/build.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from unittest.mock import patch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cgrs_ros.build_workers import ProcessEncoder  # noqa: E402
from cgrs_ros.config import load_engine_config  # noqa: E402
from cgrs_ros.gallery import read_manifest  # noqa: E402
from cgrs_ros.index import build_index  # noqa: E402
from cgrs_ros.models import RETRIEVERS, load_models  # noqa: E402
from cgrs_ros.models import captioners  # noqa: E402
from cgrs_ros.models.captioners import TransformersCaptioner  # noqa: E402
from cgrs_ros.models.device import apply_threads  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recall_benchmark import SPLITS, prepare_world  # noqa: E402
from scale_benchmark import timed_in_turn  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def build_rate(config, gallery, models, encoder=None) -> float:
    folder = Path(tempfile.mkdtemp(prefix="cgrs_build_"))
    try:
        started = time.perf_counter()
        build_index(gallery, config, folder, models=models, progress=False, encoder=encoder)
        return len(gallery) / (time.perf_counter() - started)
    finally:
        shutil.rmtree(folder)


def import_seconds() -> float:
    """Seconds a fresh Python process takes to import the model libraries (each worker process does)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, transformers, open_clip"], check=True)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512,
                        help="images of a build in the in-process rows (the runs of 256-image builds spread "
                             "too widely to tell changes of a few percent apart)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loader-threads", default="0,1,2")
    parser.add_argument("--batches", default="",
                        help="also time captions 'all' at these batch sizes, taking turns, INDEX:CAPTIONER "
                             "pairs, e.g. 64:64,128:128")
    parser.add_argument("--workers", default="2", help="worker process counts to time against one process "
                                                         "(whole builds of --worker-images images)")
    parser.add_argument("--worker-images", type=int, default=2048)
    parser.add_argument("--out", default=str(RESULTS / "build.json"))
    args = parser.parse_args(argv)

    config = load_engine_config(None)
    apply_threads(config.threads)
    full = read_manifest(prepare_world(SPLITS["test"], 300) / "manifest.jsonl")
    gallery = type(full)(full.records[:args.images], root=full.root, source=full.source)
    models = load_models(config)
    rows = {}

    def add_rows(calls: dict) -> None:
        """Each named build ``args.repeats`` times, the calls taking turns (the order rotating:
        scale_benchmark's ``timed_in_turn``), so that a drifting machine weighs on a change and its
        "before" alike.  A row is the img/s each build returns."""
        _, rates = timed_in_turn({name: (lambda repeat, call=call: call()) for name, call in calls.items()},
                                 list(range(args.repeats)), warmup=0)
        for name, runs in rates.items():
            rows[name] = {"img/s median": round(statistics.median(runs), 1), "img/s runs": [round(r, 1) for r in runs]}
        print(json.dumps(rows), flush=True)

    def before(target, attribute, value, call):
        def run():
            with patch.object(target, attribute, value):
                return call()
        return run

    try:
        build_rate(config, gallery, models)                  # warm-up: first-call allocations
        for captions in ("all", "none"):
            add_rows({f"captions {captions}, loader_threads {threads}": partial(
                build_rate, replace(config, index=replace(config.index, captions=captions, loader_threads=threads)),
                gallery, models) for threads in (int(t) for t in args.loader_threads.split(","))})
        inline = replace(config, index=replace(config.index, loader_threads=0))
        captioned = partial(build_rate, inline, gallery, models)
        add_rows({"captions all, loader_threads 0 (in turns with its befores)": captioned,
                  "captions all, loader_threads 0, the whole model's generate (before)": before(
                      models.captioner, "_generate", partial(TransformersCaptioner._generate, models.captioner), captioned),
                  "captions all, loader_threads 0, every caption decoded to its batch's end (before)": before(
                      captioners, "_plain_greedy", lambda generation: False, captioned),
                  "captions all, loader_threads 0, ended captions dropped at every step (before)": before(
                      captioners, "ENDED_SHARE_TO_DROP", 0.0, captioned)})
        bare = partial(build_rate, replace(inline, index=replace(inline.index, captions="none")), gallery, models)
        contiguous = RETRIEVERS.build({**config.model_spec("retriever"), "channels_last": False})
        add_rows({"captions none, loader_threads 0 (in turns with its before)": bare,
                  "captions none, loader_threads 0, retriever channels_last false (before)": before(
                      models, "retriever", contiguous, bare)})
        contiguous.close()
        pairs = [tuple(int(n) for n in pair.split(":")) for pair in filter(None, args.batches.split(","))]
        if pairs:       # a generate() call's batch is the captioner's batch_size, read per call
            add_rows({f"captions all, loader_threads 0, batch_size {index_batch}, captioner batch_size {caption_batch}":
                      before(models.captioner, "batch_size", caption_batch, partial(
                          build_rate, replace(inline, index=replace(inline.index, batch_size=index_batch)),
                          gallery, models))
                      for index_batch, caption_batch in pairs})
    finally:
        models.close()
    # Whole builds as cgrs-index runs them, and the fixed start-up (loading models; with workers, also
    # starting the processes) from a build of one image per worker: rate after start-up =
    # (N - start-up images) / (whole-build time - start-up time).
    large = type(full)(full.records[:args.worker_images], root=full.root, source=full.source)
    for workers in [1] + [int(n) for n in filter(None, args.workers.split(","))]:
        encoder = (lambda: None) if workers == 1 else (lambda: ProcessEncoder(workers))
        tiny = type(full)(full.records[:workers], root=full.root, source=full.source)
        one_each = replace(config, index=replace(config.index, chunk_size=1))      # the defaults, as cgrs-index
        starts, whole = [], []
        for _ in range(args.repeats):       # each start-up beside its whole build, as the machine drifts
            starts.append(workers / build_rate(one_each, tiny, None, encoder()))
            whole.append(build_rate(config, large, None, encoder()))
        after = [(len(large) - workers) / (len(large) / rate - start) for start, rate in zip(starts, whole)]
        name = "1 process" if workers == 1 else f"{workers} worker processes"
        rows[f"captions all, {len(large)} images, {name}, whole build"] = {
            "img/s median": round(statistics.median(whole), 1), "img/s runs": [round(r, 1) for r in whole],
            "start-up s median": round(statistics.median(starts), 2), "start-up s runs": [round(t, 2) for t in starts],
            "img/s after start-up median": round(statistics.median(after), 1),
            "img/s after start-up runs": [round(r, 1) for r in after]}
        print(json.dumps(rows), flush=True)
    # what the 1-process start-up above leaves out: this process had imported the libraries already
    imports = [import_seconds() for _ in range(args.repeats)]
    rows["imports of a fresh process (torch, transformers, open_clip)"] = {
        "s median": round(statistics.median(imports), 2), "s runs": [round(t, 2) for t in imports]}
    result = {"images": len(gallery), "worker images": len(large), "repeats": args.repeats,
              "torch_threads": config.threads,
              "batch_size": config.index.batch_size, "captioner batch_size": config.captioner.get("batch_size"),
              "machine": f"{platform.machine()} {os.cpu_count()} cpus",
              "load_average_1m_at_end": round(os.getloadavg()[0], 2), "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
