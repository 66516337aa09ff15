"""The RoboSense Track 4 / GeoText-1652 official text->image evaluation, reproduced quirk for quirk.

The leaderboard numbers come from ``itm_eval`` of the official code (robosense2025/track4,
``Method/re_bbox.py``, with the test loader of ``Method/dataset/re_bbox_dataset.py``).  It differs
from the place-level protocol of :mod:`cgrs_ros.evaluation` in two ways, both kept here on purpose
so that a figure can be compared with the leaderboard:

1. **Off-by-one building labels.**  The loader walks the annotation file in order and gives each
   image the current building counter *before* it increments the counter at a change of building,
   so the first image of every building after the first carries the previous building's label.  A
   text's building is the label of its own image; a hit is an image with the same label.
2. **fp16 scores, reversed argsort.**  Scores are stored in float16 and ranked with
   ``np.argsort(score)[::-1]``: numpy's default (introsort) order, reversed.  For up to 16 images
   that is an insertion sort, so among tied scores the *later* image comes first; for more images
   the tie order is whatever that numpy call gives, which is what :func:`text_to_image_recall`
   calls too.  Images outside a reranker's candidates hold the official matrix's fill, -100.

Only the text->image half is computed (Track 4 ranks images for a text).  Pure numpy: no torch,
no rclpy.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .errors import CGRSInputError

NAME = "robosense-official"
FILL_SCORE = -100.0   # the official score matrix's value outside a text's reranked candidates


def building_labels(buildings: Sequence[str]) -> np.ndarray:
    """The label the official test loader gives each image, from the images' buildings in file order.

    ``["A", "A", "B", "B", "C"]`` -> ``[0, 0, 0, 1, 1]``: the first image of B gets A's label and
    the first image of C gets B's.  A building that comes back after another is a new label.
    """
    labels = np.empty(len(buildings), dtype=np.int64)
    label, current = 0, None
    for i, building in enumerate(buildings):
        if current is None:
            current = building
        labels[i] = label
        if building != current:
            current, label = building, label + 1
    return labels


def text_to_image_recall(score_rows: Iterable[np.ndarray], text_images: Sequence[int], labels: np.ndarray,
                         ks: Sequence[int]) -> dict[int, float]:
    """Percent of texts whose building label is among the first K ranked images' labels.

    ``score_rows``: one score per image for each text, any float type (stored as float16 first,
    as the official code does; rows may come from a generator, so a large gallery never needs the
    whole matrix); ``text_images[t]``: the image row text ``t`` was written for; ``labels``: from
    :func:`building_labels`.
    """
    if not len(text_images):
        raise CGRSInputError("no texts to evaluate")
    ranks = []
    for row, image in zip(score_rows, text_images, strict=True):
        row = np.asarray(row, dtype=np.float16)
        if row.shape != labels.shape:
            raise ValueError(f"a score row of shape {row.shape} for {len(labels)} images")
        ranked_labels = labels[np.argsort(row)[::-1]]
        ranks.append(int(np.flatnonzero(ranked_labels == labels[image])[0]))
    ranks = np.array(ranks)
    return {k: 100.0 * float(np.mean(ranks < k)) for k in ks}


def ranking_scores(rows: np.ndarray, n_images: int) -> np.ndarray:
    """A score row that orders ``rows`` (a reranked ranking, best first) as ranked, the rest at -100.

    A reranker's ranking is not sorted by one score (CGRS orders places, then views), so its rows
    get decreasing whole numbers, exact in float16 for up to 2048 rows; like the official ITM
    matrix, the images it did not rank keep the fill value.
    """
    if len(rows) > 2048:
        raise ValueError(f"{len(rows)} ranked rows do not have distinct float16 scores")
    scores = np.full(n_images, FILL_SCORE, dtype=np.float32)
    scores[np.asarray(rows, dtype=np.int64)] = np.arange(len(rows), 0, -1, dtype=np.float32)
    return scores


def query_image_rows(query_ids: Sequence[str], image_ids: Sequence[str]) -> list[int]:
    """The image row each text was written for, from GeoText query ids ``"<image_id>#<n>"``
    (:func:`cgrs_ros.formats.load_geotext`): the official protocol labels a text by its image."""
    rows = {image_id: row for row, image_id in enumerate(image_ids)}
    found = []
    for query_id in query_ids:
        image_id, hash_, n = query_id.rpartition("#")
        if not hash_ or not n.isdigit():
            raise CGRSInputError(f"the {NAME} protocol labels a text by the image it describes; query id "
                                 f"{query_id!r} does not name one ('<image_id>#<n>': use --geotext)")
        if image_id not in rows:
            raise CGRSInputError(f"query {query_id!r} describes image {image_id!r}, which is not in the index")
        found.append(rows[image_id])
    return found


def check_same_gallery(json_ids: Sequence[str], index_ids: Sequence[str], json_source: str, index_path) -> None:
    """Refuse to score the official way unless the index holds exactly the GeoText JSON's images,
    in its order.

    The official code ranks the images the JSON names and labels them by their order in it
    (:func:`building_labels`); scored on an index of other images, or of the same ones in another
    order, it gives other, plausible numbers (a reordered JSON: R@1 79.50 instead of the official
    89.33), so a mismatch is refused with where the two first differ."""
    json_ids, index_ids = list(json_ids), list(index_ids)
    if json_ids == index_ids:
        return
    if set(json_ids) == set(index_ids):
        row = next(r for r, (a, b) in enumerate(zip(json_ids, index_ids)) if a != b)
        how = f"the same {len(json_ids)} images in another order (row {row}: {json_ids[row]!r} in the JSON, " \
              f"{index_ids[row]!r} in the index)"
    else:
        missing = [i for i in json_ids if i not in set(index_ids)]
        extra = [i for i in index_ids if i not in set(json_ids)]
        how = (f"{len(index_ids)} images, the JSON {len(json_ids)}"
               + (f"; {len(missing)} of the JSON's are not in the index (e.g. {missing[0]!r})" if missing else "")
               + (f"; {len(extra)} of the index's are not in the JSON (e.g. {extra[0]!r})" if extra else ""))
    raise CGRSInputError(f"the {NAME} protocol ranks the gallery of {json_source} in its order, and the index "
                         f"{index_path} holds {how}; index this JSON (copy the index folder and run cgrs-index "
                         f"--geotext {json_source} --out <the copy>: every image already encoded is reused)")
