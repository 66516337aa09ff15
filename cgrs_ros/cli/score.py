"""cgrs-score: Track 4 Recall@1/5/10 of a submission file, or of an index, against a ground truth.

    cgrs-score --ground-truth gt.json --submission submission.txt
    cgrs-score --ground-truth gt.json --index track4_index --queries queries.txt --modes coarse,cached

The ground-truth format (image -> building, query -> building) is described in
:mod:`cgrs_ros.track4_scoring`.  An index is ranked exactly as ``cgrs-submit`` ranks it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import CGRSInputError
from .common import add_engine_options, add_ranking_options, parse_modes, run
from .submit import track4_rankings


def _main(args) -> int:
    from ..evaluation import DEFAULT_KS
    from ..track4_scoring import read_ground_truth, score_rankings

    truth = read_ground_truth(args.ground_truth)
    if args.submission:
        from ..formats import read_track4_submission
        results = {"submission": score_rankings(read_track4_submission(args.submission), truth,
                                                source=args.submission)}
    else:
        if not args.queries:
            raise CGRSInputError("--index needs --queries (the Track 4 query file to rank)")
        modes = parse_modes(args.modes)
        results = {mode: score_rankings(rankings, truth, source=f"{args.index} ({mode})")
                   for mode, rankings in track4_rankings(args, modes).items()}
    n = len(truth.queries)
    print(f"{n} ground-truth queries, {len(truth.images)} ground-truth images ({args.ground_truth})")
    print(f"{'ranking':<14}" + "".join(f"{'R@' + str(k):>8}" for k in DEFAULT_KS))
    for name, recall in results.items():
        print(f"{name:<14}" + "".join(f"{recall[k]:8.2f}" for k in DEFAULT_KS))
    if args.json:
        payload = {"n_queries": n, "recall": {name: {f"R@{k}": round(v, 2) for k, v in r.items()}
                                              for name, r in results.items()}}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cgrs-score", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ground-truth", required=True,
                   help="image -> building and query -> building (JSON or '<id> <building>' lines)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--submission", help="a Track 4 submission.txt to score")
    source.add_argument("--index", help="an index of the Track 4 gallery to rank and score")
    p.add_argument("--queries", help="with --index: the Track 4 query file (q_00001<TAB>text)")
    p.add_argument("--modes", default="coarse,cached", help="with --index: comma list of coarse, cached, online")
    add_engine_options(p)
    add_ranking_options(p)
    p.add_argument("--json", help="also write the recalls as JSON here")
    return p


def main(argv=None) -> int:
    return run(_main, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
