"""Index build: real tiny models, corrupt images skipped, kill + resume, refusal of foreign indexes."""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import yaml

from cgrs_ros.config import load_engine_config
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import read_manifest
from cgrs_ros.index import build_index, load_index
from tiny_gallery import make_gallery, snapshot


def test_index_contents(tiny_engine_files, tiny_gallery):
    config_path, index_dir = tiny_engine_files
    index = load_index(index_dir, load_engine_config(config_path))
    assert len(index) == 18 and index.image_embeddings.shape == (18, 16)
    assert index.caption_embeddings.shape == (18, 384)
    np.testing.assert_allclose(np.linalg.norm(index.image_embeddings, axis=1), 1.0, atol=1e-5)
    assert all(isinstance(c, str) and c for c in index.captions)
    assert [r.image_id for r in index.records] == [r.image_id for r in read_manifest(tiny_gallery)]
    assert sorted(p.name for p in index_dir.iterdir()) == [".lock", "data-0001", "index.json"]
    assert index.image_path(0).is_file()


def test_corrupt_and_missing_images_are_skipped_and_listed(tmp_path, tiny_engine_config_path):
    manifest = make_gallery(tmp_path / "g", views=2)
    (tmp_path / "g" / "images" / "p00_v0.png").write_bytes(b"not a png at all")
    (tmp_path / "g" / "images" / "p01_v1.png").unlink()
    meta = build_index(read_manifest(manifest), load_engine_config(tiny_engine_config_path),
                       tmp_path / "idx", progress=False)
    assert meta["count"] == 10 and meta["skipped"] == 2
    skipped = load_index(tmp_path / "idx").skipped
    assert sorted(s["image_id"] for s in skipped) == ["p00_v0", "p01_v1"]
    assert skipped == json.loads((tmp_path / "idx" / meta["data"] / "skipped.json").read_text())
    assert [s["reason"] for s in sorted(skipped, key=lambda s: s["image_id"])][1] == "file not found"
    assert "cannot identify image file" in [s["reason"] for s in skipped if s["image_id"] == "p00_v0"][0]


def test_index_made_by_other_models_is_refused(tiny_engine_files, tmp_path):
    config_path, index_dir = tiny_engine_files
    other = yaml.safe_load(config_path.read_text())
    other["captioner"]["max_new_tokens"] = 9
    other_path = config_path.parent / "other.yaml"
    other_path.write_text(yaml.safe_dump(other))
    with pytest.raises(CGRSInputError, match=r"other models.*captioner\.max_new_tokens: index has 8, config has 9"):
        load_index(index_dir, load_engine_config(other_path))


