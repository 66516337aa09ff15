"""Crash consistency: every state a power cut can leave during a build opens as the old or the new index.

A kill (test_index_faults.py) keeps everything the build wrote; a power cut keeps only what was made
durable.  Here every file-system call of a real rebuild is recorded (creating and truncating files,
fsync of files and folders, renames, mkdir, unlink, rmdir), and a model of the disk replays each
prefix of them the pessimistic way a crash may leave it: a file's content is what its last fsync
saw (a file created, truncated or written since then is empty), and a folder holds the entries its
last fsync saw (a rename, creation or removal in it since then is undone).  Each such state is
written out and must load as the old index or the new one, never fail.

The check itself is checked: a build that writes ``index.json`` in place, or renames its data
folder into place without first syncing the folder, must fail it.
"""
import os
import shutil
from dataclasses import replace

import pytest

from cgrs_ros import index as index_module
from cgrs_ros.config import load_engine_config
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import read_manifest
from cgrs_ros.index import build_index, load_index
from tiny_gallery import make_gallery, snapshot


class Disk:
    """What a crash leaves of the folder ``root``: the durable entries of each folder and the
    durable content of each file, by inode (a renamed folder keeps its entries)."""

    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.entries, self.durable, self.content, self.steps = {}, {}, {}, 0
        self.top = self._new_dir()
        for path, dirs, files in os.walk(self.root):
            node = self._lookup(path)
            for name in dirs:
                self.entries[node][name] = self.durable[node][name] = self._new_dir()
            for name in files:
                inode = self._new_file()
                with open(os.path.join(path, name), "rb") as handle:
                    self.content[inode] = handle.read()
                self.entries[node][name] = self.durable[node][name] = inode

    def _new_dir(self):
        inode = ("dir", len(self.entries) + len(self.content))
        self.entries[inode], self.durable[inode] = {}, {}
        return inode

    def _new_file(self):
        inode = ("file", len(self.entries) + len(self.content))
        self.content[inode] = b""
        return inode

    def _parts(self, path):
        path = os.path.normpath(path)
        if path != self.root and not path.startswith(self.root + os.sep):
            return None
        return [p for p in path[len(self.root):].split(os.sep) if p]

    def _lookup(self, path):
        parts = self._parts(path)
        node = self.top if parts is not None else None
        for part in parts or ():
            node = self.entries.get(node, {}).get(part)
        return node

    def _parent(self, path):
        parts = self._parts(path)
        if not parts:
            return None, None
        return self._lookup(os.path.dirname(os.path.normpath(path))), parts[-1]

    # events, applied as the build makes them
    def created(self, path, truncated):
        parent, name = self._parent(path)
        if parent is None:
            return
        inode = self.entries[parent].get(name)
        if inode is None:
            self.entries[parent][name] = self._new_file()
        elif truncated and inode[0] == "file":
            self.content[inode] = b""      # the old bytes may be gone, the new ones not yet on disk

    def made_dir(self, path):
        parent, name = self._parent(path)
        if parent is not None:
            self.entries[parent][name] = self._new_dir()

    def renamed(self, src, dst):
        (sp, sn), (dp, dn) = self._parent(src), self._parent(dst)
        if sp is not None and dp is not None and sn in self.entries[sp]:
            self.entries[dp][dn] = self.entries[sp].pop(sn)

    def removed(self, path):
        parent, name = self._parent(path)
        if parent is not None:
            self.entries[parent].pop(name, None)

    def synced(self, path):
        inode = self._lookup(path)
        if inode is None:
            return
        if inode[0] == "dir":
            self.durable[inode] = dict(self.entries[inode])
        else:
            with open(path, "rb") as handle:
                self.content[inode] = handle.read()

    def write_crash_state(self, folder):
        """The folder as the disk holds it after a power cut now."""
        def write(inode, path):
            os.makedirs(path, exist_ok=True)
            for name, child in self.durable[inode].items():
                if child[0] == "dir":
                    write(child, os.path.join(path, name))
                else:
                    with open(os.path.join(path, name), "wb") as handle:
                        handle.write(self.content[child])
        write(self.top, folder)


def _path(path, dir_fd=None):
    path = os.fsdecode(path)
    if dir_fd is not None and not os.path.isabs(path):
        return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    return os.path.abspath(path)


