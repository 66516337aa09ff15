"""Fault injection: a build killed at every file-system step, or hitting a full disk at every write.

A kill is simulated in-process: the file-system calls that change the disk (mkdir, fsync, rename,
replace, unlink, rmdir; ``shutil.rmtree`` goes through them too) are counted, and from step k on
every one of them raises :class:`Killed`, so nothing the build would still do reaches the disk
(not even its clean-up handlers), exactly as after SIGKILL.  After each kill the folder must hold
the old index or the complete new one, never a mix and never nothing where an index was; and a
rerun must finish with an index equal to an uninterrupted build's, byte for byte.

The models are the real tiny ones; each distinct batch is computed once and remembered, so the
~200 builds here cost file-system work, not inference.
"""
import errno
import hashlib
import json
import os
import shutil
from dataclasses import replace

import pytest

from cgrs_ros.config import load_engine_config
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import read_manifest
from cgrs_ros.index import build_index, load_index
from tiny_gallery import make_gallery, snapshot

STEPS = ("mkdir", "fsync", "rename", "replace", "unlink", "rmdir")


class Killed(BaseException):
    """Not an Exception: no handler in the code under test may swallow it."""


class FileSystemSteps:
    """Counts disk-changing calls; from step ``fail_at`` on each raises ``error()`` (once when
    ``once``: a full disk is a failure the build sees and handles, a kill ends everything)."""

    def __init__(self, monkeypatch, fail_at=None, error=Killed, once=False, only=STEPS):
        self.count, self.fail_at, self.error, self.once = 0, fail_at, error, once
        for name in only:
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))

    def _wrap(self, call):
        def step(*args, **kwargs):
            self.count += 1
            if self.fail_at is not None and self.count > self.fail_at and (not self.once or self.count == self.fail_at + 1):
                raise self.error()
            return call(*args, **kwargs)
        return step


class Remembered:
    """A real model that answers a batch it has seen before from memory (the inputs are compared
    by content: pixels or text)."""

    def __init__(self, model):
        self._model, self._memory = model, {}

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _ask(self, method, items):
        key = (method,) + tuple(i if isinstance(i, str) else hashlib.sha256(i.tobytes()).hexdigest() + str(i.size)
                                for i in items)
        if key not in self._memory:
            self._memory[key] = getattr(self._model, method)(items)
        return self._memory[key]

    def encode_images(self, images):
        return self._ask("encode_images", images)

    def caption(self, images):
        return self._ask("caption", images)

    def encode(self, texts):
        return self._ask("encode", texts)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_engine_config_path):
    """Galleries before/after an edit, loaded models, and the indexes uninterrupted builds make."""
    from cgrs_ros.models import ModelSet, load_models

    root = tmp_path_factory.mktemp("faults")
    config = load_engine_config(tiny_engine_config_path)
    config = replace(config, index=replace(config.index, batch_size=2, chunk_size=2))
    manifest = make_gallery(root / "g", views=1)  # 6 images
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    before = read_manifest(manifest)
    # the edit: one file replaced, one image added, one removed (3 images to encode: 2 chunks)
    images = root / "g" / "images"
    (images / "new.png").write_bytes((images / "p04_v0.png").read_bytes())
    (images / "changed.png").write_bytes((images / "p05_v0.png").read_bytes())
    edited = root / "g" / "edited.jsonl"
    edited.write_text("".join(json.dumps(r) + "\n" for r in [dict(rows[0], path="images/changed.png")] + rows[1:4]
                              + [dict(rows[4], image_id="new", path="images/new.png"),
                                 dict(rows[4], image_id="new2", path="images/p03_v0.png")]))
    after = read_manifest(edited)
    real = load_models(config)
    models = ModelSet(*(Remembered(getattr(real, kind)) for kind in ("retriever", "captioner", "text_similarity")))
    build_index(before, config, root / "old", models=models, progress=False)
    shutil.copytree(root / "old", root / "updated")
    build_index(after, config, root / "updated", models=models, progress=False)
    yield {"config": config, "models": models, "before": before, "after": after, "root": root,
           "old": snapshot(load_index(root / "old")), "updated": snapshot(load_index(root / "updated"))}
    real.close()


def _start(setup, tmp_path, scenario):
    """The folder a build starts from, the gallery it builds, and the index it must end with."""
    out = tmp_path / "idx"
    if scenario == "fresh":
        return out, setup["before"], None, setup["old"]
    shutil.copytree(setup["root"] / "old", out)
    return out, setup["after"], setup["old"], setup["updated"]


def _build(setup, gallery, out):
    return build_index(gallery, setup["config"], out, models=setup["models"], progress=False)


def _count_steps(setup, tmp_path, scenario, monkeypatch, only=STEPS) -> int:
    out, gallery, _, _ = _start(setup, tmp_path / "count", scenario)
    with monkeypatch.context() as patch:
        steps = FileSystemSteps(patch, only=only)
        _build(setup, gallery, out)
    return steps.count


def _assert_old_or_new(out, old, new):
    try:
        now = snapshot(load_index(out))
    except CGRSInputError as exc:
        assert old is None and "is not a cgrs index" in str(exc), exc
        return "none"
    assert now in (old, new)
    return "old" if now == old else "new"


@pytest.mark.parametrize("scenario", ["fresh", "update"])
def test_killed_at_every_step_the_old_or_new_index_loads_and_a_rerun_completes(setup, tmp_path, scenario,
                                                                               monkeypatch):
    total = _count_steps(setup, tmp_path, scenario, monkeypatch)
    assert total > 25  # every chunk, the generation, the commit and the clean-up are steps
    seen = []
    for kill_at in range(total):
        case = tmp_path / f"kill_{kill_at}"
        out, gallery, old, new = _start(setup, case, scenario)
        with monkeypatch.context() as patch:
            FileSystemSteps(patch, fail_at=kill_at)
            with pytest.raises(Killed):
                _build(setup, gallery, out)
        seen.append(_assert_old_or_new(out, old, new))
        rerun = _build(setup, gallery, out)
        assert snapshot(load_index(out)) == new, f"rerun after a kill at step {kill_at}"
        assert sorted(p.name for p in out.iterdir()) == [".lock", new["meta"]["data"], "index.json"]
        assert rerun["up_to_date"] == (seen[-1] == "new")
        shutil.rmtree(case)
    # the switch happens at exactly one step, and never before the new index is complete
    first_new = seen.index("new")
    assert set(seen[:first_new]) == {"none" if scenario == "fresh" else "old"}
    assert set(seen[first_new:]) == {"new"}


def test_a_full_disk_at_any_write_keeps_the_old_index_and_leaves_no_litter(setup, tmp_path, monkeypatch):
    writes = ("mkdir", "fsync")  # where ENOSPC shows (a full page cache flushes at fsync)
    total = _count_steps(setup, tmp_path, "update", monkeypatch, only=writes)
    for step in range(total):
        case = tmp_path / f"full_{step}"
        out, gallery, old, new = _start(setup, case, "update")
        with monkeypatch.context() as patch:
            FileSystemSteps(patch, fail_at=step, once=True, only=writes,
                            error=lambda: OSError(errno.ENOSPC, "No space left on device"))
            try:
                _build(setup, gallery, out)  # completes when the step was a mkdir of an existing folder
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
        _assert_old_or_new(out, old, new)
        _build(setup, gallery, out)
        assert snapshot(load_index(out)) == new
        shutil.rmtree(case)
