"""Quick place-level recall for training-time validation and fusion tuning (not the official cgrs-eval).

A query is a hit at K when any of the first K ranked images shows the query's place.
"""
from __future__ import annotations

import numpy as np

from ..fusion import fuse, rank_order, top_k


def place_recall(rankings: list[np.ndarray], image_place: np.ndarray, query_place: np.ndarray,
                 ks=(1, 5, 10)) -> dict[str, float]:
    hits = {k: 0 for k in ks}
    for ranked, place in zip(rankings, query_place):
        places = image_place[ranked]
        for k in ks:
            hits[k] += bool((places[:k] == place).any())
    return {f"R@{k}": round(100.0 * hits[k] / max(1, len(rankings)), 2) for k in ks}


def coarse_rankings(image_emb: np.ndarray, query_emb: np.ndarray, depth: int) -> list[np.ndarray]:
    sims = query_emb @ image_emb.T
    return [top_k(row, depth) for row in sims]


def rerank(candidates: np.ndarray, coarse_scores: np.ndarray, caption_scores: np.ndarray,
           weight: float, normalization: str) -> np.ndarray:
    """Candidate image indices reordered by the fused score (as the engine does)."""
    fused = fuse(coarse_scores, caption_scores, weight, normalization)
    return candidates[rank_order(fused)]


def cgrs_sweep(image_emb: np.ndarray, query_emb: np.ndarray, caption_emb: np.ndarray, query_text_emb: np.ndarray,
               image_place: np.ndarray, query_place: np.ndarray, top_ks=(10, 20, 30), weights=None,
               normalizations=("zscore", "minmax")) -> list[dict]:
    """Recall of coarse-then-rerank for every (top_k, weight, normalization) combination."""
    weights = weights if weights is not None else [round(w, 2) for w in np.linspace(0.0, 1.0, 11)]
    sims = query_emb @ image_emb.T
    results = []
    depth = max(top_ks)
    full = [top_k(row, depth) for row in sims]
    for k in top_ks:
        for norm in normalizations:
            for w in weights:
                ranked = []
                for q, candidates in enumerate(full):
                    cand = candidates[:k]
                    caption = caption_emb[cand] @ query_text_emb[q]
                    ranked.append(rerank(cand, sims[q, cand], caption, w, norm))
                row = {"top_k": k, "normalization": norm, "fusion_weight": w}
                row.update(place_recall(ranked, image_place, query_place))
                results.append(row)
    return results
