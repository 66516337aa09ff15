"""The engine end to end on real tiny models, plus its rerank on a hand-made index."""
import math
from pathlib import Path

import numpy as np
import pytest

from cgrs_ros.config import load_engine_config
from cgrs_ros.engine import CGRSEngine, QueryCancelled, QueryOptions
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import GalleryRecord
from cgrs_ros.index import GalleryIndex
from cgrs_ros.models import ModelSet


@pytest.fixture(scope="module")
def engine(tiny_engine_files):
    config_path, index_dir = tiny_engine_files
    engine = CGRSEngine.load(load_engine_config(config_path), index_dir)
    yield engine
    engine.close()


def test_query_returns_ranked_geo_matches(engine):
    result = engine.query("  a red   roof  ")
    assert result.query == "a red roof"
    assert result.reranked and not result.degraded
    assert [m.rank for m in result.matches] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(result.matches, result.matches[1:]))
    best = result.matches[0]
    assert best.image_path.is_file() and best.caption and not math.isnan(best.caption_score)
    assert best.has_geo and 47.36 < best.lat < 47.38
    assert set(result.timings) == {"coarse", "captions"}


def test_online_captions_are_cached(engine):
    engine.caption_cache = type(engine.caption_cache)()
    first = engine.query("a blue roof", QueryOptions(caption_mode="online", top_k=4))
    assert len(engine.caption_cache) == 4
    engine.query("a blue roof", QueryOptions(caption_mode="online", top_k=6))
    assert len(engine.caption_cache) == 6  # the first 4 were not captioned again
    assert first.status == "reranked 4 candidates with online captions"


def test_caption_mode_off_is_the_coarse_order(engine):
    result = engine.query("a green roof", QueryOptions(caption_mode="off"))
    assert not result.reranked
    assert [m.score for m in result.matches] == [m.coarse_score for m in result.matches]


def test_failing_caption_stage_degrades_to_coarse(tiny_engine_files, tmp_path):
    config_path, index_dir = tiny_engine_files
    engine = CGRSEngine.load(load_engine_config(config_path), index_dir)
    moved = []
    try:
        for row in range(len(engine.index)):  # the images vanish after indexing
            path = engine.index.image_path(row)
            moved.append((path, tmp_path / path.name))
            path.rename(tmp_path / path.name)
        result = engine.query("a red roof", QueryOptions(caption_mode="online"))
    finally:
        for original, aside in moved:
            aside.rename(original)
        engine.close()
    assert result.degraded and not result.reranked
    assert "caption stage failed (FileNotFoundError" in result.status
    assert len(result.matches) == 5
    assert [m.score for m in result.matches] == [m.coarse_score for m in result.matches]


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_query_is_refused(engine, text):
    with pytest.raises(CGRSInputError, match="empty|must be a string"):
        engine.query(text)


@pytest.mark.parametrize("options, message", [
    (QueryOptions(top_k=0), "top_k must be a positive integer"),
    (QueryOptions(fusion_weight=1.5), r"fusion_weight must be a number in \[0, 1\]"),
    (QueryOptions(caption_mode="sometimes"), "caption_mode 'sometimes'"),
])
def test_bad_options_are_named(engine, options, message):
    with pytest.raises(CGRSInputError, match=message):
        engine.query("a red roof", options)


def test_cancel_between_stages(engine):
    calls = []
    with pytest.raises(QueryCancelled, match="before captions"):
        engine.query("a red roof", should_stop=lambda: len(calls) > 0, progress=lambda s, f: calls.append(s))
    assert calls == ["coarse"]


def _unit(cosine):
    return [cosine, float(np.sqrt(1.0 - cosine ** 2))]


def test_rerank_fixes_the_coarse_order_on_a_hand_made_index(tiny_engine_config_path):
    # The query vector is [1, 0]. CLIP puts image 0 first by a hair (0.90 / 0.89 / 0.88 / 0.50);
    # only image 2's caption matches the query (caption cosines 0.1 / 0.2 / 0.9 / 0.0).
    image_vectors = np.array([_unit(c) for c in (0.90, 0.89, 0.88, 0.50)], np.float32)
    caption_vectors = np.array([_unit(c) for c in (0.1, 0.2, 0.9, 0.0)], np.float32)
    records = [GalleryRecord(f"i{i}", f"i{i}.png", f"p{i}", "drone", 47.0, 8.0, 10.0, 0.0) for i in range(4)]
    index = GalleryIndex(Path("."), {}, records, list("abcd"), image_vectors, caption_vectors, Path("/g"), [])
    engine = CGRSEngine(load_engine_config(tiny_engine_config_path), index, ModelSet())
    query = np.array([1.0, 0.0], np.float32)
    rows, coarse = engine.coarse(query, 4)
    assert rows.tolist() == [0, 1, 2, 3]
    caption_scores = caption_vectors[rows] @ query  # what the text-similarity model would return
    settings = engine.config.retrieval  # fusion_weight 0.5, z-score
    result = engine.assemble("q", rows, coarse, list("abcd"), caption_scores, settings)
    # z-scores: coarse [0.64, 0.58, 0.52, -1.73] (std 0.16903), caption [-0.57, -0.28, 1.70, -0.85] (std 0.35355)
    # fused = 0.5 * both = [0.03, 0.15, 1.11, -1.28]
    assert [m.image_id for m in result.matches] == ["i2", "i1", "i0", "i3"]
    assert result.matches[0].score == pytest.approx(0.5 * (0.0875 / 0.16903 + 0.6 / 0.35355), abs=1e-4)
    assert result.matches[0].coarse_score == pytest.approx(0.88, abs=1e-6)
    assert result.matches[0].caption_score == pytest.approx(0.9, abs=1e-6)
