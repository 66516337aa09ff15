"""Captions only where needed: builds without captions, the caption log queries write, and its
crash safety, on real tiny models (constructions and captioned images counted through the real
registries)."""
import errno
import json
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from cgrs_ros.caption_log import LOG_NAME, log_lines, read_log
from cgrs_ros.cli.index import main as cgrs_index
from cgrs_ros.config import load_engine_config
from cgrs_ros.engine import CGRSEngine, QueryOptions
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.fingerprint import caption_key
from cgrs_ros.gallery import read_manifest
from cgrs_ros.index import build_index, load_index
from tiny_gallery import make_gallery

CACHED = QueryOptions(caption_mode="cached", top_k=4, grouping="none")
ONLINE = replace(CACHED, caption_mode="online")


@pytest.fixture
def counts(monkeypatch):
    """Models the real registries build, and images the captioners caption, counted."""
    from cgrs_ros.models import CAPTIONERS, TEXT_SIMILARITIES

    counted = {"captioner": 0, "text_similarity": 0, "images": 0}

    class Captioner(CAPTIONERS.factory("image_to_text")):
        def __init__(self, *args, **kwargs):
            counted["captioner"] += 1
            super().__init__(*args, **kwargs)

        def caption(self, images):
            counted["images"] += len(images)
            return super().caption(images)

    class TextSimilarity(TEXT_SIMILARITIES.factory("sentence_transformers")):
        def __init__(self, *args, **kwargs):
            counted["text_similarity"] += 1
            super().__init__(*args, **kwargs)

    monkeypatch.setitem(CAPTIONERS._factories, "image_to_text", Captioner)
    monkeypatch.setitem(TEXT_SIMILARITIES._factories, "sentence_transformers", TextSimilarity)
    return counted


@pytest.fixture(scope="module")
def tiny_config(tiny_engine_config_path):
    return load_engine_config(tiny_engine_config_path)


@pytest.fixture(scope="module")
def bare_index(tmp_path_factory, tiny_gallery, tiny_engine_config_path):
    """An index of the tiny gallery built by ``cgrs-index --captions none`` (copied per test)."""
    out = tmp_path_factory.mktemp("bare") / "idx"
    assert cgrs_index(["--gallery", str(tiny_gallery), "--config", str(tiny_engine_config_path),
                       "--out", str(out), "--captions", "none", "--no-progress"]) == 0
    return out


@pytest.fixture
def index_dir(bare_index, tmp_path):
    return Path(shutil.copytree(bare_index, tmp_path / "idx"))


def _log(index_dir) -> Path:
    return load_index(index_dir).caption_log_file


def test_a_build_without_captions_runs_the_retriever_alone(tmp_path, tiny_gallery, tiny_engine_config_path,
                                                            tiny_config, counts, capsys):
    out = tmp_path / "idx"
    assert cgrs_index(["--gallery", str(tiny_gallery), "--config", str(tiny_engine_config_path),
                       "--out", str(out), "--captions", "none", "--no-progress"]) == 0
    assert (counts["captioner"], counts["text_similarity"]) == (0, 0)   # neither model was even built
    assert "queries caption their candidates when first needed" in capsys.readouterr().out
    index = load_index(out, tiny_config)         # the config says captions: all; the index is served
    assert not index.has_captions and index.meta["captions"] == "none"
    assert set(index.meta["fingerprint"]) == {"retriever"}
    assert index.caption_embeddings.shape == (18, 0) and set(index.captions) == {""}
    assert not index.caption_log_file.exists()
    # another captioner does not make the index foreign: only the retriever made its content
    other = replace(tiny_config, captioner=dict(tiny_config.captioner, max_new_tokens=9))
    assert len(load_index(out, other)) == 18


