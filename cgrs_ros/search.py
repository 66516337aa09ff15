"""Coarse search: the K gallery images whose CLIP vectors best match a query, by a chosen backend.

The backend is ``index.search`` in the engine config (``{name: exact}`` by default) and is stored
with the index: backends that need a structure made from the vectors (the ANN ones) build it with
the index, into its generation (``search-<name>.faiss``), and an engine refuses an index built for
another structure.  Every backend returns rows in the same order: by the exact cosine of the
stored (float16) vector with the query, ties by row, so backends differ only in which candidates
they may miss.

- ``exact``:        one pass over the memory-mapped float16 vectors, no float32 copy: on a CPU
                    faiss's float16 scalar-quantizer scan (SIMD conversion and dot products, its
                    own top ``k + margin``) over a view of the map; on CUDA, or without faiss, a
                    torch float16 matrix-vector product and one partial sort.  The candidates are
                    rescored exactly, and a bound on float16 rounding proves no other row can
                    enter the top k (else the margin grows).
- ``faiss_flat``:   faiss ``IndexFlatIP`` over a float32 copy (the usual exact peer; 2x the RAM).
- ``faiss_ivfpq``:  faiss IVF-PQ (``nlist`` lists, default 4 sqrt(N); ``m`` byte codes per vector,
                    default 32), ``nprobe`` lists visited (default 2.5% of them, at least 32,
                    and at least enough to hold the candidates asked for, on average),
                    ``rescore`` x k candidates (default 16) rescored exactly: ~45 B/image beside the vectors.
- ``faiss_hnsw``:   faiss HNSW graph (``M`` links), ``ef_search`` breadth (default 64, and at
                    least the candidates asked for), ``rescore`` x k candidates (default 4: its
                    distances are float32 products already) rescored likewise; holds its own
                    float32 copy of the vectors.

``faiss`` (faiss-cpu) is only imported by the faiss backends; a faiss GPU build is used for
``faiss_flat`` when the engine runs on CUDA and the build has GPU support.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Protocol

import numpy as np

from .errors import CGRSInputError
from .models.registry import Registry

# |float16 score - exact score| for unit vectors: query and product rounding (2 x 2^-11) plus
# fp32 accumulation, with a wide safety factor
FLOAT16_SCORE_ERROR = 4e-3
# per dimension, |fp32 sum of float16 x float32 products - exact| for unit vectors: d x 2^-24
# (Cauchy-Schwarz bounds the sum of |products| by 1), times a safety factor of 8
SCAN_SCORE_ERROR = 8 * 2.0 ** -24


class CoarseSearch(Protocol):
    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        """Rows of the (up to) ``k`` best matches of the unit vector ``query``, best first."""


SEARCHES: Registry = Registry("coarse search")


def search_spec(value) -> dict:
    """``index.search`` of a config: a name or ``{name: ..., <options>}``, checked by name and by
    option: each a whole number of at least its backend's least value (``OPTIONS``).

    Why here, when the config is read: faiss takes a negative count for a huge unsigned one (an
    error that names no option, at node start), or searches a graph of breadth -1 and returns one
    row where ten were asked for, without a word; an exact search with a negative margin returned
    fewer rows than asked, or failed an assertion."""
    spec = {"name": value} if isinstance(value, str) else value
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise CGRSInputError(f"index.search must be a backend name or a mapping with a 'name' "
                             f"(one of {', '.join(SEARCHES.names())}), got {value!r}")
    backend = SEARCHES.factory(spec["name"])
    for option, value in spec.items():
        if option == "name":
            continue
        if option not in backend.OPTIONS:
            raise CGRSInputError(f"index.search {spec['name']!r}: unknown option {option!r}; its options: "
                                 f"{', '.join(backend.OPTIONS) or 'none'}")
        least = backend.OPTIONS[option]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise CGRSInputError(f"index.search {spec['name']!r}: {option} must be a whole number >= {least}, "
                                 f"got {value!r}")
    return dict(spec)


def exact_scores(vectors: np.ndarray, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine of the stored vectors of ``rows`` with ``query``: the score every backend ranks by.

    Summed per row in float64 in one fixed order (``einsum``'s loop, not BLAS, whose rounding depends
    on where a row sits in the block): equal vectors get equal scores, so ties fall to the row order.
    The float16 rows are widened by torch (vectorised; numpy converts float16 one value at a time):
    a cached query scores every candidate view (2,000 at 1M tiled rows) and IVF-PQ rescores 16 x k
    candidates; in bench/scale_benchmark.py runs before and after, IVF-PQ search at 1M rows went from
    8.9 to 5.5 ms p50 and the rerank stage from 6.2 to 4.0 ms (same values; widening is exact)."""
    return np.einsum("ij,j->i", _widened(vectors[rows]), np.asarray(query, dtype=np.float64), dtype=np.float64)


