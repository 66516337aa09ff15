"""The clause table: every caption of an index read into relations and encoded once, at build time.

Why: the clause matcher (``text_similarity: clause_match``) compares the goal's clauses with the
clauses of each candidate caption.  Read at query time, a caption costs a parse (~0.1 ms) and one
encoding per clause it has not met before, and a goal's candidates are ~500-2,000 views: on the
rendered world a goal whose candidate captions were all new took ~0.5 s p50 against ~35 ms with the
table (``bench/scale_benchmark.py``), and a node serving a gallery of distinct captions (a hub VLM's,
not the embedded captioner's templates) would pay that on most goals.  Built with the index, a query
encodes only its own clauses and reads the candidates' relations as arrays.

Layout: row ``r``'s relations are entries ``ends[r - 1]`` (0 for the first row) to ``ends[r]`` of
``ids`` and ``sides``::

    clauses.vectors.npy    float16 (C, d) unit vectors of the C distinct clause texts
    clauses.ids.npy        int32 (R,) which clause text each relation names
    clauses.sides.npy      uint8 (R,) the compass sides it puts it on (bits: north 1, east 2, south 4, west 8)
    clauses.ends.npy       int64 (N,) each row's end offset into ids and sides
    clauses.texts.json.zlib  the C clause texts (read by rebuilds only: their vectors are reused)

``index.json`` keeps the table's :attr:`ClauseTable.key` (the encoder and :data:`READER_VERSION`):
an engine whose matcher has another key reads the captions at query time instead.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

# bumped whenever the reading of a caption into relations (cgrs_ros.spatial_text, split_clauses)
# changes: a table read by another version is not used
READER_VERSION = 1
VECTOR_DTYPE = np.float16
ARRAYS = {"vectors": VECTOR_DTYPE, "ids": np.int32, "sides": np.uint8, "ends": np.int64}
TEXTS = "clauses.texts.json.zlib"
ENCODE_BLOCK = 4096          # clause texts encoded per progress step


@dataclass(frozen=True)
class ClauseTable:
    """The relations of every row's caption (see the module docstring for the arrays)."""

    key: dict
    vectors: np.ndarray
    ids: np.ndarray
    sides: np.ndarray
    ends: np.ndarray

    def relations_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(clause ids, side bits, how many per row) of the relations of ``rows``, row after row."""
        rows = np.asarray(rows, dtype=np.int64)
        begins = self.ends[rows - 1] * (rows > 0)            # row 0 begins at 0
        counts = self.ends[rows] - begins
        offsets = np.cumsum(counts) - counts                 # where each row's relations go in the result
        positions = np.repeat(begins - offsets, counts) + np.arange(int(counts.sum()))
        return self.ids[positions], self.sides[positions], counts

    def files(self, texts: Sequence[str]) -> dict:
        """File name -> content of the table (``texts``: the clause texts, in id order)."""
        return {**{f"clauses.{name}.npy": np.asarray(getattr(self, name), dtype=dtype) for name, dtype in ARRAYS.items()},
                TEXTS: zlib.compress(json.dumps(list(texts), ensure_ascii=False).encode("utf-8"))}


def read_table(captions: Sequence[str], relations: Callable, side_bits: Callable, encode: Callable,
               key: dict, known: dict | None = None, progress: bool = False) -> tuple[ClauseTable, list[str]]:
    """The table of ``captions`` (one per row) and its clause texts.

    ``relations(caption)`` gives a caption's relations (``.what``), ``side_bits(caption)`` their
    sides as bits, ``encode(texts)`` unit vectors; ``known`` maps clause texts to vectors made under
    the same ``key`` (a rebuild's previous table), which are not encoded again.  Each distinct
    caption is read once."""
    distinct = list(dict.fromkeys(captions))
    clause_of: dict[str, int] = {}
    read = {}
    for caption in tqdm(distinct, desc="reading captions", unit="caption", disable=not progress, dynamic_ncols=True):
        ids = [clause_of.setdefault(r.what, len(clause_of)) for r in relations(caption)]
        read[caption] = (ids, side_bits(caption))
    texts = list(clause_of)
    known = known or {}
    vectors: dict[int, np.ndarray] = {n: known[text] for n, text in enumerate(texts) if text in known}
    todo = [n for n in range(len(texts)) if n not in vectors]
    with tqdm(total=len(todo), desc="encoding clauses", unit="clause", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(todo), ENCODE_BLOCK):
            block = todo[start:start + ENCODE_BLOCK]
            vectors.update(zip(block, encode([texts[n] for n in block])))
            bar.update(len(block))
    counts = np.fromiter((len(read[c][0]) for c in captions), np.int64, len(captions))
    ids = np.fromiter((i for c in captions for i in read[c][0]), np.int32, int(counts.sum()))
    sides = np.concatenate([read[c][1] for c in captions]) if len(captions) else np.zeros(0, np.uint8)
    stacked = np.stack([vectors[n] for n in range(len(texts))]) if texts else np.zeros((0, 0))
    table = ClauseTable(key, np.asarray(stacked, VECTOR_DTYPE), ids, np.asarray(sides, np.uint8), np.cumsum(counts))
    return table, texts


def known_vectors(table: ClauseTable, texts_file: bytes) -> dict[str, np.ndarray]:
    """Clause text -> vector of a previous table (from its ``TEXTS`` file content); nothing when the
    texts do not match the table."""
    texts = json.loads(zlib.decompress(texts_file).decode("utf-8"))
    if not isinstance(texts, list) or len(texts) != len(table.vectors):
        return {}
    return {text: table.vectors[n] for n, text in enumerate(texts)}