def test_queries_log_their_captions_and_a_restart_makes_none_again(index_dir, tiny_config, counts):
    engine = CGRSEngine.load(tiny_config, index_dir)
    try:
        first = engine.query("a red roof", CACHED)           # cached mode, no caption column: made online
        assert first.reranked and first.captioned == 4 and counts["images"] == 4
        again = engine.query("a red roof", CACHED)
        assert again.captioned == 0 and counts["images"] == 4
    finally:
        engine.close()
    lines = [json.loads(line) for line in _log(index_dir).read_text().splitlines()]
    assert len(lines) == 4 and {line["row"] for line in lines} == {m.row for m in first.matches[:4]}
    assert all(line["caption"] and line["image_id"] for line in lines)

    restarted = CGRSEngine.load(tiny_config, index_dir)
    try:
        assert len(restarted.caption_cache) == 4
        result = restarted.query("a red roof", CACHED)
        assert result.captioned == 0 and counts["images"] == 4
        assert [m.caption for m in result.matches] == [m.caption for m in first.matches]
        assert [m.score for m in result.matches] == pytest.approx([m.score for m in first.matches], nan_ok=True)
        online = restarted.query("a red roof", ONLINE)     # online mode reads the same log
        assert online.captioned == 0
    finally:
        restarted.close()


def test_coarse_and_off_never_caption(index_dir, tiny_config, counts):
    engine = CGRSEngine.load(tiny_config, index_dir)
    try:
        result = engine.query("a red roof", replace(CACHED, caption_mode="off"))
        assert not result.reranked and result.captioned == 0 and counts["images"] == 0
    finally:
        engine.close()
    assert not _log(index_dir).exists()


def test_a_torn_last_line_is_skipped_with_a_warning(index_dir, tiny_config, caplog):
    engine = CGRSEngine.load(tiny_config, index_dir)
    try:
        engine.query("a red roof", CACHED)
    finally:
        engine.close()
    log = _log(index_dir)
    data = log.read_bytes()
    log.write_bytes(data[:len(data) - 20])              # killed in the middle of the last line
    with caplog.at_level(logging.WARNING, logger="cgrs_ros.caption_log"):
        engine = CGRSEngine.load(tiny_config, index_dir)
    try:
        assert "skipped 1 damaged or torn line(s)" in caplog.text and "read 3 caption(s)" in caplog.text
        assert len(engine.caption_cache) == 3
        assert engine.query("a red roof", CACHED).captioned == 1       # only the torn one again
    finally:
        engine.close()
    # the next append started a new line: the torn piece is the only bad line
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cgrs_ros.caption_log"):
        engine = CGRSEngine.load(tiny_config, index_dir)
    engine.close()
    assert len(engine.caption_cache) == 4 and "skipped 1 damaged or torn line(s)" in caplog.text


def test_a_corrupt_line_anywhere_is_skipped(index_dir, tiny_config, caplog):
    index = load_index(index_dir)
    good = log_lines([(0, index.image_id(0), "a red roof"), (1, index.image_id(1), "a blue roof")],
                     caption_key(tiny_config))
    first, second = good.splitlines(keepends=True)
    _log(index_dir).write_bytes(first.replace(b"red", b"rod") + b"not json\n" + second
                                + log_lines([(2, "no-such-image", "x")], caption_key(tiny_config)))
    with caplog.at_level(logging.WARNING, logger="cgrs_ros.caption_log"):
        logged = read_log(_log(index_dir), caption_key(tiny_config), index.image_id, len(index))
    assert logged == {1: "a blue roof"}
    assert "skipped 3 damaged or torn line(s) (line 1: checksum mismatch)" in caplog.text


def test_captions_of_another_captioner_are_ignored(index_dir, tiny_config, counts):
    engine = CGRSEngine.load(tiny_config, index_dir)
    try:
        engine.query("a red roof", CACHED)
    finally:
        engine.close()
    other = replace(tiny_config, captioner=dict(tiny_config.captioner, max_new_tokens=9))
    engine = CGRSEngine.load(other, index_dir)
    try:
        assert len(engine.caption_cache) == 0
        assert engine.query("a red roof", CACHED).captioned == 4
    finally:
        engine.close()
    keys = {json.loads(line)["key"] for line in _log(index_dir).read_text().splitlines()}
    assert len(keys) == 2          # both captioners' lines are kept; each engine reads its own


