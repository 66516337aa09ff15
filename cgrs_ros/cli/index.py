"""cgrs-index: encode, caption and embed a gallery into an index folder.

Safe to rerun at any time: a killed build resumes, a grown or edited gallery re-encodes only the
images that changed, an unchanged one is left alone, and a working index is only ever replaced by
a complete new one."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_engine_options, add_gallery_options, engine_config, load_gallery, run


def _main(args) -> int:
    from ..index import build_index

    config = engine_config(args)
    gallery, _ = load_gallery(args)
    meta = build_index(gallery, config, args.out, progress=not args.no_progress)
    skipped = f"{meta['skipped']} skipped, listed in {Path(args.out) / meta['data'] / 'skipped.json'}"
    if meta["up_to_date"]:
        print(f"index {args.out} is up to date ({meta['count']} images of {len(gallery)}, {skipped}); nothing to do")
    else:
        print(f"indexed {meta['count']} images of {len(gallery)} into {args.out} ({skipped}; "
              f"{meta['encoded']} encoded, {meta['reused']} reused from the previous index or an interrupted build)")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cgrs-index", description=__doc__)
    add_gallery_options(p)
    add_engine_options(p)
    p.add_argument("--out", required=True, help="index folder to write or update (a killed build resumes on rerun)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    return run(_main, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
