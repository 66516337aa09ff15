"""A small real gallery on disk: coloured roofs, geo-tagged around Zurich (for the core tests)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cgrs_ros.gallery import GalleryRecord, write_manifest

COLOURS = {"red": (40, 40, 220), "blue": (220, 60, 40), "green": (60, 200, 60),
           "yellow": (40, 220, 230), "white": (235, 235, 235), "black": (30, 30, 30)}


def make_gallery(folder: Path, views: int = 3) -> Path:
    """Six places (one roof colour each), ``views`` images per place, geo-tagged around Zurich."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    records = []
    for p, (name, bgr) in enumerate(COLOURS.items()):
        for v in range(views):
            image = np.full((48, 48, 3), 90, np.uint8)
            offset = int(rng.integers(4, 12))
            cv2.rectangle(image, (offset, offset), (offset + 24, offset + 24), bgr, -1)
            image_id = f"p{p:02d}_v{v}"
            cv2.imwrite(str(folder / "images" / f"{image_id}.png"), image)
            records.append(GalleryRecord(
                image_id, f"images/{image_id}.png", f"p{p:02d}", "drone" if v else "satellite",
                lat=47.37 + p * 0.001, lon=8.54 + v * 0.0001, alt=50.0 + v, heading=(90.0 * v) % 360,
                extras={"roof": name}))
    return write_manifest(records, folder / "manifest.jsonl")


def snapshot(index) -> dict:
    """Everything a loaded index serves, exactly (arrays as bytes): two builds compare equal only
    when they would answer every query identically."""
    return {"meta": index.meta, "records": [r.to_json() for r in index.records], "captions": list(index.captions),
            "skipped": index.skipped, "image": index.image_embeddings.tobytes(),
            "caption": index.caption_embeddings.tobytes()}
