"""``cgrs-world`` / ``python -m cgrs_ros.world``: generate a procedural aerial world folder."""
from __future__ import annotations

import argparse
import sys
import time

from ..errors import CGRSInputError
from .gazebo import GAZEBO_DIR, WORLD_FILE
from .generate import generate_world


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cgrs-world",
        description="Generate a deterministic synthetic aerial world: images (satellite, drone, ground), "
                    "manifest.jsonl, queries.jsonl and world.json.  Same seed + options = same bytes.")
    parser.add_argument("--seed", type=int, required=True, help="world seed (e.g. 1 train, 2 val, 3 test)")
    parser.add_argument("--places", type=int, default=40, help="number of places (default 40)")
    parser.add_argument("--out", required=True, help="output folder (replaced if it holds an earlier world)")
    parser.add_argument("--views-drone", type=int, default=8, help="drone views per place (default 8)")
    parser.add_argument("--ground", action=argparse.BooleanOptionalAction, default=True,
                        help="render one ground-level view per place (default on)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--queries-per-place", type=int, default=3, help="queries per place (default 3)")
    parser.add_argument("--geotext", action="store_true",
                        help="also export geotext/ in both GeoText-1652 layouts (train.json, test.json, images/)")
    parser.add_argument("--gazebo", action="store_true",
                        help="also write gazebo/world.sdf (the places as a Gazebo world about the datum) and "
                             "gazebo/cgrs_node_datum.yaml (the node's datum for it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        out = generate_world(args.out, args.seed, args.places, views_drone=args.views_drone, ground=args.ground,
                             size=args.size, queries_per_place=args.queries_per_place, geotext=args.geotext,
                             gazebo=args.gazebo, progress=not args.quiet)
    except CGRSInputError as exc:
        print(f"cgrs-world: error: {exc}", file=sys.stderr)
        return 2
    images = args.places * (1 + args.views_drone + int(args.ground))
    print(f"wrote {images} images of {args.places} places and {args.places * args.queries_per_place} queries "
          f"to {out} in {time.perf_counter() - start:.1f} s")
    if args.gazebo:
        print(f"Gazebo world: {out / GAZEBO_DIR / WORLD_FILE} "
              f"(ros2 launch cgrs_ros cgrs_sim.launch.py world_dir:={out / GAZEBO_DIR})")
    return 0
