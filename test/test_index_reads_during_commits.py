"""A reader opening the index while rebuilds commit always gets a whole generation: never an error.

A commit renames the new ``index.json`` into place and then removes the old generation; a reader
that read the old ``index.json`` just before must not fail on the old generation's files, nor later
when it reads the files it reads after the load (the search structure, the sources).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cgrs_ros import index as index_module
from cgrs_ros.config import load_engine_config
from cgrs_ros.index import load_index, write_index


@pytest.fixture(scope="module")
def rows(tiny_engine_files):
    """(config, records, captions, image vectors, caption vectors, gallery root) of the tiny index."""
    config_path, folder = tiny_engine_files
    index = load_index(folder)
    return (load_engine_config(config_path), list(index.records), list(index.captions),
            np.asarray(index.image_embeddings, np.float32), np.asarray(index.caption_embeddings, np.float32),
            index.gallery_root)


def _commit(rows, out, generation=0):
    config, records, captions, images, texts, root = rows
    # a different row order each time: every commit makes a generation with other contents
    order = np.roll(np.arange(len(records)), generation)
    return write_index(out, config, [records[i] for i in order], [captions[i] for i in order], images[order],
                       texts[order], root)


def test_a_commit_between_reading_index_json_and_opening_its_generation_is_not_an_error(rows, tmp_path,
                                                                                          monkeypatch):
    out = tmp_path / "idx"
    _commit(rows, out)
    real_read_meta, calls = index_module.read_meta, []

    def read_meta_then_commit(path):
        meta = real_read_meta(path)
        if not calls:            # the race, made certain: a rebuild commits right after this read
            calls.append(meta["data"])
            _commit(rows, out, 1)
        return meta

    monkeypatch.setattr(index_module, "read_meta", read_meta_then_commit)
    loaded = load_index(out)
    assert calls == ["data-0001"] and loaded.meta["data"] == "data-0002"
    assert loaded.image_id(0) == rows[1][-1].image_id      # the new generation's rows, whole


def test_files_read_after_the_load_stay_readable_when_a_rebuild_removes_the_generation(rows, tmp_path):
    out = tmp_path / "idx"
    _commit(rows, out)
    loaded = load_index(out)
    places = loaded.read_file("places.json")
    _commit(rows, out, 1)
    assert not (out / "data-0001").exists()
    assert loaded.read_file("places.json") == places


def test_loads_in_another_process_during_repeated_commits_never_fail(rows, tmp_path):
    out = tmp_path / "idx"
    _commit(rows, out)
    stop, progress = tmp_path / "stop", tmp_path / "progress"     # the reader adds a byte per load
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys\n"
         "from cgrs_ros.index import load_index\n"
         "loads = failures = 0\n"
         f"progress = open({str(progress)!r}, 'ab', buffering=0)\n"
         f"while not os.path.exists({str(stop)!r}):\n"
         "    try:\n"
         f"        index = load_index({str(out)!r}); index.read_file('places.json'); list(index.captions)\n"
         "    except Exception as exc:\n"
         "        failures += 1; print(type(exc).__name__, exc, file=sys.stderr)\n"
         "    loads += 1; progress.write(b'.')\n"
         "print(loads, failures)\n"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    commits, deadline = 0, time.monotonic() + 120
    try:
        while not progress.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # at least 40 commits, and at least 200 loads while they were being made
        while (commits < 40 or progress.stat().st_size < 200) and time.monotonic() < deadline:
            commits += 1
            _commit(rows, out, commits)
    finally:
        stop.touch()
        output, errors = reader.communicate(timeout=60)
    loads, failures = map(int, output.split())
    assert failures == 0, errors[-2000:]
    assert commits >= 40 and loads >= 200, (commits, loads)
