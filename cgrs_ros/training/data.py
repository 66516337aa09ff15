"""Training data: a generated world read back through the gallery/query readers, held in memory.

Images are pre-processed once with the *inference* transform of the model being trained (the open_clip
preprocess, the captioner's image processor), so training sees exactly the pixels the shipped model
will be given; augmentation then works on those tensors.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..gallery import Gallery, read_manifest
from ..queries import Query, read_queries


@dataclass
class World:
    """One generated world: gallery records, their descriptions, and the queries."""

    root: Path
    gallery: Gallery
    queries: list[Query]
    place_ids: list[str] = field(default_factory=list)        # sorted unique place ids
    image_place: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # place index per image
    descriptions: list[list[str]] = field(default_factory=list)  # per image

    @property
    def n_images(self) -> int:
        return len(self.gallery)

    def images(self) -> list[Path]:
        return [self.gallery.resolve(r) for r in self.gallery]

    def platforms(self) -> list[str]:
        return [r.platform for r in self.gallery]


def load_world(root: str | os.PathLike) -> World:
    root = Path(root)
    gallery = read_manifest(root / "manifest.jsonl")
    queries_path = root / "queries.jsonl"
    queries = read_queries(queries_path) if queries_path.is_file() else []
    place_ids = sorted({r.place_id for r in gallery})
    index = {p: i for i, p in enumerate(place_ids)}
    descriptions = []
    for record in gallery:
        texts = record.extras.get("descriptions") or []
        descriptions.append([" ".join(str(t).split()) for t in texts if str(t).strip()])
    return World(root, gallery, list(queries), place_ids,
                 np.array([index[r.place_id] for r in gallery], dtype=np.int64), descriptions)


def generate(out_dir: str | os.PathLike, seed: int, n_places: int, progress: bool = True, **options) -> World:
    """Generate (or reuse, when a complete manifest is already there) a world and load it."""
    out_dir = Path(out_dir)
    if not (out_dir / "manifest.jsonl").is_file():
        from ..world import generate_world

        generate_world(out_dir, seed=seed, n_places=n_places, progress=progress, **options)
    return load_world(out_dir)


def preprocess_images(paths: list[Path], transform: Callable[[Image.Image], torch.Tensor],
                      dtype: torch.dtype = torch.float16, desc: str = "images", progress: bool = True,
                      view: Callable[[int, Image.Image], Image.Image] | None = None) -> torch.Tensor:
    """Stack ``transform(PIL image)`` for every path into one (N, C, H, W) tensor.

    ``view(i, image)``, when given, is applied first: e.g. the index's north-up rectification, so
    a model trains on the views it will be shown at index time.
    """
    from tqdm import tqdm

    out = None
    for i, path in enumerate(tqdm(paths, desc=f"preprocess {desc}", disable=not progress, mininterval=2.0)):
        with Image.open(path) as image:
            image = image.convert("RGB")
        pixels = transform(view(i, image) if view else image)
        if out is None:
            out = torch.empty((len(paths), *pixels.shape), dtype=dtype)
        out[i] = pixels.to(dtype)
    return out


def augment(batch: torch.Tensor, generator: torch.Generator, shift: int = 4, gain: float = 0.08) -> torch.Tensor:
    """Direction- and colour-preserving augmentation of normalised image tensors.

    A small random translation (reflect-padded) and a mild global gain/offset.  No flips or rotations:
    descriptions name cardinal directions and the satellite view is north-up, so a mirrored image
    would contradict its own caption; no hue changes: the roof colour is the first thing a query names.
    """
    n, _, h, w = batch.shape
    x = batch.float()
    if shift > 0:
        padded = torch.nn.functional.pad(x, (shift, shift, shift, shift), mode="reflect")
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None, :])                 # (n, h)
        cols = (dx[:, None] + torch.arange(w)[None, :])                 # (n, w)
        index = torch.arange(n)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if gain > 0:
        scale = 1.0 + gain * (2 * torch.rand((n, 1, 1, 1), generator=generator) - 1)
        offset = gain * (2 * torch.rand((n, 1, 1, 1), generator=generator) - 1)
        x = x * scale + offset
    return x.contiguous()


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start
