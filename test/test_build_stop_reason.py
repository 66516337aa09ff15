"""A build over worker processes stops with the reason of the FIRST chunk that failed, and hands out
no chunk after it: the error a user reads names what went wrong first, not what failed last while
the build was already going down (and, with one worker, nothing runs behind a failed chunk)."""
import os
from pathlib import Path

import pytest

from cgrs_ros.build_workers import ChunkWorker, ProcessEncoder
from cgrs_ros.config import load_engine_config
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import read_manifest
from cgrs_ros.index import build_index

MARKS = "CGRS_TEST_FAILED_CHUNKS"      # a folder: each chunk a FailingWorker is handed leaves a mark there


class FailingWorker(ChunkWorker):
    """A worker (no models: it never encodes) whose every chunk fails with an error naming the chunk."""

    def __init__(self, config, fingerprint):
        self.name = f"failing:{os.getpid()}"

    def encode(self, stem, gallery, part):
        (Path(os.environ[MARKS]) / Path(stem).name).touch()
        raise CGRSInputError(f"cannot encode {Path(stem).name}")


def test_the_first_failed_chunk_is_the_reason_and_nothing_runs_after_it(monkeypatch, tiny_gallery, chunks_of_3,
                                                                        tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv(MARKS, str(marks))
    with pytest.raises(CGRSInputError) as stopped:
        build_index(read_manifest(tiny_gallery), load_engine_config(chunks_of_3), tmp_path / "idx", progress=False,
                    encoder=ProcessEncoder(1, FailingWorker))
    assert str(stopped.value) == "cannot encode chunk_00000"          # the tiny gallery: chunk_00000 .. 05
    assert sorted(p.name for p in marks.iterdir()) == ["chunk_00000"]
    assert not (tmp_path / "idx" / "index.json").exists()
