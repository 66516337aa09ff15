"""What every command shares: model/config options, gallery sources, and clean failure on bad input."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable

from ..errors import CGRSInputError


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="engine YAML (models, fusion); default: the embedded models")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (overrides the config)")


def add_gallery_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--gallery", help="manifest.jsonl (or its folder) in the cgrs gallery format")
    source.add_argument("--geotext", help="a GeoText-1652 JSON file (image paths relative to its folder)")
    source.add_argument("--track4", help="a RoboSense Track 4 gallery folder of image_<hex>.jpeg files")
    parser.add_argument("--image-root", help="with --geotext: folder the JSON's image paths are relative to")


def add_ranking_options(parser: argparse.ArgumentParser) -> None:
    """Per-run overrides of the config's retrieval settings, for batch ranking commands."""
    parser.add_argument("--top-k", type=int, help="coarse candidates to rerank")
    parser.add_argument("--fusion-weight", type=float, help="caption share of the fused score, 0..1")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_modes(text: str) -> list[str]:
    """``--modes coarse,cached`` -> ``["coarse", "cached"]``; empty or unknown modes are refused."""
    from ..evaluation import MODES
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        raise CGRSInputError(f"--modes {text!r}: give a comma list of {', '.join(MODES)}")
    return modes


def ranking_settings(args, config):
    from ..engine import QueryOptions
    return QueryOptions(top_k=args.top_k, fusion_weight=args.fusion_weight).apply(config.retrieval)


def engine_config(args):
    from ..config import load_engine_config
    return load_engine_config(args.config, device=args.device)


def load_gallery(args):
    """(gallery, queries or None) from whichever source option was given."""
    from ..gallery import read_manifest
    if args.gallery:
        return read_manifest(args.gallery), None
    from ..formats import load_geotext, load_track4_gallery
    if args.geotext:
        return load_geotext(args.geotext, image_root=args.image_root)
    return load_track4_gallery(args.track4), None


def run(main: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse, run, and turn bad input (or an unusable environment) into one clear line on stderr
    and exit status 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("CGRS_LOG_LEVEL", "WARNING"),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return main(args)
    except (CGRSInputError, OSError) as exc:
        # OSError: the environment (a full disk, a read-only folder, a model folder or hub file
        # that is not there); its message names the file.  Library messages span lines: keep one.
        print(f"{parser.prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
