"""Quick place-level recall for training-time validation and fusion tuning (not the official cgrs-eval).

A query is a hit at K when any of the first K ranked images shows the query's place.
"""
from __future__ import annotations

import numpy as np

from ..evaluation import recall_at_k
from ..fusion import rerank, top_k


def place_recall(rankings: list[np.ndarray], image_place: np.ndarray, query_place: np.ndarray,
                 ks=(1, 5, 10)) -> dict[str, float]:
    """Rows ranked per query -> ``{"R@k": percent}`` through the official place-level recall."""
    recall = recall_at_k([image_place[ranked].tolist() for ranked in rankings], list(query_place), ks)
    return {f"R@{k}": round(value, 2) for k, value in recall.items()}


def coarse_rankings(image_emb: np.ndarray, query_emb: np.ndarray, depth: int) -> list[np.ndarray]:
    sims = query_emb @ image_emb.T
    return [top_k(row, depth) for row in sims]


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
                    order, _ = rerank(sims[q, cand], caption, w, norm)
                    ranked.append(cand[order])
                row = {"top_k": k, "normalization": norm, "fusion_weight": w}
                row.update(place_recall(ranked, image_place, query_place))
                results.append(row)
    return results
