"""A build touches nothing outside its index folder and deletes only what it can prove it made.

Links planted at the names a build creates, removes or renames (``.build``, ``.lock``, a
``data-NNNN`` generation, ``.build/chunks``) are refused with one clear line before anything is
written, and what they point to is left exactly as it was; a folder that is not provably an index
(no ``index.json`` of ours, no ``.lock`` with our mark) is refused even when it holds a ``.lock``.
"""
import json
import os
from dataclasses import replace

import pytest

from cgrs_ros.config import load_engine_config
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import read_manifest
from cgrs_ros.index import build_index, load_index
from tiny_gallery import make_gallery, snapshot


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_engine_config_path):
    """(config, gallery, an edited gallery, a finished index of the first) of six images."""
    root = tmp_path_factory.mktemp("safety")
    config = load_engine_config(tiny_engine_config_path)
    manifest = make_gallery(root / "g", views=1)
    rows = manifest.read_text().splitlines()
    edited = root / "g" / "edited.jsonl"
    edited.write_text("\n".join(rows[:-1]) + "\n")      # one image fewer: a rebuild commits a new generation
    build_index(read_manifest(manifest), config, root / "idx", progress=False)
    return config, read_manifest(manifest), read_manifest(edited), root / "idx"


def _victim(tmp_path):
    """A folder of the user's that a link points to: one file in data/, one in chunks/."""
    victim = tmp_path / "V"
    (victim / "data").mkdir(parents=True)
    (victim / "chunks").mkdir()
    (victim / "data" / "important.txt").write_text("x")
    (victim / "chunks" / "mine.txt").write_text("y")
    return victim


def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else None) for p in folder.rglob("*"))


def _copy(index, tmp_path):
    import shutil

    out = tmp_path / "idx"
    shutil.copytree(index, out, symlinks=True)
    return out


@pytest.mark.parametrize("name", [".build", "data-0007", ".build/chunks", ".build/data"])
def test_a_link_at_a_name_the_build_manages_is_refused_and_its_target_untouched(built, tmp_path, name):
    config, _, edited, index = built
    out, victim = _copy(index, tmp_path), _victim(tmp_path)
    before_victim, before_index = _tree(victim), snapshot(load_index(out))
    (out / name).parent.mkdir(exist_ok=True)
    (out / name).symlink_to(victim)
    with pytest.raises(CGRSInputError, match=f"{name} is a symbolic link .*never writes or deletes through a link"):
        build_index(edited, config, out, progress=False)
    assert _tree(victim) == before_victim
    assert snapshot(load_index(out)) == before_index       # nothing committed either
    (out / name).unlink()
    assert not build_index(edited, config, out, progress=False)["up_to_date"]   # once removed, the build runs


def test_an_up_to_date_index_with_a_linked_build_folder_is_refused_too(built, tmp_path):
    config, gallery, _, index = built
    out, victim = _copy(index, tmp_path), _victim(tmp_path)
    before = _tree(victim)
    (out / ".build").symlink_to(victim)
    with pytest.raises(CGRSInputError, match=r"\.build is a symbolic link"):
        build_index(gallery, config, out, progress=False)
    assert _tree(victim) == before


def test_a_linked_lock_is_refused_and_nothing_is_created_at_its_target(built, tmp_path):
    config, _, edited, index = built
    out = _copy(index, tmp_path)
    (out / ".lock").unlink()
    (out / ".lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CGRSInputError, match=r"\.lock is a symbolic link"):
        build_index(edited, config, out, progress=False)
    assert not (tmp_path / "elsewhere").exists()


def test_a_lock_file_does_not_make_a_folder_of_other_files_an_index(built, tmp_path):
    config, gallery, _, _ = built
    folder = tmp_path / "U"
    (folder / "data-photos").mkdir(parents=True)
    (folder / "data-photos" / "cat.jpg").write_bytes(b"cat")
    (folder / "records.jsonl").write_text("{}\n")
    (folder / "skipped.json").write_text("[]\n")
    (folder / ".lock").write_text("")
    before = _tree(folder)
    with pytest.raises(CGRSInputError, match="holds other files and no cgrs index"):
        build_index(gallery, config, folder, progress=False)
    assert _tree(folder) == before


def test_a_foreign_lock_with_content_is_not_taken_over(built, tmp_path):
    config, gallery, _, _ = built
    folder = tmp_path / "U"
    folder.mkdir()
    (folder / ".lock").write_text("the user's own lock\n")
    with pytest.raises(CGRSInputError, match="holds other files and no cgrs index"):
        build_index(gallery, config, folder, progress=False)
    assert (folder / ".lock").read_text() == "the user's own lock\n"


def test_only_names_a_build_makes_are_removed_from_an_index_folder(built, tmp_path):
    """A user's data-photos/ and records.jsonl in a folder holding our index stay; a stale
    generation of ours and a temporary file of ours go."""
    config, _, edited, index = built
    out = _copy(index, tmp_path)
    (out / "data-photos").mkdir()
    (out / "data-photos" / "cat.jpg").write_bytes(b"cat")
    (out / "records.jsonl").write_text("{}\n")
    (out / "data-0099").mkdir()
    (out / ".index.json.tmp-1-2").write_text("half")
    meta = build_index(edited, config, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [".lock", meta["data"], "data-photos", "index.json",
                                                     "records.jsonl"]
    assert (out / "data-photos" / "cat.jpg").read_bytes() == b"cat"


def test_a_killed_first_build_is_resumed_from_its_marked_lock(built, tmp_path):
    """The build marks its lock before it writes anything else: a first build killed with chunks
    written is the folder's owner, not a foreign folder."""
    config, gallery, _, _ = built
    config = replace(config, index=replace(config.index, chunk_size=2))
    out = tmp_path / "idx"

    class Stop(BaseException):
        pass

    def stop_after_one_chunk(*args):
        raise Stop

    from cgrs_ros import index as index_module
    original = index_module._finalise
    index_module._finalise = stop_after_one_chunk
    try:
        with pytest.raises(Stop):
            build_index(gallery, config, out, progress=False)
    finally:
        index_module._finalise = original
    assert (out / ".build" / "chunks").is_dir() and not (out / "index.json").exists()
    meta = build_index(gallery, config, out, progress=False)
    assert meta["reused"] == 6 and json.loads((out / "index.json").read_text())["count"] == 6
    assert os.path.getsize(out / ".lock") > 0
