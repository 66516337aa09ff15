"""Distributed index build on a local 2-CPU Ray cluster: same index as a local build, chunks from 2 workers.

The cluster test is skipped where Ray is not installed (an optional extra), except where
``CGRS_REQUIRE_RAY=1`` (CI installs it: there a missing Ray is a failure, never a silent skip)."""
import os
import sys

import pytest

from cgrs_ros.config import load_engine_config
from cgrs_ros.distributed import build_index_with_ray
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import read_manifest
from index_checks import assert_same_as_a_local_build


@pytest.fixture(scope="module")
def local_cluster():
    if os.environ.get("CGRS_REQUIRE_RAY", "").lower() in ("", "0", "false"):
        ray = pytest.importorskip("ray", reason='Ray not installed (pip install "cgrs_ros[distributed]")')
    else:
        import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_without_ray_the_error_says_how_to_install_it(monkeypatch, capsys, tiny_gallery, tmp_path):
    from cgrs_ros.cli.index import main

    monkeypatch.setitem(sys.modules, "ray", None)     # import ray fails, as where it is not installed
    with pytest.raises(CGRSInputError, match=r'need Ray: pip install "cgrs_ros\[distributed\]"'):
        build_index_with_ray(read_manifest(tiny_gallery), None, tmp_path / "idx")
    command = ["--gallery", str(tiny_gallery), "--out", str(tmp_path / "idx"), "--workers", "2"]
    assert main(command + ["--ray"]) == 2 and 'pip install "cgrs_ros[distributed]"' in capsys.readouterr().err
    assert main(command + ["--gpus-per-worker", "1"]) == 2
    assert "--gpus-per-worker needs --ray" in capsys.readouterr().err


def test_two_workers_build_the_same_index_as_one_process(local_cluster, capsys, tiny_gallery,
                                                         chunks_of_3, tmp_path):
    from cgrs_ros.cli.index import main

    # the CLI keeps the fixture's connection to the 2-CPU cluster (`--ray` alone would start one)
    assert main(["--gallery", str(tiny_gallery), "--config", str(chunks_of_3), "--out", str(tmp_path / "ray"),
                 "--ray", "--workers", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "6 chunks encoded by 2 Ray workers" in out and "18 encoded, 0 reused" in out, out

    config, gallery = load_engine_config(chunks_of_3), read_manifest(tiny_gallery)
    assert_same_as_a_local_build(config, gallery, tmp_path / "ray", tmp_path / "local")


def test_a_worker_killed_mid_chunk_is_restarted_and_a_failed_build_resumes(local_cluster, monkeypatch, tiny_gallery,
                                                                          chunks_of_3, tmp_path):
    """A worker process that dies in the middle of a chunk (killed, out of memory) loses that chunk
    only: Ray restarts it and the chunk is encoded again.  A chunk that kills every worker it meets
    fails the build once the retries are spent, with an error that says so and where the finished
    chunks are, and a rerun encodes only the chunks that had not finished."""
    import cgrs_ros.distributed as distributed

    config, gallery = load_engine_config(chunks_of_3), read_manifest(tiny_gallery)
    deaths = tmp_path / "deaths"
    deaths.mkdir()

    def dying_on(chunk: str, times: int):
        class DyingWorker(distributed.ChunkWorker):     # pickled by value into the Ray workers
            def encode(self, stem, part_gallery, part):
                if stem.endswith(chunk) and len(list(deaths.iterdir())) < times:
                    (deaths / f"{os.getpid()}-{len(list(deaths.iterdir()))}").touch()
                    os._exit(1)                          # the process dies: no exception reaches Ray
                return super().encode(stem, part_gallery, part)
        return DyingWorker

    monkeypatch.setattr(distributed, "ChunkWorker", dying_on("chunk_00002", times=1))
    meta = build_index_with_ray(gallery, config, tmp_path / "once", workers=2, progress=False)
    assert len(list(deaths.iterdir())) == 1 and meta["encoded"] == 18
    assert sum(meta["chunks_by_worker"].values()) == 6
    assert_same_as_a_local_build(config, gallery, tmp_path / "once", tmp_path / "local")

    for death in deaths.iterdir():
        death.unlink()
    monkeypatch.setattr(distributed, "ChunkWorker", dying_on("chunk_00004", times=1000))
    with pytest.raises(CGRSInputError, match=r"a Ray worker died on the same chunk 3 times or more .* the [2-5] "
                                             r"chunks finished are kept in .*chunks and a rerun resumes from them"):
        build_index_with_ray(gallery, config, tmp_path / "always", workers=2, progress=False)
    assert len(list(deaths.iterdir())) >= 1 + distributed.TASK_RETRIES
    assert not (tmp_path / "always" / "index.json").exists()          # nothing committed
    monkeypatch.undo()
    meta = build_index_with_ray(gallery, config, tmp_path / "always", workers=2, progress=False)
    # chunk_00004 is handed out once two chunks have come back, so at least six images are kept
    assert meta["encoded"] <= 12 and meta["reused"] == 18 - meta["encoded"]
    assert_same_as_a_local_build(config, gallery, tmp_path / "always", tmp_path / "local")
