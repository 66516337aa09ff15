"""Export a generated world in the GeoText-1652 training layout.

GeoText-1652 ships ``train.json``: a JSON list of items
``{"image_id": "0007/x.png", "image": "train/0007/x.png", "caption": str, "sentences": [str],
"bboxes": [[cx, cy, w, h]]}`` where the first four characters of ``image_id`` are the building id
and each sentence has one normalized box.  Writing the same layout lets a GeoText loader (and
GeoText-style fine-tuning) consume synthetic worlds unchanged.  Images of every platform are
exported; the platform is visible in the file name.  Files are hard-linked to the world's images
when the file system allows it (no extra space), copied otherwise.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from ..gallery import GalleryRecord, write_text_atomic


def export_geotext(records: Iterable[GalleryRecord], root: Path) -> Path:
    """Write ``root/geotext/train.json`` and ``root/geotext/train/<building>/<image>``; return the JSON path."""
    items = []
    for record in records:
        building = record.place_id[1:]          # "p0007" -> "0007"
        name = Path(record.path).name
        target = root / "geotext" / "train" / building / name
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(root / record.path, target)
        items.append({"image_id": f"{building}/{name}", "image": f"train/{building}/{name}",
                      "caption": record.extras["descriptions"][0],
                      "sentences": record.extras["sentences"], "bboxes": record.extras["bboxes"]})
    return write_text_atomic(root / "geotext" / "train.json", json.dumps(items, ensure_ascii=False) + "\n")


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
