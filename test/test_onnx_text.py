"""Text encoders on ONNX Runtime (``text_runtime``): the real embedded CLIP text tower and the real
all-MiniLM-L6-v2, exported, cached and checked; they must give torch's vectors and rankings (``onnx``),
or vectors that point where torch's do (``onnx_int8``)."""
import logging

import numpy as np
import pytest
import torch

from cgrs_ros.config import load_engine_config
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.models import REGISTRIES
from cgrs_ros.models.onnx_text import OnnxTextEncoder, PositionalInputs, cache_folder, onnx_or_none

pytest.importorskip("onnxruntime")

TEXTS = ["the red-roofed hall just north of the round pool", "a lake",
         "I am looking for the house just south of a pond; it also has a grove to its east.",
         "a tall white tower next to a parking lot with trees to the west"]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CGRS_HOME", str(tmp_path))
    return tmp_path / "onnx"


def build(kind: str, runtime: str, **options):
    spec = load_engine_config(device="cpu").model_spec(kind)
    return REGISTRIES[kind].build(dict(spec, text_runtime=runtime, **options))


def test_retriever_text_tower_on_onnx_gives_torchs_vectors(cache):
    onnx, plain = build("retriever", "onnx"), build("retriever", "torch")
    assert onnx._text_onnx is not None and plain._text_onnx is None
    np.testing.assert_allclose(onnx.encode_texts(TEXTS), plain.encode_texts(TEXTS), atol=1e-5)
    for text in TEXTS:                                       # one query at a time: the node's case
        np.testing.assert_allclose(onnx.encode_texts([text]), plain.encode_texts([text]), atol=1e-5)
    assert len(list(cache.glob("*.onnx"))) == 1
    # torch's copy of the text tower is freed (the session holds the weights); the image tower stays
    assert next(onnx.model.text.parameters()).device.type == "meta"
    assert next(onnx.model.visual.parameters()).device.type == "cpu"


def test_clause_matcher_on_onnx_gives_torchs_scores(cache):
    onnx, plain = build("text_similarity", "onnx"), build("text_similarity", "torch")
    assert onnx.encoder._onnx is not None and plain.encoder._onnx is None
    np.testing.assert_allclose(onnx.encoder.encode(TEXTS), plain.encoder.encode(TEXTS), atol=1e-5)
    captions = ["a red-roofed hall with a round pool to the south", "a lake to the north of the building",
                "a green roof, trees to the east", "a red-roofed hall with a round pool to the north"]
    got, expected = (m.score(TEXTS[0], captions) for m in (onnx, plain))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert list(np.argsort(-got)) == list(np.argsort(-expected))
    assert onnx.encoder.encode([]).shape == (0, onnx.encoder.embedding_dim)
    assert next(onnx.encoder.model.parameters()).device.type == "meta"      # freed: only ONNX reads it


def test_a_second_load_reuses_the_export_and_a_corrupt_one_is_replaced(cache):
    first = build("retriever", "onnx")
    (exported,) = cache.glob("*.onnx")
    inode = exported.stat().st_ino
    build("retriever", "onnx")
    assert exported.stat().st_ino == inode                      # opened, not exported again (a new file)
    exported.write_bytes(b"not an onnx model")
    again = build("retriever", "onnx")
    assert again._text_onnx is not None and exported.stat().st_size > 1_000_000
    np.testing.assert_allclose(again.encode_texts(TEXTS), first.encode_texts(TEXTS), atol=1e-5)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_int8_text_encoders_have_int8_products_point_where_torchs_vectors_do_and_ignore_batch_mates(cache):
    import onnx

    retriever, plain = build("retriever", "onnx_int8"), build("retriever", "torch")
    matcher, plain_matcher = build("text_similarity", "onnx_int8"), build("text_similarity", "torch")
    assert retriever.text_runtime == matcher.text_runtime == "onnx_int8"
    exports = sorted(cache.glob("*.onnx"))
    assert len(exports) == 2 and all(path.name.endswith(".int8.onnx") for path in exports)
    for path in exports:            # the weights' products run in int8; attention's stay fp32
        operators = [node.op_type for node in onnx.load(str(path)).graph.node]
        assert operators.count("MatMulInteger") >= 36, path.name     # 6 layers x 6 weight products
    for got, expected in ((retriever.encode_texts(TEXTS), plain.encode_texts(TEXTS)),
                          (matcher.encoder.encode(TEXTS), plain_matcher.encoder.encode(TEXTS))):
        assert cosines(got, expected).min() > 0.95      # CLIP: min 0.953, mean 0.991 on the validation goals
        assert np.abs(got - expected).max() > 1e-4          # really quantised, not torch's numbers
    captions = ["a red-roofed hall with a round pool to the south", "a lake to the north of the building",
                "a green roof, trees to the east", "a red-roofed hall with a round pool to the west"]
    got, expected = (m.score(TEXTS[0], captions) for m in (matcher, plain_matcher))
    assert np.argmax(got) == np.argmax(expected) == 0
    # a text's int8 vector is its own: alone (a node's goal) or among others of other lengths (an
    # evaluation's batch), the same numbers; activations scaled per call made them differ (issue 34)
    for encode in (retriever.encode_texts, matcher.encoder.encode):
        together = encode(TEXTS)
        for row, text in enumerate(TEXTS):
            np.testing.assert_allclose(encode([text])[0], together[row], atol=1e-6)
    build("retriever", "onnx")      # the fp32 export is a file of its own beside the int8 one
    assert len(list(cache.glob("*.onnx"))) == 3


