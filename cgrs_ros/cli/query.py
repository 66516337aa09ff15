"""cgrs-query: rank the indexed gallery for one language query; optionally write a contact sheet."""
from __future__ import annotations

import argparse
import json
import math
import sys

from .common import add_engine_options, engine_config, run


def format_table(result) -> str:
    def geo(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    header = (f"{'rank':>4} {'image':<22} {'place':<10} {'platform':<9} {'fused':>7} {'clip':>6} {'caption':>7}"
              f" {'lat':>10} {'lon':>10} {'alt':>7}  caption")
    lines = [f"query: {result.query}", f"status: {result.status}{' [DEGRADED]' if result.degraded else ''}",
             header, "-" * len(header)]
    for m in result.matches:
        cap = "-" if math.isnan(m.caption_score) else f"{m.caption_score:.3f}"
        lines.append(f"{m.rank:>4} {m.image_id:<22} {m.place_id:<10} {m.platform:<9} {m.score:7.3f} "
                     f"{m.coarse_score:6.3f} {cap:>7} {geo(m.lat, 6):>10} {geo(m.lon, 6):>10} "
                     f"{geo(m.alt, 1):>7}  {m.caption}")
    return "\n".join(lines)


def result_json(result) -> dict:
    return {"query": result.query, "reranked": result.reranked, "degraded": result.degraded,
            "status": result.status, "timings": result.timings,
            "matches": [{k: (None if isinstance(v, float) and math.isnan(v) else v)
                         for k, v in dict(vars(m), image_path=str(m.image_path)).items()}
                        for m in result.matches]}


def _main(args) -> int:
    from ..contact_sheet import write_contact_sheet
    from ..engine import CGRSEngine, QueryOptions

    config = engine_config(args)
    options = QueryOptions(top_k=args.top_k, fusion_weight=args.fusion_weight,
                           caption_mode=args.caption_mode, max_results=args.max_results)
    options.apply(config.retrieval)  # refuse bad options before loading any model
    engine = CGRSEngine.load(config, args.index)
    try:
        result = engine.query(args.text, options)
    finally:
        engine.close()
    print(json.dumps(result_json(result), indent=1) if args.json else format_table(result))
    if args.sheet:
        write_contact_sheet(result.matches, args.sheet, title=result.query)
        print(f"contact sheet: {args.sheet}", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cgrs-query", description=__doc__)
    p.add_argument("text", help="the language query, e.g. 'red roof north of the round pool'")
    p.add_argument("--index", help="index folder (default: the embedded demo gallery, built on first use)")
    add_engine_options(p)
    p.add_argument("--top-k", type=int, help="coarse candidates to rerank")
    p.add_argument("--fusion-weight", type=float, help="caption share of the fused score, 0..1")
    p.add_argument("--caption-mode", choices=("cached", "online", "off"))
    p.add_argument("--max-results", type=int, help="matches to print")
    p.add_argument("--sheet", help="write a contact sheet PNG of the matches here")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv=None) -> int:
    return run(_main, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
