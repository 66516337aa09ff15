"""Place-level evidence: which gallery images show the same place, and how a place is scored.

A gallery holds several views of each place (satellite, drones at several headings, a ground
photo).  Ranked as unrelated images, three views of one wrong roof can fill the top 5, and no
view's evidence supports another's.  Grouping views into places fixes both: results are distinct
places (what a navigation stack wants), and a place is judged on all of its views.

How views are grouped (``retrieval.grouping``):

- ``place_id``: the manifest's ``place_id`` (GeoText-1652 building ids, the world's places).
- ``radius``:   views whose camera positions lie within ``group_radius_m`` of each other, chained
  (connected components); views without coordinates stay alone.  For galleries whose ids are
  per image, e.g. the RoboSense Track 4 layout, but which are geo-tagged.
- ``visual``:   candidates whose CLIP image vectors have cosine >= ``group_cosine`` to a better
  ranked candidate (the Track 4 runner-up's near-duplicate rule); known only among candidates.
- ``none``:     every image is its own place (the paper's image-level rerank).

How a place is scored (documented rule, fixed before any test-world run):

- coarse:   the best CLIP cosine among its views (the view CLIP found);
- caption:  the mean caption score of its ``place_views`` best-matching views, over all of its
  views in the index (``place_id`` and ``radius`` grouping) or its candidate views (``visual``):
  a single misread caption cannot make or break a place, and a side that only some views show
  still counts;
- fused:    the usual per-query normalised mix (:mod:`cgrs_ros.fusion`) over the candidate places.
"""
from __future__ import annotations

import math

import numpy as np

GROUPINGS = ("place_id", "radius", "visual", "none")
_EARTH_RADIUS_M = 6371008.8


def place_keys(place_codes: np.ndarray, coordinates: np.ndarray, grouping: str, radius_m: float) -> np.ndarray | None:
    """One integer group per index row (None for ``visual``, which is decided per query).

    ``place_codes``: an integer per row, equal for equal ``place_id``; ``coordinates``: (N, 2)
    camera lat, lon in degrees, NaN where not geo-tagged (the index's columns)."""
    if grouping == "place_id":
        return np.asarray(place_codes, dtype=np.int64)
    if grouping == "none":
        return np.arange(len(place_codes), dtype=np.int64)
    if grouping == "radius":
        return radius_groups(coordinates, radius_m)
    return None


def radius_groups(coordinates: np.ndarray, radius_m: float) -> np.ndarray:
    """Connected components of "camera positions within ``radius_m``", through a grid of that size."""
    coordinates = np.asarray(coordinates, dtype=np.float64)
    n = len(coordinates)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    geo = np.flatnonzero(np.isfinite(coordinates).all(axis=1))
    if geo.size:
        lat0 = math.radians(float(coordinates[geo, 0].mean()))
        # local equirectangular metres: exact enough at the scale of one place
        xy = {int(i): (math.radians(coordinates[i, 1]) * math.cos(lat0) * _EARTH_RADIUS_M,
                       math.radians(coordinates[i, 0]) * _EARTH_RADIUS_M) for i in geo}
        cells: dict[tuple[int, int], list[int]] = {}
        for i, (x, y) in xy.items():
            cells.setdefault((int(x // radius_m), int(y // radius_m)), []).append(i)
        for (cx, cy), members in cells.items():
            near = [j for dx in (-1, 0, 1) for dy in (-1, 0, 1) for j in cells.get((cx + dx, cy + dy), ())]
            for i in members:
                for j in near:
                    if j > i and math.dist(xy[i], xy[j]) <= radius_m:
                        parent[root(i)] = root(j)
    roots = np.array([root(i) for i in range(n)])
    _, keys = np.unique(roots, return_inverse=True)
    return keys.astype(np.int64)


def visual_groups(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Group ids for candidates given best first: each joins the first earlier leader it nearly duplicates."""
    leaders: list[int] = []
    keys = np.empty(len(vectors), dtype=np.int64)
    for i, vector in enumerate(np.asarray(vectors, dtype=np.float32)):
        similar = [g for g, leader in enumerate(leaders) if float(vectors[leader] @ vector) >= threshold]
        if similar:
            keys[i] = similar[0]
        else:
            keys[i] = len(leaders)
            leaders.append(i)
    return keys


def place_caption_scores(view_scores: np.ndarray, place_of: np.ndarray, starts: np.ndarray,
                         best_views: int) -> np.ndarray:
    """Per place, the mean of the ``best_views`` highest caption scores of its views.

    ``view_scores`` of views given place after place (``place_of``: each view's place, ascending;
    ``starts``: where each place's views begin).  One sort for all places: a query pools 50-200."""
    view_scores = np.asarray(view_scores, dtype=np.float64)
    order = np.lexsort((-view_scores, place_of))          # each place's views, best first
    best = np.arange(len(order)) - starts[place_of] < max(1, best_views)     # place_of is sorted
    kept = order[best]
    return (np.bincount(place_of[kept], weights=view_scores[kept], minlength=len(starts))
            / np.bincount(place_of[kept], minlength=len(starts)))
