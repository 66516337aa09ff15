"""Index builds in worker processes of this machine (``cgrs-index --workers N``): the same index as
one process, chunks from each worker, and a worker that dies costs only the unfinished chunks."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cgrs_ros.build_workers import ChunkWorker, ProcessEncoder
from cgrs_ros.config import load_engine_config
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import read_manifest
from cgrs_ros.index import build_index
from index_checks import assert_same_as_a_local_build

DIE_ON = "CGRS_TEST_DIE_ON_CHUNK"      # read by the worker processes, which inherit the environment
GATE = "CGRS_TEST_GATE"                # a folder: a HeldWorker waits in each chunk until "release" is in it


class DyingWorker(ChunkWorker):
    """A worker whose process exits in the middle of the chunk named by $CGRS_TEST_DIE_ON_CHUNK, as
    one killed by the out-of-memory killer would (no exception reaches the pool)."""

    def encode(self, stem, gallery, part):
        if stem.endswith(os.environ[DIE_ON]):
            os._exit(1)
        return super().encode(stem, gallery, part)


class HeldWorker(ChunkWorker):
    """A worker that marks each chunk it starts in $CGRS_TEST_GATE and holds it until the test releases it."""

    def encode(self, stem, gallery, part):
        gate = Path(os.environ[GATE])
        (gate / f"started-{Path(stem).name}").touch()
        while not (gate / "release").exists():
            time.sleep(0.05)
        return super().encode(stem, gallery, part)


def test_two_worker_processes_build_the_same_index_as_one_process(capsys, tiny_gallery, chunks_of_3, tmp_path):
    from cgrs_ros.cli.index import main

    assert main(["--gallery", str(tiny_gallery), "--config", str(chunks_of_3), "--out", str(tmp_path / "two"),
                 "--workers", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "6 chunks encoded by 2 worker processes" in out and "18 encoded, 0 reused" in out, out
    config, gallery = load_engine_config(chunks_of_3), read_manifest(tiny_gallery)
    assert_same_as_a_local_build(config, gallery, tmp_path / "two", tmp_path / "local")


def test_a_worker_process_that_dies_stops_the_build_and_a_rerun_resumes(monkeypatch, tiny_gallery, chunks_of_3,
                                                                          tmp_path):
    config, gallery = load_engine_config(chunks_of_3), read_manifest(tiny_gallery)
    monkeypatch.setenv(DIE_ON, "chunk_00004")
    with pytest.raises(CGRSInputError, match=r"a build worker process died .* the [0-5] chunks finished are kept "
                                             r"in .*chunks and a rerun resumes from them"):
        build_index(gallery, config, tmp_path / "idx", progress=False, encoder=ProcessEncoder(2, DyingWorker))
    assert not (tmp_path / "idx" / "index.json").exists()               # nothing committed
    kept = len(list((tmp_path / "idx" / ".build" / "chunks").glob("*.json")))
    assert 1 <= kept <= 5
    monkeypatch.setenv(DIE_ON, "no chunk")
    encoder = ProcessEncoder(2, DyingWorker)
    meta = build_index(gallery, config, tmp_path / "idx", progress=False, encoder=encoder)
    assert meta["encoded"] == 18 - 3 * kept and meta["reused"] == 3 * kept
    assert sum(encoder.chunks_by_worker.values()) == 6 - kept
    assert_same_as_a_local_build(config, gallery, tmp_path / "idx", tmp_path / "local")


def test_ctrl_c_finishes_and_keeps_the_chunks_in_progress_and_starts_no_other(tiny_gallery, chunks_of_3, tmp_path):
    """Ctrl-C in a terminal reaches the whole process group: the workers must not die of it in the
    middle of a chunk, and the build must stop without starting the chunks still waiting."""
    gate, out = tmp_path / "gate", tmp_path / "idx"
    gate.mkdir()
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "from test_build_workers import HeldWorker\n"
              "from cgrs_ros.build_workers import ProcessEncoder\n"
              "from cgrs_ros.config import load_engine_config\n"
              "from cgrs_ros.gallery import read_manifest\n"
              "from cgrs_ros.index import build_index\n"
              f"build_index(read_manifest({str(tiny_gallery)!r}), load_engine_config({str(chunks_of_3)!r}), "
              f"{str(out)!r}, progress=False, encoder=ProcessEncoder(2, HeldWorker))\n")
    build = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, GATE: str(gate)},
                             start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(gate.glob("started-*"))) < 2 and build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(list(gate.glob("started-*"))) == 2, build.stderr.read() if build.poll() is not None else "timeout"
        os.killpg(build.pid, signal.SIGINT)          # what Ctrl-C in its terminal does
        time.sleep(1.0)
        (gate / "release").touch()
        _, stderr = build.communicate(timeout=120)
    finally:
        if build.poll() is None:
            os.killpg(build.pid, signal.SIGKILL)
    assert build.returncode != 0 and "KeyboardInterrupt" in stderr, stderr[-2000:]
    assert sorted(p.name for p in gate.glob("started-*")) == ["started-chunk_00000", "started-chunk_00001"]
    assert sorted(p.name for p in (out / ".build" / "chunks").glob("*.json")) == ["chunk_00000.json",
                                                                               "chunk_00001.json"]
    assert not (out / "index.json").exists()
    meta = build_index(read_manifest(tiny_gallery), load_engine_config(chunks_of_3), out, progress=False)
    assert meta["encoded"] == 12 and meta["reused"] == 6


def test_a_model_that_will_not_load_in_a_worker_is_reported_as_it_is(tiny_gallery, chunks_of_3, tmp_path):
    """The models load in each worker's first chunk: their error reaches the caller unchanged."""
    settings = yaml.safe_load(chunks_of_3.read_text())
    settings["captioner"]["model"] = str(tmp_path / "no_such_captioner")
    broken = chunks_of_3.parent / "broken_captioner.yaml"
    broken.write_text(yaml.safe_dump(settings))
    with pytest.raises(CGRSInputError, match="no_such_captioner"):
        build_index(read_manifest(tiny_gallery), load_engine_config(broken), tmp_path / "idx", progress=False,
                    encoder=ProcessEncoder(2))


