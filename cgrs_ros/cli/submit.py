"""cgrs-submit: rank a RoboSense Track 4 query file with CGRS and write its submission.txt (top 10)."""
from __future__ import annotations

import argparse
import sys

from .common import add_engine_options, add_ranking_options, engine_config, ranking_settings, run

SUBMISSION_DEPTH = 10


def _main(args) -> int:
    from ..formats import write_track4_submission

    rankings = track4_rankings(args, [args.mode])[args.mode]
    path = write_track4_submission(rankings, args.out)
    print(f"wrote {len(rankings)} rankings to {path}")
    return 0


def track4_rankings(args, modes) -> dict[str, list[tuple[str, list[str]]]]:
    """Rank the Track 4 query file ``args.queries`` on ``args.index`` under each mode:
    (query id, top-10 image ids) per query, in file order (what a submission holds)."""
    from ..engine import CGRSEngine
    from ..evaluation import rank_all
    from ..formats import load_track4_queries

    config = engine_config(args)
    settings = ranking_settings(args, config)
    queries = load_track4_queries(args.queries)
    engine = CGRSEngine.load(config, args.index)
    try:
        rankings, _ = rank_all(engine, [q.text for q in queries], modes, settings,
                               depth=max(SUBMISSION_DEPTH, settings.top_k), progress=not args.no_progress)
        records = engine.index.records
        return {mode: [(q.query_id, [records[r].image_id for r in rows[:SUBMISSION_DEPTH]])
                       for q, rows in zip(queries, rankings[mode])] for mode in modes}
    finally:
        engine.close()


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
