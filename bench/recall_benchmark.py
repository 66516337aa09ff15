"""Recall benchmark on a procedural world: coarse vs CGRS with each piece switched on in turn, one run.

    .venv/bin/python bench/recall_benchmark.py                   # held-out test world (seed 3)
    .venv/bin/python bench/recall_benchmark.py --split val --sweep   # choose settings (validation, seed 2)

Rows (every CGRS row goes through ``CGRSEngine.rank``, the path the node serves):

1. coarse: the CLIP alone;
2. CGRS as before: captions of the images as they are, image-level rerank;
3. + north-up views (captions of rectified views, ``index.rectify: north_up``);
4. + place-level evidence (``retrieval.grouping: place_id``), still with the bi-encoder;
5. + the clause matcher with its side reading off (``side_weight: 0``: clauses compared by meaning);
6. + the clause matcher as configured (``text_similarity: clause_match``): the default engine;
7. the default engine with online captions (per-query captioning, as the paper does);
8. with ``--matcher JSON`` (repeatable): the default engine with that matcher instead, e.g.
   ``'{"name": "cross_encoder", "model": "cross-encoder/ms-marco-MiniLM-L6-v2"}'``;
plus oracle rows with the world's true descriptions as captions (image-level bi-encoder, places
with the bi-encoder, and the default engine), which bound what a perfect captioner would give.

Two query sets: the world's queries (900 on 300 places) and its relation-only queries (two
neighbour-side facts that fit exactly one place).  Also: caption accuracy per attribute of the
indexed captions (and of ``--before-captioner``, e.g. an older model), and the default engine's
per-query latency (``engine.query``, p50/p90) in cached mode.  The test world is never used to
choose settings: ``--sweep`` runs on ``--split val`` only and applies the selection rule below.
Worlds and indexes are cached under $CGRS_HOME (default ~/.cache/cgrs_ros).
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from cgrs_ros.config import load_engine_config  # noqa: E402
from cgrs_ros.paths import cache_home  # noqa: E402
from cgrs_ros.engine import CGRSEngine, QueryOptions  # noqa: E402
from cgrs_ros.evaluation import evaluate  # noqa: E402
from cgrs_ros.fingerprint import engine_fingerprint  # noqa: E402
from cgrs_ros.gallery import read_manifest  # noqa: E402
from cgrs_ros.index import build_index, load_index  # noqa: E402
from cgrs_ros.models import REGISTRIES, ModelSet  # noqa: E402
from cgrs_ros.models.device import apply_threads  # noqa: E402
from cgrs_ros.queries import read_queries  # noqa: E402
from cgrs_ros.training.evaluate import caption_accuracy  # noqa: E402
from cgrs_ros.world import generate_world  # noqa: E402
from cgrs_ros.world.generate import RELATION_QUERIES  # noqa: E402

SPLITS = {"train": 1, "val": 2, "test": 3}
RESULTS = Path(__file__).resolve().parent / "results"
BI_ENCODER = {"name": "sentence_transformers", "model": "sentence-transformers/all-MiniLM-L6-v2"}
# Validation sweep grid and selection rule: the best mean of world-query R@1 and relation-query
# R@1 among settings whose world-query R@5 and R@10 are not below the coarse baseline's.
SWEEP = {"top_k": (100, 200), "fusion_weight": (0.7, 0.8, 0.9), "place_views": (3,)}
# and the matcher's own settings, per matcher kind (the text_similarity spec of the chosen row)
MATCHER_SWEEP = {"clause_match": {"side_weight": (0.15, 0.3, 0.6, 1.0)}}


def prepare_world(seed: int, places: int) -> Path:
    world = cache_home() / f"bench_world_s{seed}_{places}"
    if not (world / RELATION_QUERIES).is_file():
        generate_world(world, seed, places)
    return world


def prepare_index(config, world: Path) -> tuple[Path, float]:
    key = hashlib.sha256(json.dumps(engine_fingerprint(config), sort_keys=True).encode()).hexdigest()[:12]
    index = cache_home() / f"bench_index_{world.name}_{key}"
    started = time.perf_counter()
    build_index(read_manifest(world / "manifest.jsonl"), config, index)     # a no-op when up to date
    return index, time.perf_counter() - started


def with_matcher(config, matcher: dict):
    return replace(config, text_similarity=matcher)


def with_retrieval(config, **changes):
    return replace(config, retrieval=replace(config.retrieval, **changes).validated())


def on_runtime(config, runtime: str):
    """``runtime`` as the ``text_runtime`` of both text encoders, or ``<retriever's>/<text similarity's>``
    (e.g. ``onnx_int8/onnx``)."""
    retriever, _, matcher = runtime.partition("/")
    return replace(config, retriever=dict(config.retriever, text_runtime=retriever),
                   text_similarity=dict(config.text_similarity, text_runtime=matcher or retriever))


def with_index(config, **changes):
    return replace(config, index=replace(config.index, **changes).validated())


class Bench:
    """Models loaded once and shared by every row's engine."""

    def __init__(self, config):
        spec = lambda kind, c=config: c.model_spec(kind)  # noqa: E731
        self.retriever = REGISTRIES["retriever"].build(spec("retriever"))
        self.matchers = {json.dumps(config.text_similarity, sort_keys=True):
                         REGISTRIES["text_similarity"].build(spec("text_similarity"))}
        self.device = config.device

    def matcher(self, config):
        key = json.dumps(config.text_similarity, sort_keys=True)
        if key not in self.matchers:
            self.matchers[key] = REGISTRIES["text_similarity"].build(config.model_spec("text_similarity"))
        return self.matchers[key]

    def engine(self, config, index) -> CGRSEngine:
        return CGRSEngine(config, index, ModelSet(retriever=self.retriever, text_similarity=self.matcher(config)))

    def close(self):
        self.retriever.close()
        for matcher in self.matchers.values():
            matcher.close()


