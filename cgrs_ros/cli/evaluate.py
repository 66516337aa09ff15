"""cgrs-eval: text->image Recall@1/5/10 with place-level positives, coarse and CGRS in one run.

``--protocol robosense-official`` scores the same rankings the way the official Track 4 / GeoText
evaluation code does (off-by-one building labels, fp16 scores), to compare with the leaderboard.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import CGRSInputError
from .common import (add_engine_options, add_ranking_options, engine_config, parse_modes, ranking_settings,
                     run)


def _main(args) -> int:
    from .. import official_protocol
    from ..engine import CGRSEngine
    from ..evaluation import PROTOCOLS, evaluate
    from ..queries import read_queries

    if args.protocol != PROTOCOLS[0] and not args.geotext:
        raise CGRSInputError(f"--protocol {args.protocol} labels each text by the image it describes: "
                             "give the queries with --geotext")
    config = engine_config(args)
    settings = ranking_settings(args, config)
    gallery = None
    if args.geotext:
        from ..formats import load_geotext
        gallery, queries = load_geotext(args.geotext, image_root=args.image_root)
    else:
        queries = read_queries(args.queries)
    modes = parse_modes(args.modes)
    engine = CGRSEngine.load(config, args.index)
    try:
        _check_places(queries, engine.index, args.queries or args.geotext)
        if args.protocol == official_protocol.NAME:
            index = engine.index
            official_protocol.check_same_gallery([r.image_id for r in gallery.records],
                                                 [index.image_id(row) for row in range(len(index))],
                                                 args.geotext, index.path)
        report = evaluate(engine, queries, modes=modes, settings=settings, progress=not args.no_progress,
                          protocol=args.protocol)
    finally:
        engine.close()
    print(f"{report.n_queries} queries, top_k={settings.top_k}, fusion_weight={settings.fusion_weight}, "
          f"normalization={settings.normalization}, protocol={args.protocol}")
    print(report.table())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.to_json(), indent=1) + "\n")
    return 0


def _check_places(queries, index, source: str) -> None:
    """A query whose place has no indexed image can only miss: refuse a query file with no place in
    the index (a query file for another gallery would score a plausible 0.00), warn about a few."""
    places = set(index.place_names)
    scored = [q for q in queries if q.place_id is not None]
    unknown = [q for q in scored if q.place_id not in places]
    example = f"e.g. query {unknown[0].query_id!r} names place {unknown[0].place_id!r}" if unknown else ""
    if unknown and len(unknown) == len(scored):
        raise CGRSInputError(f"{source}: none of the {len(scored)} queries names a place of the index {index.path} "
                             f"({example}); is it the query file of another gallery?")
    if unknown:
        print(f"cgrs-eval: warning: {len(unknown)} of {len(scored)} queries name a place with no indexed image "
              f"({example}); they count as misses", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cgrs-eval", description=__doc__)
    p.add_argument("--index", required=True, help="index folder built by cgrs-index")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--queries", help="queries.jsonl with place_id ground truth")
    source.add_argument("--geotext", help="GeoText-1652 JSON whose captions are the queries")
    p.add_argument("--image-root", help="with --geotext: the folder its image paths are relative to")
    add_engine_options(p)
    p.add_argument("--modes", default="coarse,cached", help="comma list of coarse, cached, online")
    p.add_argument("--protocol", choices=("place", "robosense-official"), default="place",
                   help="place: a hit is any image of the query's place (default); robosense-official: "
                        "the official Track 4 evaluation code's numbers, quirks included (needs --geotext)")
    add_ranking_options(p)
    p.add_argument("--json", help="also write the report as JSON here")
    return p


def main(argv=None) -> int:
    return run(_main, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
