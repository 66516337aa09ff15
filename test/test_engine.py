"""The engine end to end on real tiny models, plus its rerank on a hand-made index."""
import math
from dataclasses import replace
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
    assert [p.rank for p in result.places] == list(range(1, len(result.places) + 1))
    assert all(a.score >= b.score for a, b in zip(result.places, result.places[1:]))
    assert len({p.place_id for p in result.places}) == len(result.places)          # distinct places
    # each place brings all of its views (3 in the tiny gallery), best first; the image ranking
    # starts with the best view of every place in place order
    assert all(p.n_views == 3 and {v.place_id for v in p.views} == {p.place_id} for p in result.places)
    assert [m.image_id for m in result.matches[:len(result.places)]] == [p.best.image_id for p in result.places][:5]
    best = result.places[0].best
    assert best.image_path.is_file() and best.caption and not math.isnan(best.caption_score)
    assert best.has_geo and 47.36 < best.lat < 47.38
    assert set(result.timings) == {"encode", "search", "captions", "rerank", "assemble", "confidence", "total"}
    assert sum(v for k, v in result.timings.items() if k != "total") <= result.timings["total"]


def test_online_captions_are_cached(engine):
    engine.caption_cache = type(engine.caption_cache)()
    first = engine.query("a blue roof", QueryOptions(caption_mode="online", top_k=4, grouping="none"))
    assert len(engine.caption_cache) == 4
    engine.query("a blue roof", QueryOptions(caption_mode="online", top_k=6, grouping="none"))
    assert len(engine.caption_cache) == 6  # the first 4 were not captioned again
    assert first.status == "reranked 4 candidate places with online captions"


def test_batch_evaluation_ranks_exactly_as_the_engine_answers(engine):
    """Every published recall comes from rank_all: it must be the node's own ranking, query by query."""
    from cgrs_ros.evaluation import rank_all

    texts = ["a red roof", "blue", "a green building", "yellow roof near a white one"]
    for grouping in ("place_id", "none", "visual"):
        settings = replace(engine.config.retrieval, grouping=grouping, max_results=5)
        rankings, _ = rank_all(engine, texts, ["cached"], settings, depth=5, progress=False)
        for text, rows in zip(texts, rankings["cached"]):
            served = engine.query(text, QueryOptions(grouping=grouping, max_results=5))
            assert [m.row for m in served.matches] == rows[:5].tolist(), (grouping, text)


def test_a_ranking_deeper_than_its_candidate_places_goes_on_in_the_coarse_order(engine):
    """Asked for more rows than the candidate places hold (an evaluation depth), the ranking lists the
    reranked views, then the next coarse matches, best first, with no fused or caption score."""
    text = "a red roof"
    vector = engine.models.retriever.encode_texts([text])[0]
    settings = replace(engine.config.retrieval, top_k=2, grouping="none", caption_mode="cached")
    ranking = engine.rank(vector, text, settings, 8)
    head = sum(len(place.rows) for place in ranking.places)
    assert head == 2 and len(ranking.rows) == 8 and len(set(ranking.rows.tolist())) == 8
    coarse = engine.coarse(vector, 8).tolist()
    assert ranking.rows[head:].tolist() == [row for row in coarse if row not in ranking.rows[:head].tolist()][:6]
    assert np.isnan(ranking.fused[head:]).all() and np.isnan(ranking.caption[head:]).all()
    assert not np.isnan(ranking.fused[:head]).any()
    assert np.allclose(ranking.coarse, engine.coarse_scores(vector, ranking.rows))
    # no deeper than the places: no tail
    assert len(engine.rank(vector, text, settings, 2).rows) == 2


def test_caption_mode_off_is_the_coarse_order(engine):
    result = engine.query("a green roof", QueryOptions(caption_mode="off"))
    assert not result.reranked
    assert [m.score for m in result.matches] == [m.coarse_score for m in result.matches]


def test_failing_caption_stage_degrades_to_coarse(tiny_engine_files, tmp_path):
    config_path, index_dir = tiny_engine_files
    engine = CGRSEngine.load(load_engine_config(config_path), index_dir)
    engine.caption_cache = type(engine.caption_cache)()   # nothing remembered (other tests log captions here)
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


class VectorMatcher:
    """Scores captions by their stored vectors against a fixed query vector: a stand-in for the
    text model in this unit test of the rerank arithmetic (the models are tested elsewhere)."""

    embeds_captions = True

    def __init__(self, query_vector):
        self.query_vector = np.asarray(query_vector, np.float32)

    def score(self, query, captions, caption_vectors, compass=None):
        return caption_vectors @ self.query_vector


