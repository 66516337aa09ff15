"""cgrs-submit: rank a RoboSense Track 4 query file with CGRS and write its submission.txt (top 10)."""
from __future__ import annotations

import argparse
import sys

from .common import add_engine_options, add_ranking_options, engine_config, ranking_settings, run

SUBMISSION_DEPTH = 10


def _main(args) -> int:
    from ..engine import CGRSEngine
    from ..evaluation import rank_all
    from ..formats import load_track4_queries, write_track4_submission

    config = engine_config(args)
    settings = ranking_settings(args, config)
    queries = load_track4_queries(args.queries)
    engine = CGRSEngine.load(config, args.index)
    try:
        rankings, _ = rank_all(engine, [q.text for q in queries], [args.mode], settings,
                               depth=max(SUBMISSION_DEPTH, settings.top_k), progress=not args.no_progress)
        image_ids = [[engine.index.records[r].image_id for r in rows[:SUBMISSION_DEPTH]]
                     for rows in rankings[args.mode]]
    finally:
        engine.close()
    path = write_track4_submission([(q.query_id, ids) for q, ids in zip(queries, image_ids)], args.out)
    print(f"wrote {len(queries)} rankings to {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cgrs-submit", description=__doc__)
    p.add_argument("--index", required=True, help="index of the Track 4 gallery (cgrs-index --track4 ...)")
    p.add_argument("--queries", required=True, help="Track 4 query file: q_00001<TAB>text per line")
    p.add_argument("--out", default="submission.txt")
    p.add_argument("--mode", choices=("coarse", "cached", "online"), default="cached")
    add_engine_options(p)
    add_ranking_options(p)
    return p


def main(argv=None) -> int:
    return run(_main, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
