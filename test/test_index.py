"""Index build: real tiny models, corrupt images skipped, kill + resume, refusal of foreign indexes."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from cgrs_ros.config import load_engine_config
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import read_manifest
from cgrs_ros.index import build_index, load_index
from tiny_gallery import make_gallery


def test_index_contents(tiny_engine_files, tiny_gallery):
    config_path, index_dir = tiny_engine_files
    index = load_index(index_dir, load_engine_config(config_path))
    assert len(index) == 18 and index.image_embeddings.shape == (18, 16)
    assert index.caption_embeddings.shape == (18, 384)
    np.testing.assert_allclose(np.linalg.norm(index.image_embeddings, axis=1), 1.0, atol=1e-5)
    assert all(isinstance(c, str) and c for c in index.captions)
    assert [r.image_id for r in index.records] == [r.image_id for r in read_manifest(tiny_gallery)]
    assert not (index_dir / ".partial").exists()
    assert index.image_path(0).is_file()


def test_corrupt_and_missing_images_are_skipped_and_listed(tmp_path, tiny_engine_config_path):
    manifest = make_gallery(tmp_path / "g", views=2)
    (tmp_path / "g" / "images" / "p00_v0.png").write_bytes(b"not a png at all")
    (tmp_path / "g" / "images" / "p01_v1.png").unlink()
    meta = build_index(read_manifest(manifest), load_engine_config(tiny_engine_config_path),
                       tmp_path / "idx", progress=False)
    assert meta["count"] == 10 and meta["skipped"] == 2
    skipped = json.loads((tmp_path / "idx" / "skipped.json").read_text())
    assert sorted(s["image_id"] for s in skipped) == ["p00_v0", "p01_v1"]
    assert all(s["reason"] for s in skipped)


def test_index_made_by_other_models_is_refused(tiny_engine_files, tmp_path):
    config_path, index_dir = tiny_engine_files
    other = yaml.safe_load(config_path.read_text())
    other["captioner"]["max_new_tokens"] = 9
    other_path = config_path.parent / "other.yaml"
    other_path.write_text(yaml.safe_dump(other))
    with pytest.raises(CGRSInputError, match=r"other models.*captioner\.max_new_tokens: index has 8, config has 9"):
        load_index(index_dir, load_engine_config(other_path))


def test_not_an_index_and_corrupt_arrays(tiny_engine_files, tmp_path):
    with pytest.raises(CGRSInputError, match="index.json is missing"):
        load_index(tmp_path)
    config_path, index_dir = tiny_engine_files
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in index_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    np.save(broken / "image_embeddings.npy", np.zeros((3, 16), np.float32))
    with pytest.raises(CGRSInputError, match=r"image_embeddings.npy has shape \(3, 16\), expected \(18, 16\)"):
        load_index(broken)
    (broken / "caption_embeddings.npy").write_bytes(b"garbage")
    np.save(broken / "image_embeddings.npy", np.zeros((18, 16), np.float32))
    with pytest.raises(CGRSInputError, match="caption_embeddings.npy is missing or corrupt"):
        load_index(broken)


def test_killed_build_resumes_where_it_stopped(tmp_path, tiny_engine_config_path):
    manifest = make_gallery(tmp_path / "g", views=30)  # 180 images, chunks of 8
    out = tmp_path / "idx"
    command = [sys.executable, "-m", "cgrs_ros.cli.index", "--gallery", str(manifest),
               "--config", str(tiny_engine_config_path), "--out", str(out), "--no-progress"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first_chunk = out / ".partial" / "chunk_00000.json"
    deadline = time.monotonic() + 120
    while not first_chunk.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first_chunk.exists(), process.stderr.read().decode()[-2000:]
    chunks_before = sorted(p.name for p in (out / ".partial").glob("chunk_*.json"))
    assert len(chunks_before) < 23, "the build finished before it could be killed"
    with pytest.raises(CGRSInputError, match="unfinished build"):
        load_index(out)

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "indexed 180 images" in done.stdout
    index = load_index(out, load_engine_config(tiny_engine_config_path))
    assert len(index) == 180
    fresh = build_index(read_manifest(manifest), load_engine_config(tiny_engine_config_path),
                        tmp_path / "fresh", progress=False)
    assert fresh["count"] == 180
    np.testing.assert_allclose(index.image_embeddings, np.load(tmp_path / "fresh" / "image_embeddings.npy"),
                               atol=1e-5)
    assert index.captions == load_index(tmp_path / "fresh").captions
    # every chunk finished before the kill was reused, not recomputed
    reused = int(done.stdout.split(";")[-1].split()[0])
    assert reused >= 8 * len(chunks_before)
    assert not (out / ".partial").exists()