def test_killed_build_resumes_where_it_stopped(tmp_path, tiny_engine_config_path):
    manifest = make_gallery(tmp_path / "g", views=12)  # 72 images, chunks of 8
    out = tmp_path / "idx"
    command = [sys.executable, "-m", "cgrs_ros.cli.index", "--gallery", str(manifest),
               "--config", str(tiny_engine_config_path), "--out", str(out), "--no-progress"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first_chunk = out / ".build" / "chunks" / "chunk_00000.json"
    deadline = time.monotonic() + 120
    while not first_chunk.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first_chunk.exists(), process.stderr.read().decode()[-2000:]
    chunks_before = sorted(p.name for p in (out / ".build" / "chunks").glob("chunk_*.json"))
    assert len(chunks_before) < 9, "the build finished before it could be killed"
    with pytest.raises(CGRSInputError, match="unfinished build"):
        load_index(out)

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "indexed 72 images" in done.stdout
    index = load_index(out, load_engine_config(tiny_engine_config_path))
    fresh = build_index(read_manifest(manifest), load_engine_config(tiny_engine_config_path),
                        tmp_path / "fresh", progress=False)
    assert fresh["count"] == 72
    # resumed chunks hold the same batches as an uninterrupted build: byte-identical results
    assert snapshot(index) == snapshot(load_index(tmp_path / "fresh"))
    # every chunk finished before the kill was reused, not recomputed
    reused = int(done.stdout.split(";")[-1].split()[2])
    assert reused >= 8 * len(chunks_before)
    assert not (out / ".build").exists()


@pytest.fixture(scope="module")
def tiny_config(tiny_engine_config_path):
    return load_engine_config(tiny_engine_config_path)


def _rewrite(manifest, change):
    """Apply ``change`` to the manifest's rows (a list of dicts) and write it back."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in change(rows)))
    return read_manifest(manifest)


def test_rerun_is_a_noop_and_a_changed_gallery_is_updated_incrementally(tmp_path, tiny_config):
    manifest = make_gallery(tmp_path / "g", views=2)  # 12 images
    out = tmp_path / "idx"
    first = build_index(read_manifest(manifest), tiny_config, out, progress=False)
    assert (first["encoded"], first["up_to_date"]) == (12, False)
    old = load_index(out)

    again = build_index(read_manifest(manifest), tiny_config, out, progress=False)
    assert (again["encoded"], again["up_to_date"], again["data"]) == (0, True, "data-0001")

    # a replaced file (same path), a new image, a removed one and a metadata-only edit
    images = tmp_path / "g" / "images"
    (images / "p00_v1.png").write_bytes((images / "p05_v1.png").read_bytes())
    (images / "extra.png").write_bytes((images / "p03_v0.png").read_bytes())

    def edit(rows):
        rows = [r for r in rows if r["image_id"] != "p02_v0"]
        rows[0]["lat"] = 47.5
        return rows[:3] + [dict(rows[3], image_id="extra", path="images/extra.png")] + rows[3:]

    gallery = _rewrite(manifest, edit)
    updated = build_index(gallery, tiny_config, out, progress=False)
    assert (updated["encoded"], updated["reused"], updated["data"]) == (2, 10, "data-0002")
    index = load_index(out, tiny_config)
    assert [r.image_id for r in index.records] == [r.image_id for r in gallery.records]
    assert index.records[0].lat == 47.5 and sorted(p.name for p in out.iterdir()) == [".lock", "data-0002", "index.json"]
    row, old_row = [r.image_id for r in index.records].index, [r.image_id for r in old.records].index
    # unchanged images keep their exact vectors; the replaced file got the vector of its new content
    np.testing.assert_array_equal(index.image_embeddings[row("p04_v0")], old.image_embeddings[old_row("p04_v0")])
    np.testing.assert_allclose(index.image_embeddings[row("p00_v1")], old.image_embeddings[old_row("p05_v1")], atol=1e-5)
    assert index.captions[row("p00_v1")] == old.captions[old_row("p05_v1")]
    assert not np.allclose(index.image_embeddings[row("p00_v1")], old.image_embeddings[old_row("p00_v1")], atol=1e-3)
    np.testing.assert_allclose(index.image_embeddings[row("extra")], old.image_embeddings[old_row("p03_v0")], atol=1e-5)

    # the update equals a fresh build of the edited gallery
    build_index(gallery, tiny_config, tmp_path / "fresh", progress=False)
    fresh = load_index(tmp_path / "fresh")
    assert list(index.captions) == list(fresh.captions) and index.skipped == fresh.skipped
    np.testing.assert_allclose(index.image_embeddings, fresh.image_embeddings, atol=1e-5)
    np.testing.assert_allclose(index.caption_embeddings, fresh.caption_embeddings, atol=1e-5)


def test_images_are_decoded_upright_at_8_bit_and_downscaled(tmp_path):
    from PIL import Image
    from cgrs_ros.index import load_image

    pattern = np.zeros((40, 60), np.uint16)
    pattern[:, :30] = 60000
    pattern[10:20] = 20000
    cv2.imwrite(str(tmp_path / "grey16.png"), pattern)
    assert cv2.imread(str(tmp_path / "grey16.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    expected = np.repeat((pattern >> 8).astype(np.uint8)[..., None], 3, axis=2)
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "grey16.png")), expected)

    upright = Image.fromarray(expected).rotate(0)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored turned, tagged "rotate 270 to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "phone.png", exif=exif)
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "phone.png")), expected)

    Image.new("RGB", (900, 300), (200, 10, 10)).save(tmp_path / "big.jpg")
    assert load_image(tmp_path / "big.jpg", max_side=128).size == (128, 43)


def test_special_files_are_skipped_without_blocking(tmp_path, tiny_config):
    manifest = make_gallery(tmp_path / "g", views=1)
    fifo = tmp_path / "g" / "images" / "p01_v0.png"
    fifo.unlink()
    os.mkfifo(fifo)  # opening it for reading would wait forever for a writer
    (tmp_path / "g" / "images" / "p02_v0.png").unlink()
    (tmp_path / "g" / "images" / "p02_v0.png").mkdir()
    meta = build_index(read_manifest(manifest), tiny_config, tmp_path / "idx", progress=False)
    assert (meta["count"], meta["skipped"]) == (4, 2)
    reasons = {s["image_id"]: s["reason"] for s in load_index(tmp_path / "idx").skipped}
    assert reasons == {"p01_v0": "not a regular file (a FIFO)", "p02_v0": "not a regular file (a folder)"}


def test_a_second_build_into_the_same_folder_is_refused(tmp_path, tiny_gallery, tiny_config):
    import fcntl

    out = tmp_path / "idx"
    out.mkdir()
    with open(out / ".lock", "a") as held:  # what a running build holds
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(CGRSInputError, match="is being built by another process"):
            build_index(read_manifest(tiny_gallery), tiny_config, out, progress=False)
    assert not (out / "index.json").exists()


@pytest.mark.parametrize("old_format", [1, 2])
def test_an_index_of_a_previous_format_is_refused_then_replaced_when_the_new_one_is_complete(
        tmp_path, tiny_engine_files, tiny_gallery, tiny_config, old_format):
    _, index_dir = tiny_engine_files
    out = tmp_path / "idx"
    out.mkdir()
    old_files = ("image_embeddings.npy", "caption_embeddings.npy", "records.jsonl", "skipped.json")
    folder = out if old_format == 1 else out / "data-0001"   # format 1 kept its files in the folder itself
    folder.mkdir(exist_ok=True)
    for name in old_files:
        (folder / name).write_bytes(b"old")
    old_meta = {"format": old_format, "count": 18}
    if old_format == 1:
        (out / ".partial").mkdir()
    else:
        old_meta["data"] = "data-0001"
    (out / "index.json").write_text(json.dumps(old_meta))
    with pytest.raises(CGRSInputError, match=f"index format {old_format}, this version reads 3 and 4; rerun cgrs-index"):
        load_index(out)
    meta = build_index(read_manifest(tiny_gallery), tiny_config, out, progress=False)
    assert (meta["count"], meta["encoded"]) == (18, 18)
    assert sorted(p.name for p in out.iterdir()) == [".lock", f"data-000{old_format}", "index.json"]
    assert list(load_index(out, tiny_config).captions) == list(load_index(index_dir).captions)


def test_background_decoding_builds_the_same_index_as_inline_decoding(tmp_path, tiny_config):
    """Batches decoded ahead in threads (index.loader_threads) reach the models in gallery order,
    with unreadable images skipped the same way."""
    from dataclasses import replace

    manifest = make_gallery(tmp_path / "g", views=4)
    (tmp_path / "g" / "images" / "p01_v2.png").write_bytes(b"not a png")
    built = {}
    for threads in (0, 2):
        config = replace(tiny_config, index=replace(tiny_config.index, batch_size=3, loader_threads=threads))
        build_index(read_manifest(manifest), config, tmp_path / f"idx{threads}", progress=False)
        built[threads] = load_index(tmp_path / f"idx{threads}")
    inline, ahead = built[0], built[2]
    assert [r.image_id for r in ahead.records] == [r.image_id for r in inline.records]
    assert list(ahead.captions) == list(inline.captions) and len(ahead.skipped) == len(inline.skipped) == 1
    np.testing.assert_allclose(ahead.image_embeddings, inline.image_embeddings, atol=1e-3)


@pytest.mark.parametrize("value", [-1, 1.5, "two", True])
def test_loader_threads_is_validated(tiny_config, value):
    from dataclasses import replace

    with pytest.raises(CGRSInputError, match="index.loader_threads"):
        replace(tiny_config.index, loader_threads=value).validated()


def test_a_build_loads_the_text_model_only_where_it_stores_caption_vectors(tiny_config):
    """A cross-encoder compares texts at query time, and a clause matcher's table is made where the
    build commits (test_clause_table.py): the encoding has no use for either, nor for the retriever's
    ONNX text encoder."""
    from dataclasses import replace

    from cgrs_ros.index import load_build_models

    for name, loaded in (("sentence_transformers", True), ("clause_match", False)):
        config = replace(tiny_config, text_similarity={**tiny_config.text_similarity, "name": name})
        models = load_build_models(config)
        try:
            assert models.retriever is not None and models.captioner is not None
            assert (models.text_similarity is not None) == loaded, name
            assert models.retriever.text_runtime == "torch"      # a build encodes no query text: no ONNX export
        finally:
            models.close()
    models = load_build_models(replace(tiny_config, index=replace(tiny_config.index, captions="none")))
    assert models.retriever is not None and models.captioner is None and models.text_similarity is None
    models.close()
