"""cgrs-index: encode, caption and embed a gallery into an index folder.

Safe to rerun at any time: a killed build resumes, a grown or edited gallery re-encodes only the
images that changed, an unchanged one is left alone, and a working index is only ever replaced by
a complete new one.  --captions none runs CLIP alone (captioning is most of a build): queries then
caption their candidates when first needed and log those captions in the index folder.
--workers N encodes in N processes of this machine, --ray over a Ray cluster (README "Distributed
builds (Ray)")."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..config import INDEX_CAPTIONS
from ..errors import CGRSInputError
from .common import add_engine_options, add_gallery_options, engine_config, load_gallery, run


def _main(args) -> int:
    from ..index import build_index

    if args.gpus_per_worker is not None and not args.ray:
        raise CGRSInputError("--gpus-per-worker needs --ray")
    config = engine_config(args)
    if args.captions:
        config = replace(config, index=replace(config.index, captions=args.captions))
    gallery, _ = load_gallery(args)
    if args.ray:
        from ..distributed import build_index_with_ray

        meta = build_index_with_ray(gallery, config, args.out, args.ray, args.workers, args.gpus_per_worker,
                                    progress=not args.no_progress)
        if meta["chunks_by_worker"]:
            print(f"{sum(meta['chunks_by_worker'].values())} chunks encoded by "
                  f"{len(meta['chunks_by_worker'])} Ray workers")
    elif args.workers is not None:
        from ..build_workers import ProcessEncoder

        encoder = ProcessEncoder(args.workers)
        meta = build_index(gallery, config, args.out, progress=not args.no_progress, encoder=encoder)
        if encoder.chunks_by_worker:
            print(f"{sum(encoder.chunks_by_worker.values())} chunks encoded by "
                  f"{len(encoder.chunks_by_worker)} worker processes")
    else:
        meta = build_index(gallery, config, args.out, progress=not args.no_progress)
    skipped = f"{meta['skipped']} skipped, listed in {Path(args.out) / meta['data'] / 'skipped.json'}"
    if meta["up_to_date"]:
        print(f"index {args.out} is up to date ({meta['count']} images of {len(gallery)}, {skipped}); nothing to do")
    else:
        print(f"indexed {meta['count']} images of {len(gallery)} into {args.out} ({skipped}; "
              f"{meta['encoded']} encoded, {meta['reused']} reused from the previous index or an interrupted build)")
    if meta["captions"] == "none":
        print("no captions at build time (index.captions: none): queries caption their candidates when first "
              f"needed and log them in {Path(args.out) / meta['data']}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cgrs-index", description=__doc__)
    add_gallery_options(p)
    add_engine_options(p)
    p.add_argument("--out", required=True, help="index folder to write or update (a killed build resumes on rerun)")
    p.add_argument("--captions", choices=INDEX_CAPTIONS,
                   help="caption every image now (all) or only query candidates, when first needed (none); "
                        "default: the config's index.captions (all)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="encode on a Ray cluster (needs pip install \"cgrs_ros[distributed]\"): local (the default "
                        "when no ADDRESS is given) starts one on this machine, auto joins the cluster of `ray start`, "
                        "or a Ray address; every node must see the gallery and --out at the same paths")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes, each with its own models and `threads` cores (default: this process "
                        "alone); with --ray: Ray workers (default: one per GPU of the cluster, else one per `threads` "
                        "CPUs)")
    p.add_argument("--gpus-per-worker", type=float, metavar="G",
                   help="with --ray: GPUs each worker reserves (default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    return run(_main, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
