"""Text runtimes side by side: what int8 text encoders cost in recall and buy in latency, one run.

    .venv/bin/python bench/text_runtime_benchmark.py                  # validation world (seed 2)
    .venv/bin/python bench/text_runtime_benchmark.py --split test     # held-out world, report only

For each ``text_runtime`` (``onnx``: the fp32 weights, the default on a CPU; ``onnx_int8``: int8
weights, :mod:`cgrs_ros.models.onnx_text`) set on both text encoders of the default engine (the CLIP
text tower and the clause matcher's MiniLM), or one per encoder (``onnx_int8/onnx``: int8 CLIP text
tower, fp32 clause matcher), on the same index:

- Recall@1/5/10 of coarse (CLIP alone) and of the default engine (cached captions), on the world's
  queries and its relation-only queries;
- agreement with the first runtime: cosine of the goals' CLIP vectors and of the clause vectors,
  and the share of goals whose first place is the same;
- whether the recall rows are what a node gets (it encodes one goal per call): the largest
  difference between a goal's CLIP vector encoded alone and in the evaluation's batches (an int8
  encoder runs one text per call, :mod:`cgrs_ros.models.onnx_text`, so 0; before, its dynamic
  quantisation made a goal's vector depend on its batch-mates);
- for a runtime whose clause matcher is not the index's (the index was built at ``onnx``), the
  cached R@1/5/10 again with the index's clause table encoded by that matcher (what an index built at
  that runtime holds: ``cached, clause table of this runtime``);
- per-goal latency (``engine.query``, p50/p90 ms, goals never seen before after the others warmed the
  clause cache, at the engine's ``threads``, the runtimes taking turns goal by goal) and the CLIP text
  encoding of one goal alone.  The recall rows run at two threads (as the recall benchmark's).

Whether ``onnx_int8`` may become a default is judged on the validation world only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from recall_benchmark import RESULTS, SPLITS, Bench, on_runtime, prepare_index, prepare_world  # noqa: E402
from scale_benchmark import timed_in_turn  # noqa: E402

from cgrs_ros.config import load_engine_config  # noqa: E402
from cgrs_ros.engine import QueryOptions  # noqa: E402
from cgrs_ros.evaluation import rank_all, recall_at_k  # noqa: E402
from cgrs_ros.index import load_index  # noqa: E402
from cgrs_ros.models.device import apply_threads, resolve_device  # noqa: E402
from cgrs_ros.models.onnx_text import choose_runtime  # noqa: E402
from cgrs_ros.queries import read_queries  # noqa: E402
from cgrs_ros.world.generate import RELATION_QUERIES  # noqa: E402

RUNTIMES = ("onnx", "onnx_int8", "onnx_int8/onnx", "onnx/onnx_int8")
OWN_TABLE = "cached, clause table of this runtime"
KS = (1, 5, 10)


def rankings(bench: Bench, config, index, query_sets: dict, own_table: bool = False) -> dict:
    """Per query set: the places ranked by coarse and by the engine, and the goals' CLIP vectors;
    with ``own_table`` also the engine's ranking over the index with its clause table encoded by
    this config's matcher."""
    engine = bench.engine(config, index)
    places = index.place_ids()
    depth = max(max(KS), config.retrieval.top_k)
    table_engine = None
    if own_table:
        table, _ = bench.matcher(config).clause_table(list(index.captions))
        table_engine = bench.engine(config, replace(index, clause_table=table))
    out = {}
    for name, queries in query_sets.items():
        texts = [q.text for q in queries]
        rows, _ = rank_all(engine, texts, ["coarse", "cached"], config.retrieval, depth, progress=False)
        if table_engine is not None:
            own, _ = rank_all(table_engine, texts, ["cached"], config.retrieval, depth, progress=False)
            rows[OWN_TABLE] = own["cached"]
        out[name] = {mode: [places[r[:max(KS)]].tolist() for r in ranked] for mode, ranked in rows.items()}
        out[name]["vectors"] = bench.retriever.encode_texts(texts)
        alone = np.concatenate([bench.retriever.encode_texts([text]) for text in texts])
        out[name]["alone_vs_batch"] = float(np.abs(alone - out[name]["vectors"]).max())
        out[name]["truth"] = [q.place_id for q in queries]
    return out


def clause_vectors(bench: Bench, config, query_sets: dict) -> np.ndarray:
    from cgrs_ros.models.text_similarity import relations

    clauses = sorted({r.what for queries in query_sets.values() for q in queries for r in relations(q.text)})
    return bench.matcher(config).encoder.encode(clauses)


