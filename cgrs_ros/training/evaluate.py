"""Training-time checks: quick place-level recall of a CLIP, and caption accuracy per attribute.

A query is a hit at K when any of the first K ranked images shows the query's place.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..evaluation import recall_at_k
from ..fusion import top_k


def place_recall(rankings: list[np.ndarray], image_place: np.ndarray, query_place: np.ndarray,
                 ks=(1, 5, 10)) -> dict[str, float]:
    """Rows ranked per query -> ``{"R@k": percent}`` through the official place-level recall."""
    recall = recall_at_k([image_place[ranked].tolist() for ranked in rankings], list(query_place), ks)
    return {f"R@{k}": round(value, 2) for k, value in recall.items()}


def coarse_rankings(image_emb: np.ndarray, query_emb: np.ndarray, depth: int) -> list[np.ndarray]:
    sims = query_emb @ image_emb.T
    return [top_k(row, depth) for row in sims]


CAPTION_ATTRIBUTES = ("colour", "shape", "size", "neighbour kind", "neighbour side")


def caption_accuracy(captions: Sequence[str], truths: Sequence[str]) -> dict[str, dict]:
    """Per-attribute accuracy of captions against the world's true descriptions of the same views.

    Both are read by :func:`~cgrs_ros.world.captions.parse_description`.  colour/shape/size count
    views whose true description shows the building; "neighbour kind" counts every neighbour the
    truth names (is it named?); "neighbour side" counts the truth's neighbours with a side that the
    caption names (is its side right?), so a caption is not credited for a side of a lake it missed.
    """
    from ..world.captions import parse_description

    hits = {name: [0, 0] for name in CAPTION_ATTRIBUTES}
    for caption, truth in zip(captions, truths, strict=True):
        said, real = parse_description(caption), parse_description(truth)
        if real["colour"] is not None:
            for name in ("colour", "shape", "size"):
                hits[name][0] += said[name] == real[name]
                hits[name][1] += 1
        for kind, side in real["neighbours"].items():
            named = kind in said["neighbours"]
            hits["neighbour kind"][0] += named
            hits["neighbour kind"][1] += 1
            if named and side is not None:
                hits["neighbour side"][0] += said["neighbours"][kind] == side
                hits["neighbour side"][1] += 1
    return {name: {"accuracy": round(100.0 * right / total, 1) if total else None, "count": total}
            for name, (right, total) in hits.items()}