def record(monkeypatch, disk, after_each):
    """Patch the os calls that change the disk to update ``disk``, then call ``after_each()``."""
    real = {name: getattr(os, name) for name in ("open", "fsync", "replace", "rename", "mkdir", "unlink", "rmdir")}

    def opened(path, flags, mode=0o777, *, dir_fd=None):
        full, existed = _path(path, dir_fd), None
        if flags & os.O_CREAT:
            existed = os.path.lexists(full)
        fd = real["open"](path, flags, mode, dir_fd=dir_fd)
        if flags & (os.O_WRONLY | os.O_RDWR) and (flags & os.O_TRUNC or (flags & os.O_CREAT and not existed)):
            disk.created(full, bool(flags & os.O_TRUNC))
            after_each()
        return fd

    def fsync(fd):
        real["fsync"](fd)
        disk.synced(os.readlink(f"/proc/self/fd/{fd}"))
        after_each()

    def moved(name):
        def call(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
            real[name](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            disk.renamed(_path(src, src_dir_fd), _path(dst, dst_dir_fd))
            after_each()
        return call

    def made(path, mode=0o777, *, dir_fd=None):
        real["mkdir"](path, mode, dir_fd=dir_fd)
        disk.made_dir(_path(path, dir_fd))
        after_each()

    def gone(name):
        def call(path, *, dir_fd=None):
            full = _path(path, dir_fd)
            real[name](path, dir_fd=dir_fd)
            disk.removed(full)
            after_each()
        return call

    for name, call in (("open", opened), ("fsync", fsync), ("replace", moved("replace")), ("rename", moved("rename")),
                       ("mkdir", made), ("unlink", gone("unlink")), ("rmdir", gone("rmdir"))):
        monkeypatch.setattr(os, name, call)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_engine_config_path):
    """A built index of six images, the gallery minus one image (a rebuild that reuses every row
    and commits a new generation), models loaded once."""
    from cgrs_ros.models import load_models

    root = tmp_path_factory.mktemp("crash")
    config = load_engine_config(tiny_engine_config_path)
    config = replace(config, index=replace(config.index, chunk_size=2))
    manifest = make_gallery(root / "g", views=1)
    rows = manifest.read_text().splitlines()
    edited = root / "g" / "edited.jsonl"
    edited.write_text("\n".join(rows[:-1]) + "\n")
    models = load_models(config)
    build_index(read_manifest(manifest), config, root / "old", models=models, progress=False)
    new = root / "new"
    shutil.copytree(root / "old", new)
    build_index(read_manifest(edited), config, new, models=models, progress=False)
    yield {"config": config, "models": models, "edited": read_manifest(edited), "root": root,
           "old": snapshot(load_index(root / "old")), "new": snapshot(load_index(new))}
    models.close()


def crash_states(setup, tmp_path, monkeypatch):
    """Rebuild a copy of the old index into the new one, writing the crash state after every step;
    returns how each loads: "old", "new", or why not."""
    out = tmp_path / "idx"
    shutil.copytree(setup["root"] / "old", out)
    disk, events = Disk(out), []

    def after_each():
        events.append(None)
        _write_state(disk, tmp_path, len(events))

    with monkeypatch.context() as patch:
        record(patch, disk, after_each)
        build_index(setup["edited"], setup["config"], out, models=setup["models"], progress=False)
    seen = []
    for number in range(1, len(events) + 1):
        folder = tmp_path / f"crash_{number:04d}"
        try:
            now = snapshot(load_index(folder))
            seen.append("old" if now == setup["old"] else "new" if now == setup["new"] else "a mix")
        except CGRSInputError as exc:
            seen.append(f"step {number}: {exc}")
        shutil.rmtree(folder)
    return seen


_REAL = {name: getattr(os, name) for name in ("open", "fsync", "replace", "rename", "mkdir", "unlink", "rmdir")}


def _write_state(disk, tmp_path, number):
    """Write the crash state with the real os calls (the patched ones would record it too)."""
    patched = {name: getattr(os, name) for name in _REAL}
    for name, call in _REAL.items():
        setattr(os, name, call)
    try:
        disk.write_crash_state(tmp_path / f"crash_{number:04d}")
    finally:
        for name, call in patched.items():
            setattr(os, name, call)


def test_every_crash_state_of_a_rebuild_opens_as_the_old_or_the_new_index(setup, tmp_path, monkeypatch):
    seen = crash_states(setup, tmp_path, monkeypatch)
    assert len(seen) > 40
    bad = [s for s in seen if s not in ("old", "new")]
    assert not bad, bad[:3]
    assert seen[0] == "old" and seen[-1] == "new"
    switch = seen.index("new")
    assert set(seen[:switch]) == {"old"} and set(seen[switch:]) == {"new"}


def _written_in_place(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def test_the_check_fails_a_build_that_writes_index_json_in_place(setup, tmp_path, monkeypatch):
    real = index_module.write_text_atomic

    def commit_in_place(path, text):
        return (_written_in_place if path.name == "index.json" else real)(path, text)

    monkeypatch.setattr(index_module, "write_text_atomic", commit_in_place)
    seen = crash_states(setup, tmp_path, monkeypatch)
    assert any(s not in ("old", "new") for s in seen)


def test_the_check_fails_a_build_that_does_not_sync_its_data_folder_before_the_rename(setup, tmp_path, monkeypatch):
    real = index_module.fsync_dir
    monkeypatch.setattr(index_module, "fsync_dir", lambda path: None if path.name == "data" else real(path))
    seen = crash_states(setup, tmp_path, monkeypatch)
    assert any(s not in ("old", "new") for s in seen)