def test_a_read_only_index_folder_still_answers(index_dir, tiny_config, caplog, monkeypatch):
    data = load_index(index_dir).data_dir
    data.chmod(0o555)
    if os.geteuid() == 0:   # root writes through file modes: refuse writes there as a read-only mount would
        real_open = os.open

        def read_only(path, flags, *args, **kwargs):
            if Path(path).parent == data and flags & (os.O_WRONLY | os.O_RDWR):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", read_only)
    try:
        engine = CGRSEngine.load(tiny_config, index_dir)
        with caplog.at_level(logging.WARNING, logger="cgrs_ros.caption_log"):
            first = engine.query("a red roof", CACHED)
            second = engine.query("a green roof", replace(CACHED, top_k=8))
            third = engine.query("a red roof", CACHED)
        engine.close()
    finally:
        data.chmod(0o755)
    assert first.reranked and not first.degraded and first.captioned == 4
    assert second.reranked and third.captioned == 0            # kept in memory
    assert caplog.text.count("cannot write the caption log") == 1
    assert not (data / LOG_NAME).exists()


def test_a_rebuild_carries_logged_captions_and_folds_them_into_a_captioned_index(
        tmp_path, tiny_config, counts):
    manifest = make_gallery(tmp_path / "g", views=2)    # 12 images
    out = tmp_path / "idx"
    bare = replace(tiny_config, index=replace(tiny_config.index, captions="none"))
    build_index(read_manifest(manifest), bare, out, progress=False)
    engine = CGRSEngine.load(tiny_config, out)
    try:
        logged = {m.image_id: m.caption for m in engine.query("a red roof", CACHED).matches[:4]}
    finally:
        engine.close()

    # a new image first in the manifest: every row number moves
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    (tmp_path / "g" / "images" / "extra.png").write_bytes((tmp_path / "g" / "images" / "p03_v0.png").read_bytes())
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [dict(rows[0], image_id="extra", path="images/extra.png")]
                                                             + rows))
    updated = build_index(read_manifest(manifest), bare, out, progress=False)
    assert (updated["encoded"], updated["data"]) == (1, "data-0002") and counts["images"] == 4
    index = load_index(out)
    carried = read_log(index.caption_log_file, caption_key(tiny_config), index.image_id, len(index))
    assert index.image_id(0) == "extra" and {index.image_id(r): c for r, c in carried.items()} == logged

    captioned = build_index(read_manifest(manifest), tiny_config, out, progress=False)
    assert captioned["captions"] == "all" and captioned["encoded"] == 13
    assert counts["images"] == 4 + 13 - len(logged)                # the logged captions were not made again
    index = load_index(out, tiny_config)
    by_id = dict(zip((index.image_id(r) for r in range(len(index))), index.captions))
    assert all(by_id[image_id] == caption for image_id, caption in logged.items())
    assert all(index.captions) and index.caption_embeddings.shape == (13, 384)
    np.testing.assert_allclose(np.linalg.norm(index.caption_embeddings, axis=1), 1.0, atol=1e-2)

    # and back to no captions: the column's captions become the new generation's log
    back = build_index(read_manifest(manifest), bare, out, progress=False)
    assert back["encoded"] == 0 and counts["images"] == 4 + 13 - len(logged)
    engine = CGRSEngine.load(tiny_config, out)
    try:
        assert len(engine.caption_cache) == 13 and engine.query("a blue roof", CACHED).captioned == 0
    finally:
        engine.close()


def test_bad_captions_setting_is_named(tmp_path, tiny_gallery, tiny_engine_config_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cgrs_index(["--gallery", str(tiny_gallery), "--config", str(tiny_engine_config_path),
                    "--out", str(tmp_path / "idx"), "--captions", "bogus"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err      # the wording of the choices varies with the Python version
    assert "argument --captions: invalid choice: 'bogus' (choose from " in error and "none" in error
    data = yaml.safe_load(tiny_engine_config_path.read_text())
    data["index"]["captions"] = "some"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(CGRSInputError, match=r"index\.captions 'some'; use one of \('all', 'none'\)"):
        load_engine_config(bad)
