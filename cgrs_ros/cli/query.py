"""cgrs-query: rank the indexed gallery for one language query; optionally write a contact sheet."""
from __future__ import annotations

import argparse
import json
import math
import sys

from .common import add_engine_options, engine_config, run


def format_table(result, images: bool = False) -> str:
    """Distinct places, best first, each with its best view (or, with ``images``, every image)."""
    def geo(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    def cap(score):
        return "-" if math.isnan(score) else f"{score:.3f}"

    confidence = "not calibrated" if math.isnan(result.confidence) else f"{result.confidence:.3f}"
    lines = [f"query: {result.query}", f"status: {result.status}{' [DEGRADED]' if result.degraded else ''}",
             f"confidence that place 1 is right: {confidence}"]
    if images:
        header = (f"{'rank':>4} {'image':<22} {'place':<10} {'platform':<9} {'fused':>7} {'clip':>6} {'caption':>7}"
                  f" {'lat':>10} {'lon':>10} {'alt':>7}  caption")
        lines += [header, "-" * len(header)]
        lines += [f"{m.rank:>4} {m.image_id:<22} {m.place_id:<10} {m.platform:<9} {m.score:7.3f} "
                  f"{m.coarse_score:6.3f} {cap(m.caption_score):>7} {geo(m.lat, 6):>10} {geo(m.lon, 6):>10} "
                  f"{geo(m.alt, 1):>7}  {m.caption}" for m in result.matches]
        return "\n".join(lines)
    header = (f"{'rank':>4} {'place':<10} {'views':>5} {'score':>7} {'best view':<22} {'clip':>6} {'caption':>7}"
              f" {'lat':>10} {'lon':>10}  caption of the best view")
    lines += [header, "-" * len(header)]
    for place in result.places:
        m = place.best
        lines.append(f"{place.rank:>4} {place.place_id:<10} {place.n_views:>5} {place.score:7.3f} {m.image_id:<22} "
                     f"{m.coarse_score:6.3f} {cap(m.caption_score):>7} {geo(m.lat, 6):>10} {geo(m.lon, 6):>10}  "
                     f"{m.caption}")
    return "\n".join(lines)


def _clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def _match_json(m) -> dict:
    return {k: _clean(v) for k, v in dict(vars(m), image_path=str(m.image_path)).items()}


def result_json(result) -> dict:
    return {"query": result.query, "reranked": result.reranked, "degraded": result.degraded,
            "status": result.status, "timings": result.timings, "confidence": _clean(result.confidence),
            "places": [{"rank": p.rank, "place_id": p.place_id, "score": p.score, "n_views": p.n_views,
                        "views": [v.image_id for v in p.views], "best": _match_json(p.best)} for p in result.places],
            "matches": [_match_json(m) for m in result.matches]}


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
    print(json.dumps(result_json(result), indent=1) if args.json else format_table(result, args.images))
    if args.sheet:
        shown = result.matches if args.images else [place.best for place in result.places]
        write_contact_sheet(shown, args.sheet, title=result.query)
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
    p.add_argument("--max-results", type=int, help="places (and images) to report")
    p.add_argument("--images", action="store_true", help="list images (the Track 4 ranking), not distinct places")
    p.add_argument("--sheet", help="write a contact sheet PNG of the matches here")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv=None) -> int:
    return run(_main, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
