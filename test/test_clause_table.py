"""The clause table: an index built for the clause matcher holds its captions read into relations and
encoded, so a cached query reads them as arrays and encodes only its own clauses (real MiniLM, real
builds of the tiny gallery)."""
import json
from dataclasses import replace
from unittest.mock import patch

import numpy as np
import pytest

from cgrs_ros.clause_table import ClauseTable
from cgrs_ros.config import load_engine_config
from cgrs_ros.engine import CGRSEngine, QueryOptions
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import Gallery, read_manifest
from cgrs_ros.index import GalleryIndex, build_index, load_index
from cgrs_ros.models import load_models
from cgrs_ros.models.text_similarity import SentenceTransformerSimilarity, relations

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
GOAL = "a red roof with a lake to the east and trees to its south"


@pytest.fixture(scope="module")
def clause_config(tiny_engine_config_path):
    return load_engine_config(tiny_engine_config_path, index={"rectify": "north_up"},
                              text_similarity={"name": "clause_match", "model": MINILM, "device": "cpu"})


@pytest.fixture(scope="module")
def clause_index(tmp_path_factory, tiny_gallery, clause_config):
    folder = tmp_path_factory.mktemp("clause_index")
    build_index(read_manifest(tiny_gallery), clause_config, folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def engine(clause_config, clause_index):
    engine = CGRSEngine(clause_config, load_index(clause_index, clause_config),
                        load_models(clause_config, ["retriever", "text_similarity"]))
    yield engine
    engine.close()


def test_the_table_holds_every_captions_relations_in_row_order(engine):
    index, matcher = engine.index, engine.models.text_similarity
    table = index.clause_table
    assert table is not None and table.key == matcher.clause_key == index.meta["clause_table"]["key"]
    texts = json.loads(__import__("zlib").decompress(index.read_file("clauses.texts.json.zlib")))
    rows = np.array([5, 0, 17, 5, 3])                # any order, repeats, the first row
    ids, sides, counts = table.relations_of(rows)
    expected = [relations(index.captions[int(r)]) for r in rows]
    assert counts.tolist() == [len(rs) for rs in expected]
    assert [texts[i] for i in ids] == [r.what for rs in expected for r in rs]
    # each clause vector is the encoder's, stored as float16
    encoded = matcher.encoder.encode(texts)
    assert np.abs(np.asarray(table.vectors, np.float32) - encoded).max() < 2e-3
    assert len(set(texts)) == len(texts) == index.meta["clause_table"]["clauses"]


def test_scores_read_from_the_table_are_the_scores_of_the_captions_read_now(engine):
    index, matcher = engine.index, engine.models.text_similarity
    rows = np.arange(len(index))
    compass = rows % 3 != 0                     # every third view as if of unknown heading: sides not read
    for goal in (GOAL, "the building just south of a pond", "a roof"):
        now = matcher.score(goal, index.caption_texts(rows), None, compass)
        read = matcher.score_table(goal, index.clause_table, rows, compass)
        assert read.dtype == np.float32 and read.shape == (len(rows),)
        assert np.abs(now - read).max() < 2e-3          # float16 clause vectors
    assert matcher.score_table(GOAL, index.clause_table, np.zeros(0, np.int64)).shape == (0,)


def test_table_scores_read_compass_sides_as_captions_read_now_do(engine):
    matcher = engine.models.text_similarity
    right = "A building with a red roof. There is a lake to the east of the building and trees to the south of it."
    swapped = right.replace("east", "SIDE").replace("south", "east").replace("SIDE", "south")
    captions = [right, swapped, swapped, right, "a roof"]
    table, texts = matcher.clause_table(captions)
    assert table.sides.any() and len(texts) < int(table.ends[-1])          # sides read; clauses shared
    compass = np.array([True, True, False, False, True])                  # two views of unknown heading
    goal = "Which block has a pond east of it and a grove to its south?"
    now = matcher.score(goal, captions, None, compass)
    read = matcher.score_table(goal, table, np.arange(len(captions)), compass)
    assert np.abs(now - read).max() < 2e-3
    assert read[0] - read[1] > 0.03 and abs(read[2] - read[3]) < 2e-3     # a swap contradicts only on a compass


def test_a_cached_query_reads_no_caption_and_encodes_only_its_own_clauses(engine):
    goal = "a yellow roof with a road to the north of it"
    encoded = []
    original = SentenceTransformerSimilarity.encode

    def spy(self, texts):
        encoded.extend(texts)
        return original(self, texts)

    read = []
    original_texts = GalleryIndex.caption_texts

    def texts_spy(self, rows):
        read.extend(int(r) for r in rows)
        return original_texts(self, rows)

    with patch.object(SentenceTransformerSimilarity, "encode", spy), \
            patch.object(GalleryIndex, "caption_texts", texts_spy):
        result = engine.query(goal, QueryOptions(caption_mode="cached"))
    assert result.reranked and not result.degraded
    assert set(encoded) <= {r.what for r in relations(goal)}
    # the rerank reads no caption; only the confidence reads those of the first JUDGED_PLACES places
    from cgrs_ros.engine import JUDGED_PLACES
    judged = {int(v.row) for p in result.places[:JUDGED_PLACES] for v in p.views}
    assert read and set(read) <= judged
    # a shown match still carries its caption, read for it alone
    assert [m.caption for m in result.matches] == [engine.index.captions[m.row] for m in result.matches]


def test_a_table_of_another_encoder_is_not_read(engine):
    """A matcher with another model (or reading) than the table's reads the captions at query time."""
    other = replace(engine.index.clause_table, key={**engine.index.clause_table.key, "model": "another"})
    swapped = CGRSEngine(engine.config, replace(engine.index, clause_table=other), engine.models)
    read = []
    original = GalleryIndex.caption_texts

    def spy(self, rows):
        read.append(len(rows))
        return original(self, rows)

    with patch.object(GalleryIndex, "caption_texts", spy):
        mine = swapped.query(GOAL, QueryOptions(caption_mode="cached"))
    assert read and mine.reranked
    table = engine.query(GOAL, QueryOptions(caption_mode="cached"))
    assert [m.row for m in mine.matches] == [m.row for m in table.matches]


def test_a_rebuild_encodes_no_clause_the_live_table_holds(tmp_path, tiny_gallery, clause_config):
    gallery = read_manifest(tiny_gallery)
    folder = tmp_path / "index"
    build_index(gallery, clause_config, folder, progress=False)
    before = load_index(folder, clause_config)
    encoded = []
    original = SentenceTransformerSimilarity.encode

    def spy(self, texts):
        encoded.extend(texts)
        return original(self, texts)

    fewer = Gallery(gallery.records[1:], gallery.root)               # a changed gallery: a new generation
    with patch.object(SentenceTransformerSimilarity, "encode", spy):
        meta = build_index(fewer, clause_config, folder, progress=False)
    after = load_index(folder, clause_config)
    assert not meta["up_to_date"] and meta["encoded"] == 0 and encoded == []
    assert after.meta["data"] != before.meta["data"] and len(after) == len(before) - 1
    _, _, counts = after.clause_table.relations_of(np.arange(len(after)))
    assert counts.tolist() == [len(relations(after.captions[row])) for row in range(len(after))]
    assert [after.captions[row] for row in range(len(after))] == [before.captions[row] for row in range(1, len(before))]


def test_an_index_without_captions_or_for_another_matcher_holds_no_table(tiny_engine_files, clause_config):
    config_path, index_dir = tiny_engine_files          # built for the bi-encoder
    assert load_index(index_dir).clause_table is None
    assert "clause_table" not in load_index(index_dir).meta


def test_a_damaged_table_entry_is_refused_by_name(tmp_path, clause_index, clause_config):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(clause_index, folder)
    meta_file = folder / "index.json"
    meta = json.loads(meta_file.read_text())
    meta["clause_table"]["relations"] += 1
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CGRSInputError, match=r"clauses\.ids\.npy has shape"):
        load_index(folder, clause_config)
    meta["clause_table"] = {"clauses": 3}
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CGRSInputError, match="field 'clause_table'"):
        load_index(folder, clause_config)


def test_relations_of_gathers_ragged_rows():
    table = ClauseTable({}, np.zeros((4, 2), np.float16), np.array([0, 1, 2, 3, 1, 0], np.int32),
                        np.array([1, 2, 4, 8, 0, 3], np.uint8), np.array([2, 2, 5, 6]))    # row 1 has none
    ids, sides, counts = table.relations_of(np.array([3, 0, 1, 2, 0]))
    assert counts.tolist() == [1, 2, 0, 3, 2]
    assert ids.tolist() == [0, 0, 1, 2, 3, 1, 0, 1]
    assert sides.tolist() == [3, 1, 2, 4, 8, 0, 1, 2]


def test_a_matcher_that_cannot_load_fails_the_build_before_any_image_is_encoded(tmp_path, tiny_gallery,
                                                                                 clause_config):
    missing = replace(clause_config, text_similarity={**clause_config.text_similarity, "model": str(tmp_path / "none")})
    with pytest.raises(OSError, match="none"):
        build_index(read_manifest(tiny_gallery), missing, tmp_path / "index", progress=False)
    assert not (tmp_path / "index" / ".build" / "chunks").exists()
