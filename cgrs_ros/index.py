"""The gallery index: image embeddings, captions and caption embeddings, computed once per gallery.

Captioning is the expensive stage (0.4-2 s per 20 images on an H100, far more on a Jetson), so the
index captions every gallery image once, at build time, and queries rerank against cached captions.

Folder layout (everything a query needs; ``.npy`` files are memory-mapped, nothing is pickled)::

    index.json               what made it (fingerprint), counts, gallery root; written LAST
    image_embeddings.npy     float32 (N, D) L2-normalised CLIP image vectors
    caption_embeddings.npy   float32 (N, E) L2-normalised text vectors of the captions
    records.jsonl            the N indexed gallery records, in row order, each with its caption
    skipped.json             images that could not be read, with the reason
    .partial/                resumable chunks of an unfinished build (removed when it completes)

A build works in chunks of ``index.chunk_size`` images; each finished chunk is written atomically
under ``.partial/``, so a killed build resumes from its last finished chunk.  ``index.json`` only
appears once every final file is in place, and a rebuild removes it first: a folder is either a
complete index or refused by :func:`load_index`.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .config import EngineConfig
from .errors import CGRSInputError
from .fingerprint import engine_fingerprint, fingerprint_differences
from .jsonl import read_jsonl
from .gallery import Gallery, GalleryRecord, parse_record, resolve_inside, write_text_atomic
from .rectify import views_for_captioner

INDEX_FORMAT = 1
META = "index.json"
PARTIAL = ".partial"


@dataclass
class GalleryIndex:
    """A loaded index; arrays are read-only memory maps."""

    path: Path
    meta: dict
    records: list[GalleryRecord]
    captions: list[str]
    image_embeddings: np.ndarray
    caption_embeddings: np.ndarray
    gallery_root: Path
    skipped: list[dict]

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, row: int) -> Path:
        return resolve_inside(self.gallery_root, self.records[row], str(self.path / "records.jsonl"))


def load_image(path: Path) -> Image.Image:
    """Open and fully decode an image (a truncated file fails here, not later in a batch)."""
    with Image.open(path) as image:
        image.load()
        return image.convert("RGB")


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as handle:
        np.save(handle, array, allow_pickle=False)
    os.replace(tmp, path)


def _write_json(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def _gallery_signature(gallery: Gallery) -> list[str]:
    return [f"{r.image_id}|{r.path}" for r in gallery.records]


def build_index(gallery: Gallery, config: EngineConfig, out_dir: str | Path, models=None,
                progress: bool = True) -> dict:
    """Encode, caption and embed every gallery image into ``out_dir``; returns the summary.

    ``models`` (a :class:`~cgrs_ros.models.ModelSet`) may be passed to reuse loaded models;
    otherwise they are loaded from ``config`` and released at the end.
    """
    from .models import load_models

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META).unlink(missing_ok=True)  # from here on the folder is not a loadable index
    partial = out_dir / PARTIAL
    plan = {"format": INDEX_FORMAT, "fingerprint": engine_fingerprint(config),
            "gallery": _gallery_signature(gallery), "chunk_size": config.index.chunk_size}
    plan_path = partial / "plan.json"
    if plan_path.is_file() and json.loads(plan_path.read_text()) != plan:
        shutil.rmtree(partial)  # a different gallery or models: earlier chunks are useless
    partial.mkdir(exist_ok=True)
    _write_json(plan_path, plan)

    size = config.index.chunk_size
    chunks = [gallery.records[i:i + size] for i in range(0, len(gallery), size)]
    done = {i for i in range(len(chunks)) if (partial / f"chunk_{i:05d}.json").is_file()}
    own_models = models is None
    models = models or load_models(config)
    try:
        bar = tqdm(total=len(gallery), initial=sum(len(chunks[i]) for i in done), unit="img",
                   desc="indexing", disable=not progress, dynamic_ncols=True)
        for number, chunk in enumerate(chunks):
            if number not in done:
                _build_chunk(gallery, chunk, models, config, partial, number, bar)
        bar.close()
    finally:
        if own_models:
            models.close()
    meta = _finalise(gallery, config, out_dir, partial, len(chunks), plan["fingerprint"])
    return dict(meta, resumed=sum(len(chunks[i]) for i in done))


def _build_chunk(gallery, chunk, models, config, partial: Path, number: int, bar) -> None:
    kept, images, skipped = [], [], []
    for record in chunk:
        try:
            images.append(load_image(gallery.resolve(record)))
            kept.append(record)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            skipped.append({"image_id": record.image_id, "path": record.path, "reason": str(exc)})
    batch, settings = config.index.batch_size, config.index
    image_vectors, captions = [], []
    for start in range(0, len(images), batch):
        part = images[start:start + batch]
        image_vectors.append(models.retriever.encode_images(part))
        captions.extend(models.captioner.caption(views_for_captioner(
            part, kept[start:start + batch], settings.rectify, settings.horizontal_platforms)))
        bar.update(len(part))
    bar.update(len(skipped))
    dim_image = models.retriever.embedding_dim
    image_array = np.concatenate(image_vectors) if image_vectors else np.zeros((0, dim_image), np.float32)
    matcher = models.text_similarity
    caption_array = (matcher.encode(captions) if captions and matcher.embeds_captions
                     else np.zeros((len(captions), matcher.embedding_dim), np.float32))
    stem = partial / f"chunk_{number:05d}"
    _save_npy_atomic(stem.with_suffix(".image.npy"), image_array)
    _save_npy_atomic(stem.with_suffix(".caption.npy"), caption_array)
    _write_json(stem.with_suffix(".json"), {"image_ids": [r.image_id for r in kept],
                                            "captions": captions, "skipped": skipped})


def _finalise(gallery, config, out_dir: Path, partial: Path, n_chunks: int, fingerprint: dict) -> dict:
    by_id = {r.image_id: r for r in gallery.records}
    records, captions, skipped, image_parts, caption_parts = [], [], [], [], []
    for number in range(n_chunks):
        stem = partial / f"chunk_{number:05d}"
        meta = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        records.extend(by_id[i] for i in meta["image_ids"])
        captions.extend(meta["captions"])
        skipped.extend(meta["skipped"])
        image_parts.append(np.load(stem.with_suffix(".image.npy"), allow_pickle=False))
        caption_parts.append(np.load(stem.with_suffix(".caption.npy"), allow_pickle=False))
    if not records:
        raise CGRSInputError(f"{gallery.source}: no gallery image could be read ({len(skipped)} skipped); "
                             f"see {partial}")
    _save_npy_atomic(out_dir / "image_embeddings.npy", np.concatenate(image_parts))
    _save_npy_atomic(out_dir / "caption_embeddings.npy", np.concatenate(caption_parts))
    write_text_atomic(out_dir / "records.jsonl", "".join(
        json.dumps(dict(r.to_json(), caption=c), ensure_ascii=False) + "\n" for r, c in zip(records, captions)))
    _write_json(out_dir / "skipped.json", skipped)
    meta = {"format": INDEX_FORMAT, "fingerprint": fingerprint, "count": len(records),
            "skipped": len(skipped), "gallery_root": str(gallery.root), "gallery_source": gallery.source,
            "image_dim": int(image_parts[0].shape[1]), "caption_dim": int(caption_parts[0].shape[1]),
            "engine": config.to_dict()}
    _write_json(out_dir / META, meta)
    shutil.rmtree(partial)
    return meta


def load_index(path: str | Path, config: EngineConfig | None = None) -> GalleryIndex:
    """Open a complete index; refuse an unfinished one, a corrupt one, or one made by other models."""
    path = Path(path)
    meta_path = path / META
    if not meta_path.is_file():
        hint = " (an unfinished build: rerun cgrs-index to resume)" if (path / PARTIAL).is_dir() else ""
        raise CGRSInputError(f"{path} is not a cgrs index: {META} is missing{hint}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CGRSInputError(f"{meta_path} is corrupt: {exc}") from exc
    if meta.get("format") != INDEX_FORMAT:
        raise CGRSInputError(f"{meta_path}: index format {meta.get('format')!r}, this version reads {INDEX_FORMAT}")
    if config is not None:
        diffs = fingerprint_differences(meta.get("fingerprint", {}), engine_fingerprint(config))
        if diffs:
            raise CGRSInputError(f"index {path} was built with other models than the config "
                                 f"{config.source or ''} asks for; rebuild it with cgrs-index or use the "
                                 f"config it was built with. Differences: " + "; ".join(diffs))
    arrays = {}
    for name, dim_key in (("image_embeddings", "image_dim"), ("caption_embeddings", "caption_dim")):
        file = path / f"{name}.npy"
        try:
            arrays[name] = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CGRSInputError(f"index file {file} is missing or corrupt: {exc}") from exc
        if arrays[name].shape != (meta["count"], meta[dim_key]):
            raise CGRSInputError(f"index file {file} has shape {arrays[name].shape}, "
                                 f"expected {(meta['count'], meta[dim_key])}")
    records, captions = [], []
    records_path = path / "records.jsonl"
    for where, row in read_jsonl(records_path, "index file"):
        if not isinstance(row, dict):
            raise CGRSInputError(f"{where}: corrupt index record")
        captions.append(str(row.pop("caption", "")))
        records.append(parse_record(row, where))
    if len(records) != meta["count"]:
        raise CGRSInputError(f"{records_path} has {len(records)} records, index.json says {meta['count']}")
    skipped_path = path / "skipped.json"
    skipped = json.loads(skipped_path.read_text()) if skipped_path.is_file() else []
    return GalleryIndex(path, meta, records, captions, arrays["image_embeddings"],
                        arrays["caption_embeddings"], Path(meta["gallery_root"]), skipped)
