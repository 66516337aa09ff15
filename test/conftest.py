"""Shared fixtures: a small real gallery on disk, small real models built from configs, an index.

Tests never touch the network: hub access is switched off before any model library is imported.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cgrs_ros.gallery import GalleryRecord, write_manifest  # noqa: E402

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


@pytest.fixture(scope="session")
def tiny_gallery(tmp_path_factory) -> Path:
    return make_gallery(tmp_path_factory.mktemp("gallery"))


@pytest.fixture(scope="session")
def tiny_engine_config_path(tmp_path_factory) -> Path:
    from tiny_models import write_tiny_engine_config
    return write_tiny_engine_config(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def tiny_engine_files(tiny_gallery, tiny_engine_config_path, tmp_path_factory) -> tuple[Path, Path]:
    """(engine config path, index folder) of a complete index of the tiny gallery."""
    from cgrs_ros.config import load_engine_config
    from cgrs_ros.gallery import read_manifest
    from cgrs_ros.index import build_index

    index_dir = tmp_path_factory.mktemp("index")
    build_index(read_manifest(tiny_gallery), load_engine_config(tiny_engine_config_path), index_dir,
                progress=False)
    return tiny_engine_config_path, index_dir
