"""Score fusion: mix the coarse (CLIP) score with the caption score over one query's candidates.

Both scores are normalised over the candidate list first (see ``RetrievalSettings`` for why), then
``fused = (1 - w) * coarse + w * caption``.  Ties keep the coarse order (a stable sort), so the
rerank never shuffles candidates it cannot tell apart.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-8


def normalise(scores: np.ndarray, method: str) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if method == "none" or scores.size == 0:
        return scores
    if method == "zscore":
        spread = scores.std()
        return (scores - scores.mean()) / spread if spread > _EPS else np.zeros_like(scores)
    if method == "minmax":
        low, high = scores.min(), scores.max()
        return (scores - low) / (high - low) if high - low > _EPS else np.zeros_like(scores)
    raise ValueError(f"unknown normalisation {method!r}")


def fuse(coarse: np.ndarray, caption: np.ndarray, weight: float, method: str) -> np.ndarray:
    """Fused scores for candidates given in coarse order."""
    return (1.0 - weight) * normalise(coarse, method) + weight * normalise(caption, method)


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; equal scores keep their input order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def top_k(similarities: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k best scores, best first, ties broken by row order (deterministic)."""
    k = min(k, similarities.shape[0])
    if k < similarities.shape[0]:
        candidates = np.argpartition(-similarities, k - 1)[:k]
        # argpartition picks an arbitrary member among values tied at the cut: include every tie.
        cut = similarities[candidates].min()
        candidates = np.flatnonzero(similarities >= cut)
    else:
        candidates = np.arange(similarities.shape[0])
    return candidates[rank_order(similarities[candidates])][:k]
