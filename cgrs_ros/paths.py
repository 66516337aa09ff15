"""Where cgrs_ros keeps what it builds for itself: ``$CGRS_HOME``, default ``~/.cache/cgrs_ros``.

The demo world and index, the benchmarks' worlds and indexes and the ONNX exports of the text
encoders live under it.  A module of its own, importing nothing of cgrs_ros, so that any layer (the
models' ONNX cache, the demo index, the benchmarks) can ask for the folder without importing another.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """``$CGRS_HOME`` when set (and not empty), else ``~/.cache/cgrs_ros``."""
    return Path(os.environ.get("CGRS_HOME") or Path.home() / ".cache" / "cgrs_ros")