def latencies_in_turn(configs: dict, index, queries, count: int) -> dict:
    """Per runtime: ``engine.query`` and the CLIP text encoding of one goal, p50/p90, at the engine's
    ``threads``, the runtimes taking turns goal by goal (:func:`scale_benchmark.timed_in_turn`: a
    machine whose speed drifts weighs on each alike).  The goals are new to every engine; the other
    world queries warmed its clause cache."""
    apply_threads(next(iter(configs.values())).threads)
    benches = {runtime: Bench(config) for runtime, config in configs.items()}
    cached = QueryOptions(caption_mode="cached")
    try:
        engines = {runtime: benches[runtime].engine(config, index) for runtime, config in configs.items()}
        for engine in engines.values():
            for query in queries[count:]:
                engine.query(query.text, cached)
        texts = [query.text for query in queries[:count]]
        goal, _ = timed_in_turn({runtime: (lambda text, e=engine: e.query(text, cached))
                                 for runtime, engine in engines.items()}, texts, warmup=0)
        encode, _ = timed_in_turn({runtime: (lambda text, e=engine: e.models.retriever.encode_texts([text]))
                                   for runtime, engine in engines.items()}, texts, warmup=0)
    finally:
        for bench in benches.values():
            bench.close()
    return {runtime: {"goal_to_matches": goal[runtime], "clip_encode_one_goal": encode[runtime]} for runtime in configs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=sorted(SPLITS), default="val")
    parser.add_argument("--places", type=int, default=300)
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES))
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument("--out", help="JSON path (default bench/results/text_runtime_<split>.json)")
    args = parser.parse_args(argv)

    default = replace(load_engine_config(None), calibration="")
    world = prepare_world(SPLITS[args.split], args.places)
    index_path, _ = prepare_index(default, world)
    index = load_index(index_path, default)
    query_sets = {"world": read_queries(world / "queries.jsonl"), "relation": read_queries(world / RELATION_QUERIES)}
    result = {"split": args.split, "places": args.places, "rows": len(index), "threads": default.threads,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()}, "runtimes": {}}
    reference = None
    # the runtime the index's clause table was encoded at (the default matcher's)
    built_runtime = choose_runtime(default.text_similarity.get("text_runtime", "auto"), resolve_device(default.device))
    apply_threads(2)                # the recall rows, as in the recall benchmark
    for runtime in args.runtimes:
        config = on_runtime(default, runtime)
        bench = Bench(config)
        try:
            own_table = bench.matcher(config).text_runtime != built_runtime
            ranked = rankings(bench, config, index, query_sets, own_table)
            clauses = clause_vectors(bench, config, query_sets)
        finally:
            bench.close()
        row = {"text_runtime": runtime}
        for name, sets in ranked.items():
            row[name] = {mode: {f"R@{k}": round(v, 2) for k, v in recall_at_k(sets[mode], sets["truth"], KS).items()}
                         for mode in ("coarse", "cached", OWN_TABLE) if mode in sets}
            row[name]["goal CLIP vector alone vs in a batch, max |difference|"] = float(f"{sets['alone_vs_batch']:.2g}")
        if reference is None:
            reference = ranked, clauses
        else:
            for name, sets in ranked.items():
                base = reference[0][name]
                cosines = (sets["vectors"] * base["vectors"]).sum(axis=1)
                same_first = np.mean([a[0] == b[0] for a, b in zip(sets["cached"], base["cached"])])
                row[name]["versus_" + args.runtimes[0]] = {
                    "clip_vector_cosine_mean": round(float(cosines.mean()), 4),
                    "clip_vector_cosine_min": round(float(cosines.min()), 4),
                    "same_first_place_percent": round(100 * float(same_first), 1)}
            cosines = (clauses * reference[1]).sum(axis=1)
            row["clause_vector_cosine"] = {"mean": round(float(cosines.mean()), 4), "min": round(float(cosines.min()), 4),
                                           "clauses": len(cosines)}
        result["runtimes"][runtime] = row
        print(json.dumps(row), flush=True)
    timings = latencies_in_turn({runtime: on_runtime(default, runtime) for runtime in args.runtimes}, index,
                                query_sets["world"], args.latency_queries)
    for runtime, timing in timings.items():
        result["runtimes"][runtime].update(timing)
    print(json.dumps(timings), flush=True)
    out = Path(args.out) if args.out else RESULTS / f"text_runtime_{args.split}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