@pytest.mark.parametrize("workers", [0, -1, 1.5])
def test_worker_counts_below_one_are_refused(workers):
    with pytest.raises(CGRSInputError, match="workers must be a whole number of at least 1"):
        ProcessEncoder(workers)


def _group(pgid: int) -> dict[int, str]:
    """pid -> command line of the live (not zombie) processes of process group ``pgid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found[int(entry.name)] = command
    return found


def _holds(pid: int, file: Path) -> bool:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == str(file):
                return True
        except OSError:
            pass
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_build_leaves_no_worker_and_the_workers_hold_the_lock(tiny_gallery, chunks_of_3, tmp_path):
    """A build killed with SIGKILL runs no clean-up: its workers must die with it (not go on
    holding their models, blocked on a task pipe), and while they live they hold the lock, so a
    rerun cannot start beside them."""
    gate, out = tmp_path / "gate", tmp_path / "idx"
    gate.mkdir()
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "from test_build_workers import HeldWorker\n"
              "from cgrs_ros.build_workers import ProcessEncoder\n"
              "from cgrs_ros.config import load_engine_config\n"
              "from cgrs_ros.gallery import read_manifest\n"
              "from cgrs_ros.index import build_index\n"
              f"build_index(read_manifest({str(tiny_gallery)!r}), load_engine_config({str(chunks_of_3)!r}), "
              f"{str(out)!r}, progress=False, encoder=ProcessEncoder(2, HeldWorker))\n")
    build = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, GATE: str(gate)},
                             start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(gate.glob("started-*"))) < 2 and build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(list(gate.glob("started-*"))) == 2, build.stderr.read() if build.poll() is not None else "timeout"
        workers = [pid for pid, command in _group(build.pid).items() if pid != build.pid and "spawn_main" in command]
        assert len(workers) == 2, _group(build.pid)
        assert all(_holds(pid, out / ".lock") for pid in workers)
        os.kill(build.pid, signal.SIGKILL)
        build.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _group(build.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group(build.pid) == {}
    finally:
        for pid in _group(build.pid):
            os.kill(pid, signal.SIGKILL)
        if build.poll() is None:
            build.kill()
    meta = build_index(read_manifest(tiny_gallery), load_engine_config(chunks_of_3), out, progress=False)
    assert meta["count"] == 18
