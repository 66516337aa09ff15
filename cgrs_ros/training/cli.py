"""``cgrs-train``: train the embedded default models on a generated world and write them atomically.

    cgrs-train --world-seed 1 --places 1000 --seed 0 --out cgrs_ros/resources/embedded [--only clip|captioner]

Writes ``cgrs_tiny_clip.safetensors``, ``captioner/`` and ``training_report.json`` into ``--out``.
The train world goes into a temporary folder (or ``--world-dir``, kept and reused when it already
holds a world).  Unless ``--val-places 0``, one small validation world (seed 2) is generated: the CLIP
alone is scored on it through the retriever registry (the shipped loading path), and the captioner's
monitor captions its first 300 views every few hundred steps.
"""
from __future__ import annotations

import os

# libgomp's default busy-waiting collapses throughput when other processes share the cores
# (measured here: 2 threads went from ~500 to ~60 images/s); it must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

CLIP_FILE = "cgrs_tiny_clip.safetensors"
CAPTIONER_DIR = "captioner"
REPORT_FILE = "training_report.json"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cgrs-train", description=__doc__.split("\n\n")[0])
    p.add_argument("--world-seed", type=int, default=1, help="seed of the training world (default 1)")
    p.add_argument("--places", type=int, default=1000, help="places in the training world (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="training seed (initialisation, batches, augmentation)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "resources" / "embedded",
                   help="output folder (default: the packaged cgrs_ros/resources/embedded)")
    p.add_argument("--only", choices=("clip", "captioner"), help="train only one of the two models")
    p.add_argument("--world-dir", type=Path, help="keep the training world here (reused if present)")
    p.add_argument("--val-seed", type=int, default=2, help="validation world seed (default 2)")
    p.add_argument("--val-places", type=int, default=100, help="validation places (seed --val-seed) for the CLIP check and the captioner monitor; 0 skips")
    p.add_argument("--clip-steps", type=int, help="override the CLIP's training steps")
    p.add_argument("--captioner-steps", type=int, help="override the captioner's training steps")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def _readable(path: Path) -> None:
    """safetensors writes owner-only files; packaged weights must be world-readable."""
    for f in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        f.chmod(0o644)


