"""cgrs-demo: the main job offline — index the embedded demo gallery, answer a few language goals,
print the ranked matches with their coordinates and write a contact sheet PNG."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import add_engine_options, engine_config, run
from .query import format_table


def _main(args) -> int:
    from ..contact_sheet import write_contact_sheet
    from ..demo import demo_paths, ensure_demo_index
    from ..engine import CGRSEngine, QueryOptions
    from ..queries import read_queries

    config = engine_config(args)
    started = time.perf_counter()
    index = ensure_demo_index(config)
    world, _ = demo_paths(config)
    engine = CGRSEngine.load(config, index)
    print(f"demo gallery: {len(engine.index)} images of {world} (index {index}, ready in "
          f"{time.perf_counter() - started:.1f} s)\n")
    goals = args.goal or [q.text for q in read_queries(world / "queries.jsonl")[:: args.every][: args.count]]
    out = Path(args.out)
    try:
        for number, goal in enumerate(goals, start=1):
            result = engine.query(goal, QueryOptions(max_results=args.max_results))
            print(format_table(result))
            print(f"({1000 * result.timings['total']:.0f} ms)\n")
            sheet = write_contact_sheet([p.best for p in result.places], out / f"goal_{number:02d}.png", title=goal)
            print(f"contact sheet: {sheet}\n")
    finally:
        engine.close()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cgrs-demo", description=__doc__)
    add_engine_options(p)
    p.add_argument("--goal", action="append", help="a language goal (repeatable); default: demo queries")
    p.add_argument("--count", type=int, default=4, help="how many demo queries when no --goal is given")
    p.add_argument("--every", type=int, default=29, help="take every n-th demo query")
    p.add_argument("--max-results", type=int, default=5)
    p.add_argument("--out", default="cgrs_demo", help="folder for the contact sheets")
    return p


def main(argv=None) -> int:
    return run(_main, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
