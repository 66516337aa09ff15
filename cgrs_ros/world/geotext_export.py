"""Export a generated world in the GeoText-1652 layout, both annotation files and the image tree.

GeoText-1652 ships its images under ``images/`` and two JSON lists whose ``image`` paths are
relative to that folder; the first four characters of ``image_id`` are the building id and each
sentence has one normalised box ``[cx, cy, w, h]``:

- ``train.json``: one item per caption, ``caption`` a string (an image with three descriptions is
  three items): ``{"image_id": "0007/x.png", "image": "train/0007/x.png", "caption": str, ...}``;
- ``test.json``: one item per image, ``caption`` a *list* of strings (the official test loader
  iterates it; a string would be read character by character):
  ``{"image_id": "0007/x.png", "image": "test/gallery_no_train/0007/x.png", "caption": [str, ...]}``.

Writing both lets the official loaders (and GeoText-style fine-tuning) consume synthetic worlds
unchanged.  Images of every platform are exported, in place order (the official test loader needs
a building's images together); the platform is visible in the file name.  Files are hard-linked to
the world's images when the file system allows it (no extra space), copied otherwise.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from ..gallery import GalleryRecord, write_text_atomic

IMAGE_FOLDERS = {"train": "train", "test": "test/gallery_no_train"}


def export_geotext(records: Iterable[GalleryRecord], world: Path, out: Path | None = None) -> Path:
    """Write ``out/{train,test}.json`` and their images under ``out/images/`` for the records of the
    world folder ``world`` (default ``out``: ``world/geotext``, the world's own export); return ``out``."""
    out = world / "geotext" if out is None else out
    items: dict[str, list[dict]] = {split: [] for split in IMAGE_FOLDERS}
    for record in records:
        building = record.place_id[1:]          # "p0007" -> "0007"
        name = Path(record.path).name
        image = {split: f"{folder}/{building}/{name}" for split, folder in IMAGE_FOLDERS.items()}
        for path in image.values():
            (out / "images" / path).parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(world / record.path, out / "images" / path)
        common = {"image_id": f"{building}/{name}", "sentences": record.extras["sentences"],
                  "bboxes": record.extras["bboxes"]}
        descriptions = record.extras["descriptions"]
        items["train"].extend(dict(common, image=image["train"], caption=text) for text in descriptions)
        items["test"].append(dict(common, image=image["test"], caption=list(descriptions)))
    for split, split_items in items.items():
        write_text_atomic(out / f"{split}.json", json.dumps(split_items, ensure_ascii=False) + "\n")
    return out


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