def _replace_dir(src: Path, dst: Path) -> None:
    """Swap a finished folder into place; the old one is removed only after the new one is there."""
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def _validate_clip(checkpoint: Path, val_world, log) -> dict:
    """Place-level recall of the CLIP alone, loaded through the retriever registry."""
    import numpy as np
    from PIL import Image

    from ..models import RETRIEVERS
    from .clip import MODEL_NAME
    from .evaluate import coarse_rankings, place_recall

    retriever = RETRIEVERS.build({"name": "open_clip", "model": MODEL_NAME, "checkpoint": str(checkpoint),
                                  "device": "cpu", "batch_size": 256})
    paths = val_world.images()
    images = np.concatenate([retriever.encode_images([Image.open(p) for p in paths[i:i + 256]])
                             for i in range(0, len(paths), 256)])
    texts = [q.text for q in val_world.queries]
    queries = np.concatenate([retriever.encode_texts(texts[i:i + 128]) for i in range(0, len(texts), 128)])
    index = {p: i for i, p in enumerate(val_world.place_ids)}
    query_place = np.array([index[q.place_id] for q in val_world.queries])
    recall = place_recall(coarse_rankings(images, queries, 10), val_world.image_place, query_place)
    log(f"validation: CLIP alone on {len(val_world.place_ids)} places, {len(texts)} queries: {recall}")
    retriever.close()
    return recall


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from . import captioner as cap
    from . import clip
    from .data import generate

    torch.set_num_threads(max(1, args.threads))
    progress = not args.no_progress

    def log(message: str) -> None:
        print(message, file=sys.stderr if progress else sys.stdout, flush=True)

    started = time.perf_counter()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / REPORT_FILE
    report = json.loads(report_path.read_text()) if report_path.is_file() and args.only else {}
    report.update({"command": "cgrs-train " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "world_seed": args.world_seed, "places": args.places, "seed": args.seed,
                   "torch": torch.__version__, "threads": torch.get_num_threads()})

    scratch = Path(tempfile.mkdtemp(prefix="cgrs-train-"))
    try:
        world_dir = args.world_dir or scratch / "world"
        t0 = time.perf_counter()
        world = generate(world_dir, seed=args.world_seed, n_places=args.places, progress=progress)
        report["world"] = {"images": world.n_images, "places": len(world.place_ids),
                           "queries": len(world.queries), "seconds": round(time.perf_counter() - t0, 1)}
        log(f"train world: {world.n_images} images, {len(world.place_ids)} places "
            f"({report['world']['seconds']}s)")

        # One validation world (seed 2) for both checks: the CLIP's recall and the captioner's monitor,
        # which reads its first 300 views.  Checks only: neither changes what is trained.
        val = None
        if args.val_places > 0:
            t0 = time.perf_counter()
            val = generate(scratch / "val", seed=args.val_seed, n_places=args.val_places, progress=False)
            val_seconds = round(time.perf_counter() - t0, 1)

        if args.only in (None, "clip"):
            cfg = clip.ClipConfig()
            if args.clip_steps:
                cfg.steps = args.clip_steps
            model, clip_report = clip.train_clip(world, cfg, seed=args.seed, progress=progress, log=log)
            tmp = out / f".{CLIP_FILE}.tmp-{os.getpid()}"
            clip.save_checkpoint(model, tmp)
            _readable(tmp)
            os.replace(tmp, out / CLIP_FILE)
            clip_report["bytes"] = _size(out / CLIP_FILE)
            del model
            if val is not None:
                t0 = time.perf_counter()
                clip_report["validation"] = {"world_seed": args.val_seed, "places": args.val_places,
                                             "queries": len(val.queries),
                                             **_validate_clip(out / CLIP_FILE, val, log),
                                             "seconds": round(time.perf_counter() - t0 + val_seconds, 1)}
            report["clip"] = clip_report
            log(f"CLIP: {clip_report['seconds']}s, loss {clip_report['loss_first_100']:.3f} -> "
                f"{clip_report['loss_last_100']:.3f}, {clip_report['bytes'] / 1e6:.2f} MB")

        if args.only in (None, "captioner"):
            cfg = cap.CaptionerConfig()
            if args.captioner_steps:
                cfg.steps = args.captioner_steps
            tmp = out / f".{CAPTIONER_DIR}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            monitor = None if val is None else cap.accuracy_monitor(val, cfg.rectify, cfg.max_length - 1)
            cap_report = cap.train_captioner(world, tmp, cfg, seed=args.seed, progress=progress, log=log,
                                             monitor=monitor)
            _readable(tmp)
            _replace_dir(tmp, out / CAPTIONER_DIR)
            cap_report["bytes"] = _size(out / CAPTIONER_DIR)
            report["captioner"] = cap_report
            log(f"captioner: {cap_report['seconds']}s, loss {cap_report['loss_first_100']:.3f} -> "
                f"{cap_report['loss_last_100']:.3f}, {cap_report['bytes'] / 1e6:.2f} MB")

    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    total = time.perf_counter() - started
    report["seconds_total"] = round(total, 1)
    report["bytes_total"] = _size(out / CLIP_FILE) + _size(out / CAPTIONER_DIR)
    tmp = out / f".{REPORT_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, report_path)
    print(f"cgrs-train: {total:.0f}s total; {CLIP_FILE} {_size(out / CLIP_FILE) / 1e6:.2f} MB, "
          f"{CAPTIONER_DIR}/ {_size(out / CAPTIONER_DIR) / 1e6:.2f} MB, "
          f"total {report['bytes_total'] / 1e6:.2f} MB -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