def oracle_index(index, bench: Bench, bi_config):
    """The same index with the world's first true description of each view as its caption."""
    captions = [(record.extras.get("descriptions") or [""])[0] for record in index.records]
    return replace(index, captions=captions, caption_embeddings=bench.matcher(bi_config).encode(captions))


def recall_row(engine, query_sets: dict, settings, mode: str) -> dict:
    row = {}
    for name, queries in query_sets.items():
        report = evaluate(engine, queries, modes=[mode], settings=settings, progress=False)
        row[name] = {f"R@{k}": round(v, 2) for k, v in report.recall[mode].items()}
        row[name]["s/query batch"] = round(report.seconds_per_query[mode], 4)
    return row


def latency(config, index, queries, count: int) -> dict:
    """Per-query latency of goals never seen before, once the gallery's caption clauses are cached
    (the steady state of a running node): the other queries warm the engine first.  The models are
    loaded afresh at the engine's own ``threads`` (the recall rows run on two)."""
    import torch

    recall_threads = torch.get_num_threads()
    apply_threads(config.threads)
    bench = Bench(config)
    try:
        engine = bench.engine(config, index)
        for query in queries[count:]:
            engine.query(query.text, QueryOptions(caption_mode="cached"))
        times = []
        for query in queries[:count]:
            started = time.perf_counter()
            engine.query(query.text, QueryOptions(caption_mode="cached"))
            times.append(time.perf_counter() - started)
        runtimes = {kind: getattr(model, "text_runtime", "torch") for kind, model in
                    (("retriever", bench.retriever), ("text_similarity", bench.matcher(config)))}
    finally:
        bench.close()
        apply_threads(recall_threads)     # torch and faiss back to the recall rows' setting
    return {"queries": len(times), "warm_up_queries": len(queries[count:]), "threads": config.threads,
            "text_runtime": runtimes, "p50_ms": round(1000 * float(np.percentile(times, 50)), 1),
            "p90_ms": round(1000 * float(np.percentile(times, 90)), 1)}


def latencies(config, index, queries, count: int) -> dict:
    """The default engine's latency, and the same with both text encoders on torch (one run)."""
    result = latency(config, index, queries, count)
    result["text encoders on torch"] = latency(on_runtime(config, "torch"), index, queries, count)
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    return result


def sweep(bench: Bench, config, index, query_sets: dict, coarse: dict) -> dict:
    results = []
    matcher_grid = MATCHER_SWEEP.get(config.text_similarity["name"], {})
    for matcher_values in itertools.product(*matcher_grid.values()):
        matcher = dict(config.text_similarity, **dict(zip(matcher_grid, matcher_values)))
        engine = bench.engine(with_matcher(config, matcher), index)
        for top_k, weight, views in itertools.product(*SWEEP.values()):
            settings = replace(config.retrieval, top_k=top_k, fusion_weight=weight, place_views=views).validated()
            row = {**dict(zip(matcher_grid, matcher_values)), "top_k": top_k, "fusion_weight": weight,
                   "place_views": views, **recall_row(engine, query_sets, settings, "cached")}
            results.append(row)
            print(json.dumps(row), flush=True)
    allowed = [r for r in results if all(r["world"][k] >= coarse["world"][k] for k in ("R@5", "R@10"))]
    best = max(allowed or results, key=lambda r: (r["world"]["R@1"] + r["relation"]["R@1"]) / 2)
    keys = [*matcher_grid, *SWEEP]
    return {"grid": {k: list(v) for k, v in {**matcher_grid, **SWEEP}.items()},
            "rule": "max mean(world R@1, relation R@1) s.t. world R@5, R@10 >= coarse",
            "coarse": coarse, "chosen": {k: best[k] for k in keys},
            "chosen_recall": {k: best[k] for k in ("world", "relation")}, "results": results}