def _hand_made_engine(config_path, place_ids):
    # The query vector is [1, 0]. CLIP puts image 0 first by a hair (0.90 / 0.89 / 0.88 / 0.50);
    # only image 2's caption matches the query (caption cosines 0.1 / 0.2 / 0.9 / 0.0).
    image_vectors = np.array([_unit(c) for c in (0.90, 0.89, 0.88, 0.50)], np.float32)
    caption_vectors = np.array([_unit(c) for c in (0.1, 0.2, 0.9, 0.0)], np.float32)
    records = [GalleryRecord(f"i{i}", f"i{i}.png", place, "drone", 47.0, 8.0, 10.0, 0.0)
               for i, place in enumerate(place_ids)]
    index = GalleryIndex(Path("."), {}, records, list("abcd"), image_vectors, caption_vectors, Path("/g"), [])
    return CGRSEngine(load_engine_config(config_path), index, ModelSet(text_similarity=VectorMatcher([1.0, 0.0])))


def test_rerank_fixes_the_coarse_order_on_a_hand_made_index(tiny_engine_config_path):
    engine = _hand_made_engine(tiny_engine_config_path, ["p0", "p1", "p2", "p3"])
    query = np.array([1.0, 0.0], np.float32)
    assert engine.coarse(query, 4).tolist() == [0, 1, 2, 3]
    settings = replace(engine.config.retrieval, top_k=4, fusion_weight=0.5, normalization="zscore", place_views=1)
    result = engine.assemble("q", engine.rank(query, "q", settings, 4), settings)
    # z-scores: coarse [0.64, 0.58, 0.52, -1.73] (std 0.16903), caption [-0.57, -0.28, 1.70, -0.85] (std 0.35355)
    # fused = 0.5 * both = [0.03, 0.15, 1.11, -1.28]; one view per place, so places rank the same
    assert [m.image_id for m in result.matches] == ["i2", "i1", "i0", "i3"]
    assert [p.place_id for p in result.places] == ["p2", "p1", "p0", "p3"]
    assert result.matches[0].score == pytest.approx(0.5 * (0.0875 / 0.16903 + 0.6 / 0.35355), abs=1e-4)
    assert result.matches[0].coarse_score == pytest.approx(0.88, abs=1e-6)
    assert result.matches[0].caption_score == pytest.approx(0.9, abs=1e-6)


def test_the_image_ranking_lists_each_places_best_view_then_the_rest_in_place_order(tiny_engine_config_path):
    # Place A (images 0, 3: captions 0.1, 0.0) appears first in the coarse order, but place B
    # (images 1, 2: captions 0.2, 0.9) ranks first: the images are B's and A's best views, then B's
    # other view, then A's, each place's views best first.
    engine = _hand_made_engine(tiny_engine_config_path, ["A", "B", "B", "A"])
    query = np.array([1.0, 0.0], np.float32)
    settings = replace(engine.config.retrieval, top_k=4, fusion_weight=1.0, normalization="none", place_views=1)
    ranking = engine.rank(query, "q", settings, 4)
    assert [(round(p.score, 6), p.rows.tolist()) for p in ranking.places] == [(0.9, [2, 1]), (0.1, [0, 3])]
    assert ranking.rows.tolist() == [2, 0, 1, 3]
    assert ranking.captions == ["c", "a", "b", "d"]


def test_a_place_is_judged_on_all_of_its_views(tiny_engine_config_path):
    # Images 0 and 3 are two views of place A: CLIP finds A only through image 0 (top_k 2 keeps
    # images 0 and 1), yet A's weak view 3 joins the evidence.  With place_views 2 the caption
    # score of A is the mean of its two views (0.1 and 0.0), of B its one view (0.2).
    engine = _hand_made_engine(tiny_engine_config_path, ["A", "B", "C", "A"])
    query = np.array([1.0, 0.0], np.float32)
    settings = replace(engine.config.retrieval, top_k=2, fusion_weight=1.0, normalization="none", place_views=2)
    ranking = engine.rank(query, "q", settings, 2)
    assert [(round(p.score, 6), p.rows.tolist()) for p in ranking.places] == [(0.2, [1]), (0.05, [0, 3])]
    assert ranking.rows.tolist() == [1, 0, 3]   # best view of each place first, then the rest
