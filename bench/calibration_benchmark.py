"""Fit the confidence calibration on the validation world, then report it on the held-out test world.

    .venv/bin/python bench/calibration_benchmark.py [--threshold 0.8]

1. Validation world (seed 2): every world and relation query, plus the "fit" set of out-of-world
   goals (:func:`cgrs_ros.calibration.out_of_world_goals`), ranked by the default engine; label =
   its best place is the query's place (0 for every out-of-world goal).  A logistic model on the
   absolute features, times an in-domain model on the caption evidence fitted against the
   out-of-world goals (:class:`cgrs_ros.calibration.Calibration`), is fitted and written to
   ``cgrs_ros/resources/embedded/calibration.json`` (``--write``), which the default engine config names.
2. Test world (seed 3) and the "report" set of out-of-world goals: reliability diagram, ECE, and at
   the threshold the node uses (``min_confidence``): the share of correct goals forwarded, of wrong
   goals forwarded, and of out-of-world goals forwarded.  Results: bench/results/calibration_test.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from recall_benchmark import BI_ENCODER, RESULTS, Bench, prepare_index, prepare_world, with_matcher  # noqa: E402

from cgrs_ros.calibration import (DOMAIN_FEATURES, FEATURES, fit, fitted_for,  # noqa: E402
                                  out_of_world_goals, ranking_features, reliability)
from cgrs_ros.config import DEFAULT_ENGINE_CONFIG, load_engine_config  # noqa: E402
from cgrs_ros.index import load_index  # noqa: E402
from cgrs_ros.queries import read_queries  # noqa: E402
from cgrs_ros.world.generate import RELATION_QUERIES  # noqa: E402

EMBEDDED_CALIBRATION = DEFAULT_ENGINE_CONFIG.parent / "embedded" / "calibration.json"


def features_and_labels(bench: Bench, config, seed: int, ood_split: str):
    world = prepare_world(seed, 300)
    index_path, _ = prepare_index(with_matcher(config, BI_ENCODER), world)
    engine = bench.engine(config, load_index(index_path))
    queries = read_queries(world / "queries.jsonl") + read_queries(world / RELATION_QUERIES)
    goals = [(q.text, q.place_id) for q in queries] + [(g, None) for g in out_of_world_goals(ood_split)]
    vectors = np.concatenate([engine.models.retriever.encode_texts([t for t, _ in goals[i:i + 256]])
                              for i in range(0, len(goals), 256)])
    rows, labels, kinds = [], [], []
    for (text, place), vector in zip(goals, vectors):
        ranking = engine.rank(vector, text, config.retrieval, config.retrieval.max_results)
        best = engine.index.records[int(ranking.places[0].rows[0])].place_id
        rows.append(ranking_features(ranking))
        labels.append(float(place is not None and best == place))
        kinds.append("out-of-world" if place is None else "world")
    return np.array(rows), np.array(labels), np.array(kinds)


def forwarded(probabilities, labels, kinds, threshold: float) -> dict:
    go = probabilities >= threshold
    world = kinds == "world"
    right, wrong, ood = world & (labels == 1), world & (labels == 0), kinds == "out-of-world"
    share = lambda mask: round(100.0 * float(go[mask].mean()), 1) if mask.any() else None  # noqa: E731
    return {"threshold": threshold, "correct_forwarded_percent": share(right),
            "wrong_forwarded_percent": share(wrong), "out_of_world_forwarded_percent": share(ood),
            "precision_of_forwarded_percent": round(100.0 * float(labels[go & world].mean()), 1)
            if (go & world).any() else None,
            "counts": {"correct": int(right.sum()), "wrong": int(wrong.sum()), "out_of_world": int(ood.sum())}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="engine YAML (default: the embedded models)")
    parser.add_argument("--threshold", type=float, default=0.8, help="the node's min_confidence (default 0.8)")
    parser.add_argument("--write", nargs="?", const=str(EMBEDDED_CALIBRATION), metavar="PATH",
                        help=f"write the fitted calibration to PATH (default {EMBEDDED_CALIBRATION}), e.g. for a "
                             f"config of other models or text_runtime: onnx_int8, whose YAML then names it")
    parser.add_argument("--out", default=str(RESULTS / "calibration_test.json"))
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    config = replace(load_engine_config(args.config), calibration="")
    bench = Bench(config)
    try:
        x_val, y_val, k_val = features_and_labels(bench, config, 2, "fit")
        calibration = fit(x_val, y_val, k_val == "world", fitted_for(config), {
            "world_seed": 2, "places": 300, "queries": int((k_val == "world").sum()),
            "out_of_world_goals": int((k_val == "out-of-world").sum()), "command": "bench/calibration_benchmark.py"})
        if args.write:
            calibration.save(Path(args.write))
            print(f"written {args.write}")
        x_test, y_test, k_test = features_and_labels(bench, config, 3, "report")
    finally:
        bench.close()
    p_val = np.array([calibration.probability(x) for x in x_val])
    p_test = np.array([calibration.probability(x) for x in x_test])
    result = {
        "features": list(FEATURES), "correct": asdict(calibration.correct),
        "domain_features": [FEATURES[i] for i in DOMAIN_FEATURES], "in_domain": asdict(calibration.in_domain),
        "validation": {"reliability": reliability(p_val, y_val),
                       "at_threshold": forwarded(p_val, y_val, k_val, args.threshold)},
        "test": {"reliability": reliability(p_test[k_test == "world"], y_test[k_test == "world"]),
                 "at_threshold": forwarded(p_test, y_test, k_test, args.threshold),
                 "thresholds": [forwarded(p_test, y_test, k_test, t) for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)],
                 "out_of_world_max_confidence": round(float(p_test[k_test == "out-of-world"].max()), 4)},
    }
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