def update_latency(config, index, queries, args) -> int:
    """Re-measure ``latency_cached`` alone (a query-path change that leaves rankings as they are)."""
    out = Path(args.out) if args.out else RESULTS / f"recall_{args.split}.json"
    result = json.loads(out.read_text())
    result["latency_cached"] = latencies(config, index, queries, args.latency_queries)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["latency_cached"]))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--places", type=int, default=300)
    parser.add_argument("--config", help="engine YAML (default: the embedded models)")
    parser.add_argument("--device")
    parser.add_argument("--sweep", action="store_true", help="sweep the rerank settings (validation only)")
    parser.add_argument("--before-captioner", help="also report caption accuracy of this captioner folder")
    parser.add_argument("--matcher", action="append", default=[], type=json.loads, metavar="JSON",
                        help="also report the default engine with this text_similarity spec (repeatable)")
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument("--latency-only", action="store_true",
                        help="only re-measure the cached latency and update it in the existing results JSON")
    parser.add_argument("--out", help="JSON path (default bench/results/recall_<split>.json)")
    args = parser.parse_args(argv)
    if args.sweep and args.split == "test":
        parser.error("sweeps choose settings: run them on --split val, never on the test world")

    import torch
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    # recall needs no confidence: the calibration is fitted (and checked) by calibration_benchmark.py
    default = replace(load_engine_config(args.config, device=args.device), calibration="")
    bi_places = with_matcher(default, BI_ENCODER)
    plain = with_index(with_retrieval(bi_places, grouping="none"), rectify="none")
    world = prepare_world(SPLITS[args.split], args.places)
    query_sets = {"world": read_queries(world / "queries.jsonl"), "relation": read_queries(world / RELATION_QUERIES)}
    index_paths = {"north-up": prepare_index(with_index(plain, rectify="north_up"), world)}
    if args.latency_only:
        return update_latency(default, load_index(index_paths["north-up"][0]), query_sets["world"], args)
    if not args.sweep:
        index_paths["as is"] = prepare_index(plain, world)
    indexes = {name: load_index(path) for name, (path, _) in index_paths.items()}
    truths = [(r.extras.get("descriptions") or [""])[0] for r in indexes["north-up"].records]
    bench = Bench(default)
    try:
        rows = {}
        # the image vectors do not depend on how the captioner saw the views
        rows["coarse (CLIP only)"] = recall_row(bench.engine(plain, indexes["north-up"]), query_sets,
                                                plain.retrieval, "coarse")
        if args.sweep:
            result = {"sweep": sweep(bench, default, indexes["north-up"], query_sets, rows["coarse (CLIP only)"])}
        else:
            steps = [("CGRS as before (captions as is, images)", plain, "as is"),
                     ("+ north-up views", with_index(plain, rectify="north_up"), "north-up"),
                     ("+ place-level evidence", bi_places, "north-up")]
            if "side_weight" in default.text_similarity:
                steps.append((f"+ {default.text_similarity['name']} matcher, sides ignored (side_weight 0)",
                              with_matcher(default, dict(default.text_similarity, side_weight=0.0)), "north-up"))
            steps.append((f"+ {default.text_similarity['name']} matcher (default)", default, "north-up"))
            steps += [(f"default with matcher {json.dumps(m)}", with_matcher(default, m), "north-up")
                      for m in args.matcher]
            for label, config, which in steps:
                rows[label] = recall_row(bench.engine(config, indexes[which]), query_sets, config.retrieval, "cached")
                print(label, rows[label], flush=True)
            engine = bench.engine(default, indexes["north-up"])
            rows["default, online captions"] = recall_row(engine, {"relation": query_sets["relation"]},
                                                          default.retrieval, "online")
            oracle = oracle_index(indexes["north-up"], bench, plain)
            rows["oracle captions, images"] = recall_row(bench.engine(plain, oracle), query_sets,
                                                         plain.retrieval, "cached")
            rows["oracle captions, places"] = recall_row(bench.engine(bi_places, oracle), query_sets,
                                                         bi_places.retrieval, "cached")
            rows["oracle captions, default"] = recall_row(bench.engine(default, oracle), query_sets,
                                                          default.retrieval, "cached")
            accuracy = {name: caption_accuracy(index.captions, truths) for name, index in indexes.items()}
            if args.before_captioner:
                before = replace(plain, captioner=dict(plain.captioner, model=str(Path(args.before_captioner).resolve())))
                path, _ = prepare_index(before, world)
                accuracy["before (" + Path(args.before_captioner).name + ", as is)"] = caption_accuracy(
                    load_index(path).captions, truths)
            result = {"rows": rows, "caption_accuracy": accuracy,
                      "latency_cached": latencies(default, indexes["north-up"], query_sets["world"],
                                                  args.latency_queries)}
    finally:
        bench.close()
    result = {"split": args.split, "seed": SPLITS[args.split], "places": args.places,
              "images": len(indexes["north-up"]), "queries": {k: len(v) for k, v in query_sets.items()},
              "config": default.source, "settings": asdict(default.retrieval),
              "index_build_seconds": {k: round(s, 1) for k, (_, s) in index_paths.items()},
              "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
              "torch_threads": torch.get_num_threads(), **result}
    print(json.dumps({k: v for k, v in result.items() if k != "sweep"}, indent=1))
    out = Path(args.out) if args.out else RESULTS / (f"recall_{args.split}" + ("_sweep" if args.sweep else "") + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
