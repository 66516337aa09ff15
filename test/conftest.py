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

import pytest  # noqa: E402

from tiny_gallery import make_gallery  # noqa: E402

@pytest.fixture(scope="session")
def tiny_gallery(tmp_path_factory) -> Path:
    return make_gallery(tmp_path_factory.mktemp("gallery"))


@pytest.fixture(scope="session")
def tiny_engine_config_path(tmp_path_factory) -> Path:
    from tiny_models import write_tiny_engine_config
    return write_tiny_engine_config(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def chunks_of_3(tiny_engine_config_path) -> Path:
    """The tiny engine config with chunks of 3 images (the tiny gallery's 18: chunk_00000 .. chunk_00005),
    for the builds spread over workers."""
    import yaml

    settings = yaml.safe_load(tiny_engine_config_path.read_text())
    settings.setdefault("index", {})["chunk_size"] = 3
    path = tiny_engine_config_path.parent / "chunks_of_3.yaml"      # beside it: its model paths are relative
    path.write_text(yaml.safe_dump(settings))
    return path


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
