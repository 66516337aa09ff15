"""Coarse-search backends: exact equals a float64 brute force (ties by row), the ANN structures
are built into the index and reused, and an index built for another structure is refused."""
import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest

from cgrs_ros.config import load_engine_config
from cgrs_ros.engine import CGRSEngine
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import read_manifest
from cgrs_ros.index import build_index, load_index
from cgrs_ros.search import ExactSearch, exact_scores


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float16)


def _brute_force(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = [float(np.dot(v.astype(np.float64), query.astype(np.float64))) for v in vectors]
    return sorted(range(len(vectors)), key=lambda r: (-scores[r], r))[:k]


@pytest.mark.parametrize("kernel", ["faiss float16 scan", "torch"])
@pytest.mark.parametrize("k", [1, 20, 64])
def test_exact_search_is_the_brute_force_ranking_with_ties_by_row(k, kernel, monkeypatch):
    if kernel == "torch":
        monkeypatch.setattr("cgrs_ros.search.float16_scan", lambda vectors: None)
    rng = np.random.default_rng(k)
    vectors = _unit(rng.standard_normal((3000, 32)))
    vectors[[10, 2000, 2999]] = vectors[1500]            # duplicates: exact ties
    # a crowd of near-equal rows around the query: float16 cannot order them, the bound must widen
    centre = rng.standard_normal(32)
    vectors[100:400] = _unit(centre + 1e-3 * rng.standard_normal((300, 32)))
    search = ExactSearch(vectors, read=None)
    assert (search._scan is not None) == (kernel != "torch")
    for query in (vectors[1500].astype(np.float32), _unit(centre[None])[0].astype(np.float32),
                  _unit(rng.standard_normal((1, 32)))[0].astype(np.float32)):
        assert search.search(query, k).tolist() == _brute_force(vectors, query, k)


def test_exact_scores_are_float64_sums_and_equal_for_equal_vectors_wherever_they_sit():
    """The score every backend ranks by: float64 dot products of the stored values (float16 widened
    exactly) with the query at its own precision, one fixed order per row, so duplicates tie."""
    rng = np.random.default_rng(3)
    vectors = _unit(rng.standard_normal((2000, 256)))
    vectors[[7, 1001, 1999]] = vectors[0]
    query = rng.standard_normal(256)
    query /= np.linalg.norm(query)                     # float64, bits that float32 would drop
    rows = np.array([1999, 5, 0, 1001, 42, 7, 3, 1000])
    scores = exact_scores(vectors, rows, query)
    assert scores.dtype == np.float64
    expected = vectors[rows].astype(np.float64) @ query
    assert np.allclose(scores, expected, rtol=0, atol=1e-13)
    assert len({scores[0], scores[2], scores[3], scores[5]}) == 1          # the four copies of row 0
    assert not np.allclose(scores, vectors[rows].astype(np.float64) @ query.astype(np.float32), rtol=0, atol=1e-10)
    # float32 or float64 vectors (an index assembled in memory) score alike
    for dtype in (np.float32, np.float64):
        assert np.allclose(exact_scores(vectors.astype(dtype), rows, query), scores, rtol=0, atol=1e-13), dtype


def test_the_float16_scan_reads_the_memory_map_itself(tmp_path):
    """No copy: the scan's codes are the map's bytes, so RSS does not grow with the index."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "v.npy", _unit(rng.standard_normal((5000, 16))))
    vectors = np.load(tmp_path / "v.npy", mmap_mode="r")
    search = ExactSearch(vectors, read=None)
    codes = search._scan.codes
    assert not codes.is_owned and codes.size() == vectors.nbytes
    query = vectors[4321].astype(np.float32)
    assert search.search(query, 5).tolist() == _brute_force(vectors, query, 5)
    # float32 vectors (an index assembled in memory) take the torch kernel
    assert ExactSearch(np.asarray(vectors, dtype=np.float32), read=None)._scan is None


@pytest.fixture(scope="module")
def ann_index(tiny_engine_files, tmp_path_factory):
    """The tiny index rebuilt for faiss_ivfpq: (config, folder, build result)."""
    config_path, index_dir = tiny_engine_files
    folder = tmp_path_factory.mktemp("ann") / "index"
    shutil.copytree(index_dir, folder)
    config = load_engine_config(config_path)
    config = replace(config, index=replace(config.index, search={"name": "faiss_ivfpq", "nprobe": 64}).validated())
    manifest = json.loads((folder / "index.json").read_text())["gallery_source"]
    result = build_index(read_manifest(manifest), config, folder, progress=False)
    return config, folder, result


def test_an_ann_structure_is_built_into_the_index_reusing_every_encoded_image(ann_index):
    config, folder, result = ann_index
    assert (result["encoded"], result["up_to_date"]) == (0, False)
    assert result["search"] == {"name": "faiss_ivfpq", "nprobe": 64}
    assert (folder / result["data"] / "search-ivfpq.faiss").is_file()
    assert "search-ivfpq.faiss" in result["checksums"]


def test_ann_ranking_equals_exact_when_every_list_is_probed(ann_index, tiny_engine_files):
    config, folder, _ = ann_index
    exact_config = replace(config, index=replace(config.index, search={"name": "exact"}))
    ann = CGRSEngine.load(config, folder)
    exact = CGRSEngine(exact_config, ann.index, ann.models)
    try:
        for text in ("a red roof", "blue", "a green building"):
            query = ann.models.retriever.encode_texts([text])[0]
            assert ann.coarse(query, 10).tolist() == exact.coarse(query, 10).tolist()
    finally:
        ann.close()


def _ann_against_exact(name: str, **options):
    """An ANN backend built over 4,000 random unit vectors (as the default and with ``options``),
    and its recall@k against exact search over 50 of them as queries."""
    from cgrs_ros.search import SEARCHES

    backend = SEARCHES.factory(name)
    vectors = _unit(np.random.default_rng(0).standard_normal((4000, 32)))
    files = backend.build(vectors)
    exact = ExactSearch(vectors, read=None)

    def recall(search, k):
        return np.mean([len(set(search.search(q, k).tolist()) & set(exact.search(q, k).tolist())) / k
                        for q in vectors[:50].astype(np.float32)])

    return backend(vectors, files.__getitem__), backend(vectors, files.__getitem__, **options), recall


def test_ivfpq_probes_enough_lists_to_hold_the_candidates_it_asks_for():
    """The engine asks IVF-PQ for rescore x top_k rows (3,200 by default); on a small index the
    default share of lists holds fewer, and the top k against exact search suffered for it."""
    default, fixed, recall = _ann_against_exact("faiss_ivfpq", nprobe=32)
    assert default.index.nlist == 102 and default.index.nprobe == 32          # the share alone: 32 lists of ~39
    assert recall(default, 200) >= 0.95          # 3,200 candidates: 82 lists probed
    assert recall(fixed, 200) < 0.85             # a set nprobe is kept: 32 lists, ~1,250 rows
    assert recall(default, 20) == recall(fixed, 20)       # 320 candidates: the 32 lists hold them


def test_hnsw_searches_as_broadly_as_the_candidates_it_asks_for():
    """faiss returns the rows asked for from a graph search of breadth ``efSearch`` even where that
    is narrower; the engine asks for rescore x top_k rows."""
    default, narrow, recall = _ann_against_exact("faiss_hnsw", ef_search=16, rescore=16)
    assert default.rescore == 4 and default.index.hnsw.efSearch == 64
    assert recall(default, 200) >= 0.99          # 800 candidates from a search of breadth 800
    assert recall(narrow, 200) < 0.8             # a set ef_search is kept: breadth 16 for 3,200 rows


@pytest.mark.parametrize("search, message", [
    ({"name": "faiss_hnsw", "rescore": 0}, "'faiss_hnsw': rescore must be a whole number >= 1, got 0"),
    ({"name": "faiss_hnsw", "rescore": 2.5}, "rescore must be a whole number >= 1, got 2.5"),
    ({"name": "faiss_ivfpq", "rescore": True}, "rescore must be a whole number >= 1, got True"),
    ({"name": "faiss_ivfpq", "rescore": "16"}, "rescore must be a whole number >= 1, got '16'"),
    # faiss: "in method 'IndexIVFInterface_nprobe_set', argument 2 of type 'size_t'" at node start
    ({"name": "faiss_ivfpq", "nprobe": -5}, "'faiss_ivfpq': nprobe must be a whole number >= 0, got -5"),
    ({"name": "faiss_ivfpq", "nlist": -4}, "nlist must be a whole number >= 0, got -4"),
    ({"name": "faiss_ivfpq", "m": 0.5}, "m must be a whole number >= 0, got 0.5"),
    # faiss searched a graph of breadth -1 and returned one row where ten were asked for
    ({"name": "faiss_hnsw", "ef_search": -1}, "'faiss_hnsw': ef_search must be a whole number >= 0, got -1"),
    ({"name": "faiss_hnsw", "M": 1}, "M must be a whole number >= 2, got 1"),
    ({"name": "faiss_hnsw", "ef_construction": 0}, "ef_construction must be a whole number >= 1, got 0"),
    # exact search returned seven rows where ten were asked for, or failed an assertion
    ({"name": "exact", "margin": -3}, "'exact': margin must be a whole number >= 0, got -3"),
    ({"name": "faiss_ivfpq", "nprobes": 8}, "'faiss_ivfpq': unknown option 'nprobes'; its options: rescore, nprobe, nlist, m"),
    ({"name": "faiss_flat", "rescore": 4}, "'faiss_flat': unknown option 'rescore'; its options: none"),
])
def test_a_bad_search_option_is_named_when_the_config_is_read(search, message, tiny_engine_config_path):
    with pytest.raises(CGRSInputError, match=re.escape(message)):
        load_engine_config(tiny_engine_config_path, index={"search": search})


def test_search_options_at_their_least_values_are_taken(tiny_engine_config_path):
    for search in ({"name": "exact", "margin": 0}, {"name": "faiss_ivfpq", "nprobe": 0, "nlist": 0, "m": 0, "rescore": 1},
                   {"name": "faiss_hnsw", "ef_search": 0, "M": 2, "ef_construction": 1, "rescore": 1}):
        assert load_engine_config(tiny_engine_config_path, index={"search": search}).index.search == search


def test_more_ivf_lists_than_images_is_named():
    from cgrs_ros.search import SEARCHES

    vectors = _unit(np.random.default_rng(0).standard_normal((100, 32)))
    with pytest.raises(CGRSInputError, match="nlist=101 lists for 100 images; at most one list per image"):
        SEARCHES.factory("faiss_ivfpq").build(vectors, nlist=101)


def test_an_index_built_for_another_structure_is_refused_with_the_fix(tiny_engine_files, ann_index):
    config, _, _ = ann_index
    _, exact_dir = tiny_engine_files
    index = load_index(exact_dir, config)
    with pytest.raises(CGRSInputError, match=r"was built for coarse search \{'name': 'exact'\}.*rerun cgrs-index"):
        CGRSEngine(config, index, models=None)


def test_a_corrupt_ann_file_is_refused(ann_index, tmp_path):
    config, folder, result = ann_index
    copy = tmp_path / "index"
    shutil.copytree(folder, copy)
    file = copy / result["data"] / "search-ivfpq.faiss"
    data = bytearray(file.read_bytes())
    data[-5] ^= 1
    file.write_bytes(bytes(data))
    with pytest.raises(CGRSInputError, match="search-ivfpq.faiss does not match the checksum"):
        CGRSEngine(config, load_index(copy, config), models=None)


@pytest.mark.parametrize("value, message", [("annoy", "unknown coarse search 'annoy'"),
                                            (7, "index.search must be a backend name or a mapping")])
def test_an_unknown_search_backend_is_named(value, message, tiny_engine_config_path):
    with pytest.raises(CGRSInputError, match=message):
        load_engine_config(tiny_engine_config_path, index={"search": value})
