"""The clause matcher (``text_similarity: clause_match``): with the real MiniLM it tells which landmark
a caption puts on which side, which the sentence bi-encoder cannot; it stores no caption vectors (its
clause table: test_clause_table.py) and reads any index's captions."""
import numpy as np
import pytest

from cgrs_ros.config import load_engine_config
from cgrs_ros.engine import CGRSEngine
from cgrs_ros.index import load_index
from cgrs_ros.models import TEXT_SIMILARITIES, load_models
from cgrs_ros.models.text_similarity import relations, split_clauses

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
QUERY = "Which block has a pond east of it and a grove to its south?"
RIGHT = ("The image shows a small square building with a red roof in the centre. There is a lake to the "
         "east of the building and a group of trees to the south of the building.")
SWAPPED = RIGHT.replace("to the east", "to the SIDE_A").replace("to the south", "to the east") \
               .replace("to the SIDE_A", "to the south")


@pytest.fixture(scope="module")
def matchers():
    clause = TEXT_SIMILARITIES.build({"name": "clause_match", "model": MINILM, "device": "cpu"})
    sentence = TEXT_SIMILARITIES.build({"name": "sentence_transformers", "model": MINILM, "device": "cpu"})
    yield clause, sentence
    clause.close()
    sentence.close()


def test_split_clauses_keeps_each_landmark_with_its_side():
    assert split_clauses(QUERY) == ["Which block has a pond east of it", "a grove to its south"]
    assert split_clauses(RIGHT)[-2:] == ["a lake to the east of the building",
                                         "a group of trees to the south of the building"]
    assert split_clauses("crimson roof, pond east") == ["crimson roof", "pond east"]
    # "with" joins a noun phrase ("a parking lot with cars"), not two facts
    assert split_clauses("a parking lot with cars to the north") == ["a parking lot with cars to the north"]
    assert split_clauses("  ,;. ") == [",;."]                 # never an empty list


def test_clause_match_reads_sides_that_the_sentence_vector_blurs(matchers):
    clause, sentence = matchers
    assert "to the south of the building" in SWAPPED and SWAPPED != RIGHT
    right, swapped = clause.score(QUERY, [RIGHT, SWAPPED])
    # a real margin, not a rounding difference: each stated side must find its own support
    assert right - swapped > 0.03
    vectors = sentence.encode([RIGHT, SWAPPED])
    s_right, s_swapped = sentence.score(QUERY, [RIGHT, SWAPPED], vectors)
    assert abs(s_right - s_swapped) < (right - swapped)


def test_clause_match_reads_an_inverted_relation(matchers):
    """"the house just south of a pond": the pond lies north of the target, as the caption says."""
    clause, _ = matchers
    north = RIGHT.replace("to the east", "to the north")
    south = RIGHT.replace("to the east", "to the south").replace("group of trees to the south", "road to the west")
    goal = "I am looking for the house just south of a pond."
    right, wrong = clause.score(goal, [north, south])
    asked = relations(goal)                                 # "I am looking for the house", "a pond" (north)
    assert [r.sides for r in asked] == [frozenset(), frozenset({"north"})]
    # the wrong side is a contradiction: the pond clause loses up to side_weight (less where another
    # clause of the caption becomes its best match), in a mean over two clauses
    assert 0.1 < right - wrong <= clause.side_weight / len(asked) + 1e-5


def test_sides_of_a_view_whose_compass_is_unknown_are_not_read(matchers):
    """A drone view without a heading was captioned as it was turned: its "east" is no compass side,
    so it neither gains nor loses by sides; the same caption of a north-up view does."""
    clause, _ = matchers
    right, swapped, swapped_unknown, right_unknown = clause.score(
        QUERY, [RIGHT, SWAPPED, SWAPPED, RIGHT], compass=np.array([True, True, False, False]))
    assert right - swapped > 0.03                       # read as compass sides: the swap contradicts
    assert swapped_unknown == pytest.approx(right_unknown, abs=1e-6)   # what they name is the same
    assert swapped < swapped_unknown                    # no contradiction read from an unknown turn


def test_the_engine_reads_sides_only_where_the_view_faced_a_known_direction(tiny_engine_config_path):
    from pathlib import Path

    from cgrs_ros.gallery import GalleryRecord
    from cgrs_ros.index import GalleryIndex
    from cgrs_ros.models import ModelSet

    config = load_engine_config(tiny_engine_config_path, index={"rectify": "north_up"},
                                text_similarity={"name": "clause_match", "model": MINILM, "device": "cpu"})
    records = [GalleryRecord("sat", "s.png", "p0", "satellite", None, None, None, None),
               GalleryRecord("drone", "d.png", "p1", "drone", None, None, None, None),
               GalleryRecord("turned", "t.png", "p2", "drone", None, None, None, 75.0)]
    vectors = np.eye(3, dtype=np.float32)
    index = GalleryIndex(Path("."), {}, records, [SWAPPED] * 3, vectors, np.zeros((3, 0), np.float32), Path("/g"), [])
    matcher = TEXT_SIMILARITIES.build(config.model_spec("text_similarity"))
    try:
        _, scores, _ = CGRSEngine(config, index, ModelSet(text_similarity=matcher))._caption_scores(
            QUERY, np.arange(3), "cached")
    finally:
        matcher.close()
    # the same words: contradicted where north is known (satellite, turned north-up), not on the
    # drone view without a heading
    assert scores[0] == pytest.approx(scores[2], abs=1e-6) and scores[1] > scores[0] + 0.03


def test_side_weight_is_validated():
    from cgrs_ros.errors import CGRSInputError
    with pytest.raises(CGRSInputError, match="side_weight"):
        TEXT_SIMILARITIES.build({"name": "clause_match", "model": MINILM, "side_weight": "big"})


def test_clause_vectors_are_cached_by_text_and_bounded(matchers):
    clause, _ = matchers
    first = clause.score(QUERY, [RIGHT, SWAPPED, RIGHT])
    assert first.dtype == np.float32 and first.shape == (3,) and first[0] == first[2]
    clause.cache_clauses = 3
    again = clause.score(QUERY, [RIGHT, SWAPPED])
    assert np.allclose(again, first[:2], atol=1e-5)
    # the LRU keeps at least the clauses of the current call, and never grows past them
    texts = {r.what for text in (QUERY, RIGHT, SWAPPED) for r in relations(text)}
    assert len(clause._vectors) == len(texts)
    clause.cache_clauses = 200_000
    with pytest.raises(TypeError, match="stores no caption embedding"):
        clause.encode(["x"])


def test_clause_match_is_swapped_in_on_a_bi_encoder_index(tiny_engine_files):
    config_path, index_dir = tiny_engine_files
    config = load_engine_config(config_path, text_similarity={"name": "clause_match", "model": MINILM})
    index = load_index(index_dir, config)                   # no refusal: it stores nothing in the index
    engine = CGRSEngine(config, index, load_models(config, ["retriever", "text_similarity"]))
    try:
        result = engine.query("a red roof with a lake to the east")
        assert result.reranked and result.places and -1.0 <= result.places[0].best.caption_score <= 1.0
    finally:
        engine.close()