def _widened(vectors: np.ndarray) -> np.ndarray:
    """float16 rows as float32 (exact); other types as they are (``einsum`` sums them in float64)."""
    vectors = np.asarray(vectors)
    if vectors.dtype != np.float16:
        return vectors
    import torch

    return torch.from_numpy(np.ascontiguousarray(vectors)).float().numpy()


def best_first(rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best of ``rows`` by score, ties by row."""
    return rows[np.lexsort((rows, -scores))][:k]


def rescored(vectors: np.ndarray, rows: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    rows = np.unique(rows[rows >= 0]).astype(np.int64)     # faiss pads a short answer with -1
    return best_first(rows, exact_scores(vectors, rows, query), k)


@SEARCHES.register("exact")
class ExactSearch:
    stored = False
    QUERY_OPTIONS = ("margin",)
    OPTIONS = {"margin": 0}      # option -> its least value (search_spec)

    def __init__(self, vectors: np.ndarray, read: Callable[[str], bytes], device: str = "cpu", margin: int = 32):
        import torch

        self._torch, self._vectors, self.margin = torch, vectors, int(margin)
        self._device = torch.device(device)
        self._scan = float16_scan(vectors) if self._device.type == "cpu" else None
        # the scan multiplies the exact float16 values by the float32 query (fp32 sums only); torch
        # rounds the query to float16 as well
        self._error = SCAN_SCORE_ERROR * vectors.shape[1] if self._scan is not None else FLOAT16_SCORE_ERROR
        if self._scan is None:
            with warnings.catch_warnings():     # the map is read-only and is never written through
                warnings.simplefilter("ignore", UserWarning)
                matrix = torch.from_numpy(np.asarray(vectors))
            self._matrix = matrix.to(self._device) if self._device.type == "cuda" else matrix

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        n = len(self._vectors)
        k = min(k, n)
        wanted = k + self.margin
        while wanted < n:
            rows, approx = self._candidates(query, wanted)
            scores = exact_scores(self._vectors, rows, query)
            top = np.lexsort((rows, -scores))[:k]
            # a row left out scores at most min(approx of the kept) + error: below the k-th, it cannot enter
            if scores[top[-1]] > approx.min() + self._error:
                return rows[top]
            if self._scan is not None:
                # a crowd of near-equal rows: one more pass fetches every row that may reach the k-th
                # (a row it leaves out has approx <= k-th - 2 error, so exact < k-th)
                rows = self._rows_above(query, float(scores[top[-1]]) - 2 * self._error)
                return best_first(rows, exact_scores(self._vectors, rows, query), k)
            wanted *= 4
        rows = np.arange(n)
        return best_first(rows, exact_scores(self._vectors, rows, query), k)

    def _rows_above(self, query: np.ndarray, radius: float) -> np.ndarray:
        limits, _, rows = self._scan.range_search(np.ascontiguousarray(query, dtype=np.float32)[None], radius)
        return rows[limits[0]:limits[1]].astype(np.int64)

    def _candidates(self, query: np.ndarray, wanted: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``wanted`` rows of best float16 score, and those scores."""
        if self._scan is not None:
            approx, rows = self._scan.search(np.ascontiguousarray(query, dtype=np.float32)[None], wanted)
            return rows[0].astype(np.int64), approx[0]
        torch = self._torch
        with torch.inference_mode():
            q = torch.from_numpy(np.ascontiguousarray(query, dtype=self._vectors.dtype)).to(self._device)
            approx = (self._matrix @ q).float().cpu().numpy()
        rows = np.argpartition(-approx, wanted - 1)[:wanted]
        return rows, approx[rows]


def float16_scan(vectors: np.ndarray):
    """A faiss float16 scalar-quantizer index whose codes are a view of ``vectors`` (no copy), or
    None where that cannot be had (no faiss, vectors not contiguous float16, another faiss).

    Why: faiss's fp16 scan converts and multiplies in SIMD registers and keeps its own top list,
    1.7x faster than ``IndexFlatIP`` over a float32 copy (which reads twice the bytes) at 100k and 1M
    rows on one thread (``bench/scale_benchmark.py``), where torch's float16 matrix-vector product
    had measured slower than that copy.
    faiss offers no public way to index external memory, so the index's code vector is pointed at
    the map (``MaybeOwnedVector`` as a non-owning view, faiss >= 1.10); the caller keeps
    ``vectors`` alive, and a probe row checks the view before it is used.
    """
    try:
        import faiss
    except ImportError:
        return None
    vectors = np.asarray(vectors)
    if vectors.dtype != np.float16 or vectors.ndim != 2 or not vectors.flags.c_contiguous or not len(vectors):
        return None
    try:
        index = faiss.IndexScalarQuantizer(vectors.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        codes, address = index.codes, faiss.cast_integer_to_uint8_ptr(vectors.ctypes.data)
        codes.is_owned, codes.view_data, codes.view_size = False, address, vectors.nbytes
        codes.c_ptr, codes.c_size = address, vectors.nbytes
        index.ntotal = len(vectors)
        probe = np.asarray(vectors[-1], dtype=np.float32)
        scores, rows = index.search(probe[None], 1)
    except (AttributeError, TypeError, RuntimeError):
        return None
    expected = float(np.dot(probe.astype(np.float64), probe))
    if codes.size() != vectors.nbytes or not abs(float(scores[0, 0]) - expected) <= FLOAT16_SCORE_ERROR:
        return None
    return index


class _FaissSearch:
    """Candidates from a faiss index, rescored exactly (:func:`rescored`)."""

    stored = True
    file = ""
    KIND = ""               # the faiss class the stored file must hold
    QUERY_OPTIONS: tuple = ()
    OPTIONS = {"rescore": 1}
    RESCORE = 16        # candidates asked of faiss per row wanted, by default

    def __init__(self, vectors, read: Callable[[str], bytes], device: str = "cpu", rescore: int | None = None,
                 **options):
        import faiss

        self._vectors, self.options = vectors, options
        self.rescore = self.RESCORE if rescore is None else rescore
        self.index = self._checked(faiss, read(self.file), vectors)
        self._tune(self.index)

    def _checked(self, faiss, data: bytes, vectors):
        """The stored structure, refused unless it is the kind this backend builds, over vectors of
        the index's size and count (its bytes match index.json's sha256, but a file crafted with an
        updated checksum must not end in a faiss error or a missing attribute)."""
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise CGRSInputError(f"index file {self.file} is not a readable faiss index "
                                 f"({' '.join(str(exc).split())[:200]}); rebuild the index with cgrs-index") from None
        found = (type(index).__name__, getattr(index, "d", None), getattr(index, "ntotal", None),
                 getattr(index, "metric_type", None))
        wanted = (self.KIND, vectors.shape[1], len(vectors), faiss.METRIC_INNER_PRODUCT)
        if found != wanted:
            raise CGRSInputError(f"index file {self.file} holds a faiss {found[0]} of {found[2]} vectors of size "
                                 f"{found[1]} (metric {found[3]}), this index needs a {self.KIND} of {wanted[2]} "
                                 f"of size {wanted[1]} (inner product); rebuild the index with cgrs-index")
        return index

    def _tune(self, index) -> None:
        """Apply query-time options."""

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        _, rows = self.index.search(np.ascontiguousarray(query, dtype=np.float32)[None], k * self.rescore,
                                    **self._search_options(k * self.rescore))
        return rescored(self._vectors, rows[0], query, k)

    def _search_options(self, candidates: int) -> dict:
        """faiss search parameters for a call asking for ``candidates`` rows."""
        return {}

    @classmethod
    def build(cls, vectors: np.ndarray, **options) -> dict[str, bytes]:
        """The structure's file; ``options`` are those that shape it (:func:`build_options`)."""
        import faiss

        index = cls.make(vectors.shape[1], len(vectors), **options)
        if not index.is_trained:
            index.train(_training_sample(vectors))
        for start in range(0, len(vectors), 65536):   # float32 one slice at a time
            index.add(np.asarray(vectors[start:start + 65536], dtype=np.float32))
        return {cls.file: faiss.serialize_index(index).tobytes()}


def _training_sample(vectors: np.ndarray, size: int = 65536) -> np.ndarray:
    rows = np.linspace(0, len(vectors) - 1, min(size, len(vectors))).astype(np.int64)
    return np.asarray(vectors[rows], dtype=np.float32)


@SEARCHES.register("faiss_ivfpq")
class IVFPQSearch(_FaissSearch):
    file = "search-ivfpq.faiss"
    KIND = "IndexIVFPQ"
    QUERY_OPTIONS = ("nprobe",)
    OPTIONS = {"rescore": 1, "nprobe": 0, "nlist": 0, "m": 0}      # 0: chosen from the index size

    def _tune(self, index) -> None:
        # default: 2.5% of the lists, at least 32 (recall@20 >= 0.99 at 100k rows, where 32 lists are 2.5%)
        index.nprobe = int(self.options.get("nprobe") or max(32, index.nlist // 40))

    def _search_options(self, candidates: int) -> dict:
        """Without a set ``nprobe``, at least enough lists to hold the ``candidates`` asked for (at the
        average list size).

        The engine asks for ``rescore`` x top_k rows (3,200 by default), and a fixed share of the
        lists may hold fewer: on the 20,000-image validation world, 32 lists of ~39 rows held 1,250,
        recall@200 against exact was 0.954 and CGRS R@10 fell 1.2 points; with 82 lists, enough for
        the candidates, its CGRS recall was exact search's (README "Scale", bench/scale_benchmark.py)."""
        import faiss

        if self.options.get("nprobe") or not self.index.ntotal:
            return {}
        needed = math.ceil(candidates * self.index.nlist / self.index.ntotal)
        if needed <= self.index.nprobe:
            return {}
        return {"params": faiss.SearchParametersIVF(nprobe=min(self.index.nlist, needed))}

    @staticmethod
    def make(dim: int, count: int, nlist: int = 0, m: int = 0):
        import faiss

        nlist = nlist or max(1, min(4096, int(4 * count ** 0.5), count // 39))   # faiss wants >= 39 points per list
        if nlist > count:
            raise CGRSInputError(f"index.search faiss_ivfpq: nlist={nlist} lists for {count} images; "
                                 f"at most one list per image (0: chosen from the number of images)")
        m = m or math.gcd(dim, 32)        # 32 one-byte codes per vector where the size allows
        if dim % m:
            raise CGRSInputError(f"index.search faiss_ivfpq: m={m} must divide the vector size {dim}")
        bits = 8 if count >= 256 * 39 else max(1, int(np.log2(max(2, count // 39))))
        return faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, bits, faiss.METRIC_INNER_PRODUCT)


@SEARCHES.register("faiss_hnsw")
class HNSWSearch(_FaissSearch):
    file = "search-hnsw.faiss"
    KIND = "IndexHNSWFlat"
    QUERY_OPTIONS = ("ef_search",)
    OPTIONS = {"rescore": 1, "ef_search": 0, "M": 2, "ef_construction": 1}    # ef_search 0: the default
    RESCORE = 4

    def _tune(self, index) -> None:
        index.hnsw.efSearch = int(self.options.get("ef_search") or 64)

    def _search_options(self, candidates: int) -> dict:
        """Without a set ``ef_search``, a search at least as broad as the ``candidates`` asked for.

        faiss returns as many rows as asked from a graph search of breadth ``efSearch``, even when
        that is narrower: on the 20,000-image validation world, the engine's 3,200 candidates from a
        search of breadth 64 held 0.81 of exact search's top 200; 800 candidates from one of breadth
        800 held 0.9999 (README "Scale", bench/scale_benchmark.py)."""
        import faiss

        if self.options.get("ef_search") or candidates <= self.index.hnsw.efSearch:
            return {}
        return {"params": faiss.SearchParametersHNSW(efSearch=candidates)}

    @staticmethod
    def make(dim: int, count: int, M: int = 32, ef_construction: int = 80):
        import faiss

        index = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        return index


@SEARCHES.register("faiss_flat")
class FlatSearch:
    stored = False
    QUERY_OPTIONS: tuple = ()
    OPTIONS: dict = {}

    def __init__(self, vectors: np.ndarray, read: Callable[[str], bytes], device: str = "cpu"):
        import faiss

        self._vectors = vectors
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        for start in range(0, len(vectors), 65536):
            self.index.add(np.asarray(vectors[start:start + 65536], dtype=np.float32))
        if device.startswith("cuda") and hasattr(faiss, "StandardGpuResources"):
            self._gpu = faiss.StandardGpuResources()
            self.index = faiss.index_cpu_to_gpu(self._gpu, int(device.partition(":")[2] or 0), self.index)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        _, rows = self.index.search(np.ascontiguousarray(query, dtype=np.float32)[None], k)
        return rescored(self._vectors, rows[0], query, k)


def build_options(spec: dict) -> dict:
    """The part of a search spec that shapes a stored structure (query-time options excluded)."""
    backend = SEARCHES.factory(spec["name"])
    return {k: v for k, v in spec.items() if k not in backend.QUERY_OPTIONS + ("rescore",)}


def build_search_files(vectors: np.ndarray, spec: dict) -> dict[str, bytes]:
    """Files of the structure ``spec``'s backend searches (none for the ones that need none)."""
    backend = SEARCHES.factory(spec["name"])
    if not backend.stored:
        return {}
    return backend.build(vectors, **{k: v for k, v in build_options(spec).items() if k != "name"})


def open_search(index, spec: dict, device: str = "cpu") -> CoarseSearch:
    """The backend ``spec`` asks for over a loaded index's image vectors (a stored structure must
    have been built into the index, with the same build options)."""
    backend = SEARCHES.factory(spec["name"])
    built = index.meta.get("search")
    if backend.stored and (not isinstance(built, dict) or build_options(built) != build_options(spec)):
        raise CGRSInputError(f"index {index.path} was built for coarse search {built!r}, the config asks for "
                             f"{spec!r}; rerun cgrs-index with this config (it reuses every encoded image)")
    return backend(index.image_embeddings, index.read_file, device, **{k: v for k, v in spec.items() if k != "name"})