class _PointsAnywhere(torch.nn.Module):
    """A forward whose direction the export cannot reproduce (fresh noise every call)."""

    def forward(self, tokens):
        return torch.randn(tokens.shape) + 0 * tokens


def test_an_int8_export_that_points_away_from_torch_is_not_used(cache, caplog):
    module = PositionalInputs(_PointsAnywhere(), ["tokens"], lambda m, x: m(x["tokens"]))
    probes = [{"tokens": torch.ones(1, 16, dtype=torch.int64)}, {"tokens": torch.ones(2, 24, dtype=torch.int64)}]
    with caplog.at_level(logging.WARNING):
        assert onnx_or_none(module, probes, "noisy encoder", "onnx_int8") is None
    assert "noisy encoder: text encoder stays on torch" in caplog.text and "points away from torch's" in caplog.text


def test_an_unwritable_cache_keeps_the_export_in_memory(cache):
    cache.parent.mkdir(exist_ok=True)
    cache.write_text("a file where the cache folder should be")
    retriever = build("retriever", "onnx")
    assert retriever._text_onnx is not None


class _Noisy(torch.nn.Module):
    """A forward whose output the export cannot reproduce (fresh noise every call)."""

    def forward(self, tokens):
        return tokens.float() + torch.rand(tokens.shape)


def test_an_export_that_differs_from_torch_is_not_used(cache, caplog):
    module = PositionalInputs(_Noisy(), ["tokens"], lambda m, x: m(x["tokens"]))
    probes = [{"tokens": torch.ones(1, 3, dtype=torch.int64)}, {"tokens": torch.ones(2, 5, dtype=torch.int64)}]
    with caplog.at_level(logging.WARNING):
        assert onnx_or_none(module, probes, "noisy encoder") is None
    assert "noisy encoder: text encoder stays on torch" in caplog.text and "differs from torch" in caplog.text
    with pytest.raises(ValueError, match="differs from torch"):
        OnnxTextEncoder(module, probes)
    assert cache_folder() == cache


def test_bad_text_runtime_is_named(cache):
    with pytest.raises(CGRSInputError, match="text_runtime must be one of auto, torch, onnx, onnx_int8, got 'banana'"):
        build("retriever", "banana")


def test_onnx_asked_for_without_onnxruntime_is_a_clear_error(cache, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)       # what an install without it looks like
    with pytest.raises(CGRSInputError, match="text_runtime onnx needs onnxruntime"):
        build("text_similarity", "onnx")
    with pytest.raises(CGRSInputError, match="text_runtime onnx_int8 needs onnxruntime"):
        build("retriever", "onnx_int8")
    assert build("text_similarity", "auto").encoder._onnx is None      # auto falls back to torch


def test_the_session_follows_a_change_of_threads(cache):
    retriever = build("retriever", "onnx")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        vectors = retriever.encode_texts(TEXTS)
        assert retriever._text_onnx.session.get_session_options().intra_op_num_threads == 2
    finally:
        torch.set_num_threads(before)
    np.testing.assert_allclose(retriever.encode_texts(TEXTS), vectors, atol=1e-5)
    assert retriever._text_onnx.session.get_session_options().intra_op_num_threads == before


def test_the_cache_keeps_only_the_most_recently_used_exports(cache, monkeypatch):
    import os

    monkeypatch.setattr("cgrs_ros.models.onnx_text.KEEP_EXPORTS", 2)
    build("retriever", "onnx")
    (kept,) = cache.glob("*.onnx")
    for age, name in enumerate(("old.onnx", "older.onnx"), start=1):
        (cache / name).write_bytes(b"an export of another model")
        os.utime(cache / name, (kept.stat().st_mtime - 100 * age,) * 2)
    os.utime(kept, (kept.stat().st_mtime - 1000,) * 2)       # oldest on disk, but opened next
    build("retriever", "onnx")                                  # a hit marks it used
    build("text_similarity", "onnx")                            # a new export prunes to 2
    assert kept.is_file() and not (cache / "old.onnx").exists() and not (cache / "older.onnx").exists()
    assert len(list(cache.glob("*.onnx"))) == 2
