"""Fit the confidence calibration on the validation world, then report it per goal family on the test world.

    .venv/bin/python bench/calibration_benchmark.py [--threshold 0.8] [--write]

A confidence is only valid for the inputs it was fitted on, so it is fitted and reported on every
kind of goal a drone can be sent, each a *family* (made per world, from its ``world.json``):

- ``generator``: the world's own queries and relation-only queries (clean goals);
- the language families of ``bench/goal_families.py`` (colloquial, terse planner lines, speech
  transcripts at 10/25/50% word error), where that module is present;
- ``near-miss``: a real place's description with one fact changed so that no place fits
  (``bench/near_misses.py``): every one is unanswerable;
- ``out-of-world``: gibberish, unrelated requests, emoji, other languages
  (:func:`cgrs_ros.calibration.out_of_world_goals`, "fit" and "report" sets share no goal).

1. Validation world (seed 2): every family ranked by the default engine; label = its best place is
   the goal's place (0 for every near miss and out-of-world goal).  The two logistic models of
   :class:`cgrs_ros.calibration.Calibration` are fitted and, with ``--write``, written to
   ``cgrs_ros/resources/embedded/calibration.json``, which the default engine config names.
2. Test world (seed 3), once: per family, ECE, and at the node's ``min_confidence`` the share of
   right goals forwarded, of wrong goals forwarded, of unanswerable goals forwarded, the largest
   confidence of an unanswerable goal, and how many results were reported ambiguous.
   Results: ``bench/results/calibration_test.json``.
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
from tqdm import tqdm  # noqa: E402

from near_misses import near_miss_goals  # noqa: E402
from recall_benchmark import RESULTS, Bench, prepare_index, prepare_world  # noqa: E402

from cgrs_ros.calibration import (DOMAIN_FEATURES, FEATURES, fit, fitted_for,  # noqa: E402
                                  out_of_world_goals, reliability)
from cgrs_ros.config import DEFAULT_ENGINE_CONFIG, load_engine_config  # noqa: E402
from cgrs_ros.evaluation import encode_queries  # noqa: E402
from cgrs_ros.index import load_index  # noqa: E402
from cgrs_ros.queries import read_queries  # noqa: E402
from cgrs_ros.world.generate import RELATION_QUERIES  # noqa: E402

EMBEDDED_CALIBRATION = DEFAULT_ENGINE_CONFIG.parent / "embedded" / "calibration.json"
UNANSWERABLE = ("near-miss", "out-of-world")


def goal_families_of(world: Path, seed: int, ood_split: str) -> dict[str, list[tuple[str, str | None]]]:
    """Every family of goals of one world: name -> [(goal text, its place, None when no place fits)]."""
    queries = read_queries(world / "queries.jsonl") + read_queries(world / RELATION_QUERIES)
    families = {"generator": [(q.text, q.place_id) for q in queries]}
    try:
        from goal_families import goal_families
    except ImportError:        # the language families are optional: the gate is still fitted without them
        pass
    else:
        for name, goals in goal_families(world, seed).items():
            if name != "generator":
                families[name] = [(q.text, q.place_id) for q in goals]
    families["near-miss"] = [(text, None) for text, _, _ in near_miss_goals(world, seed)]
    families["out-of-world"] = [(g, None) for g in out_of_world_goals(ood_split)]
    return families


def judged(bench: Bench, config, seed: int, ood_split: str) -> dict:
    """Per family: the features, labels and ambiguity flags of every goal on the world of ``seed``."""
    world = prepare_world(seed, 300)
    index_path, _ = prepare_index(config, world)
    engine = bench.engine(config, load_index(index_path))
    out = {}
    for family, goals in goal_families_of(world, seed, ood_split).items():
        texts = [t for t, _ in goals]
        vectors = encode_queries(engine, texts)
        rows, labels, ambiguous = [], [], []
        for (text, place), vector in tqdm(list(zip(goals, vectors)), desc=f"seed {seed} {family}", unit="goal"):
            ranking = engine.rank(vector, text, config.retrieval, config.retrieval.max_results)
            judgement = engine.judge(text, ranking)
            best = engine.index.records[int(ranking.places[0].rows[0])].place_id
            rows.append(judgement.features)
            labels.append(float(place is not None and best == place))
            ambiguous.append(judgement.ambiguity is not None)
        out[family] = (np.array(rows), np.array(labels), np.array(ambiguous))
    return out


def family_report(calibration, x, y, ambiguous, family: str, threshold: float) -> dict:
    p = np.array([calibration.probability(f) for f in x])
    go = (p >= threshold) & ~ambiguous
    right, wrong = y == 1, y == 0
    share = lambda mask: round(100.0 * float(go[mask].mean()), 1) if mask.any() else None  # noqa: E731
    row = {"goals": len(y), "right": int(right.sum()), "forwarded_right_percent": share(right),
           "forwarded_wrong_percent": share(wrong), "ambiguous_percent": round(100.0 * float(ambiguous.mean()), 1),
           "max_confidence": round(float(p.max()), 4), "ece_percent": reliability(p, y)["ece_percent"]}
    if family in UNANSWERABLE:
        row["forwarded"] = int(go.sum())
    return row


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
        val = judged(bench, config, 2, "fit")
        x = np.vstack([f[0] for f in val.values()])
        y = np.concatenate([f[1] for f in val.values()])
        in_world = np.concatenate([np.full(len(f[1]), name != "out-of-world") for name, f in val.items()])
        calibration = fit(x, y, in_world, fitted_for(config), {
            "world_seed": 2, "places": 300, "families": {name: len(f[1]) for name, f in val.items()},
            "command": "bench/calibration_benchmark.py"})
        if args.write:
            calibration.save(Path(args.write))
            print(f"written {args.write}")
        test = judged(bench, config, 3, "report")
    finally:
        bench.close()
    report = lambda data: {name: family_report(calibration, *f, name, args.threshold)  # noqa: E731
                           for name, f in data.items()}
    test_x = np.vstack([f[0] for name, f in test.items() if name not in UNANSWERABLE])
    test_y = np.concatenate([f[1] for name, f in test.items() if name not in UNANSWERABLE])
    result = {
        "features": list(FEATURES), "correct": asdict(calibration.correct),
        "domain_features": [FEATURES[i] for i in DOMAIN_FEATURES], "in_domain": asdict(calibration.in_domain),
        "threshold": args.threshold,
        "validation": report(val),
        "test": report(test),
        "test_answerable_reliability": reliability(np.array([calibration.probability(f) for f in test_x]), test_y),
    }
    print(json.dumps({k: result[k] for k in ("validation", "test")}, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
