"""The embedded demo gallery: a small procedural world indexed with the configured models.

What the node serves and ``cgrs-demo`` shows when no gallery is given.  It is generated and indexed
on first use into a cache folder (``$CGRS_HOME``, default ``~/.cache/cgrs_ros``) keyed by the world
and the index fingerprint (the models, or the retriever alone with ``index.captions: none``), so
changing models never serves a stale index; a file lock stops two processes (the node and a demo,
say) from building it at once.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
from pathlib import Path

from .config import EngineConfig
from .fingerprint import index_fingerprint
from .paths import cache_home

DEMO_WORLD = {"seed": 5, "n_places": 40, "views_drone": 6, "ground": True}


def demo_paths(config: EngineConfig) -> tuple[Path, Path]:
    """(world folder, index folder) for this config."""
    key = hashlib.sha256(json.dumps([DEMO_WORLD, index_fingerprint(config)], sort_keys=True).encode())
    world = cache_home() / f"demo_world_s{DEMO_WORLD['seed']}_{DEMO_WORLD['n_places']}"
    return world, cache_home() / f"demo_index_{key.hexdigest()[:12]}"


def ensure_demo_index(config: EngineConfig, progress=True) -> Path:
    """The demo index, generated and built when missing.  ``progress``: True (tqdm bars), False, or a
    tqdm-like bar factory for the indexing (see :func:`cgrs_ros.index.progress_bar`)."""
    from .gallery import read_manifest
    from .index import build_index
    from .world import generate_world

    world, index = demo_paths(config)
    cache_home().mkdir(parents=True, exist_ok=True)
    with open(cache_home() / ".demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (world / "manifest.jsonl").is_file():
            generate_world(world, DEMO_WORLD["seed"], DEMO_WORLD["n_places"], views_drone=DEMO_WORLD["views_drone"],
                           ground=DEMO_WORLD["ground"], progress=progress is True)
        # a no-op when the index is complete and current; otherwise it resumes, updates or replaces it
        build_index(read_manifest(world / "manifest.jsonl"), config, index, progress=progress)
    return index
