"""Score RoboSense Track 4 rankings locally against a ground-truth mapping (building-level hits).

The public Track 4 release has no ground truth, so every participant who has one (their own split
of GeoText-1652, a simulated world, the answers after the challenge) needs a scorer.  A ground
truth maps each image and each query to a building; a query is a hit at K when one of its first K
ranked images belongs to its building (the place-level protocol of :mod:`cgrs_ros.evaluation`).

Ground-truth file, either form (ids as a submission writes them, or as the files name them):

- JSON: ``{"images": {"image_0a1b": "0839", ...}, "queries": {"q1": "0839", ...}}``;
- text: one ``<id> <building>`` pair per line (TAB or spaces; blank lines and ``#`` comments
  skipped), where an id of Track 4 query form (``q_00001`` or ``q1``) is a query and any other
  id is an image.

Image ids may keep their file extension (``image_0a1b.jpeg``) and query ids may be in either form;
both are normalised to the submission's.  Pure Python: no torch, no rclpy.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import CGRSInputError
from .evaluation import DEFAULT_KS, recall_at_k
from .formats.robosense import IMAGE_SUFFIXES, is_track4_query_id, submission_query_id
from .jsonl import parse_json, read_text

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroundTruth:
    """Building of each image (by image id without extension) and of each query (by ``q1`` id)."""

    images: dict[str, str]
    queries: dict[str, str]
    source: str = ""


def image_key(image_id: str) -> str:
    """``image_0a1b.jpeg`` -> ``image_0a1b`` (a submission's ids have no extension)."""
    return Path(image_id).stem if image_id.lower().endswith(IMAGE_SUFFIXES) else image_id


def read_ground_truth(path: str | os.PathLike) -> GroundTruth:
    """Read either form of the module docstring; every bad entry is refused with where it is."""
    path = Path(path)
    text = read_text(path, "ground truth")
    if text.lstrip().startswith(("{", "[")):
        pairs = _json_pairs(path, text)
    else:
        pairs = _text_pairs(path, text)
    images: dict[str, str] = {}
    queries: dict[str, str] = {}
    for where, kind, raw_id, building in pairs:
        if not isinstance(raw_id, str) or not raw_id or not isinstance(building, str) or not building:
            raise CGRSInputError(f"{where}: expected a non-empty id and building (strings), "
                                 f"got {raw_id!r} -> {building!r}")
        table, key = ((queries, submission_query_id(raw_id)) if kind == "query"
                      else (images, image_key(raw_id)))
        if table.get(key, building) != building:
            raise CGRSInputError(f"{where}: {kind} {raw_id!r} is given building {building!r} "
                                 f"and {table[key]!r}")
        table[key] = building
    if not images or not queries:
        raise CGRSInputError(f"ground truth {path}: needs images and queries, found {len(images)} "
                             f"images and {len(queries)} queries")
    return GroundTruth(images, queries, str(path))


def _json_pairs(path: Path, text: str) -> list[tuple[str, str, str, str]]:
    data = parse_json(text, str(path), position=True)
    if (not isinstance(data, dict) or set(data) != {"images", "queries"}
            or not all(isinstance(v, dict) for v in data.values())):
        found = f"the keys {sorted(data)}" if isinstance(data, dict) else f"a {type(data).__name__}"
        raise CGRSInputError(f"{path}: expected {{\"images\": {{id: building}}, \"queries\": "
                             f"{{id: building}}}}, got {found}")
    pairs = []
    for kind in ("images", "queries"):
        for raw_id, building in data[kind].items():
            if kind == "queries" and not is_track4_query_id(raw_id):
                raise CGRSInputError(f"{path}: queries: {raw_id!r} is not a Track 4 query id "
                                     "('q_<digits>' or 'q<digits>')")
            pairs.append((f"{path}: {kind}", kind[:-1] if kind == "images" else "query", raw_id, building))
    return pairs


def _text_pairs(path: Path, text: str) -> list[tuple[str, str, str, str]]:
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise CGRSInputError(f"{path}:{number}: expected '<id> <building>', found {len(fields)} "
                                 f"fields in {line[:60]!r}")
        kind = "query" if is_track4_query_id(fields[0]) else "image"
        pairs.append((f"{path}:{number}", kind, fields[0], fields[1]))
    return pairs


def score_rankings(rankings: Sequence[tuple[str, Sequence[str]]], truth: GroundTruth,
                   ks: Sequence[int] = DEFAULT_KS, source: str = "rankings") -> dict[int, float]:
    """Recall@K (percent) over every query of ``truth``; ``rankings`` are (query id, image ids).

    A ground-truth query that was not ranked counts as a miss, and an image the ground truth does
    not know can never be a hit: both are warned about with a count, never dropped silently.
    Rankings of queries the ground truth does not know are not scored (all unknown: refused, it is
    the ground truth of another query file).
    """
    ranked: dict[str, Sequence[str]] = {}
    for query_id, images in rankings:
        ranked[submission_query_id(query_id)] = images
    unknown_queries = sorted(set(ranked) - set(truth.queries), key=lambda q: (len(q), q))   # q2 before q10
    if ranked and len(unknown_queries) == len(ranked):
        raise CGRSInputError(f"{source}: none of its {len(ranked)} queries is in the ground truth "
                             f"{truth.source} (e.g. {unknown_queries[0]!r})")
    if unknown_queries:
        _log.warning("%s: %d queries are not in the ground truth and are not scored (e.g. %s)",
                     source, len(unknown_queries), unknown_queries[0])
    missing = [q for q in truth.queries if q not in ranked]
    if missing:
        _log.warning("%s: %d of %d ground-truth queries are not ranked and count as misses (e.g. %s)",
                     source, len(missing), len(truth.queries), missing[0])
    unknown_images = {image_key(i) for images in ranked.values() for i in images[:max(ks)]
                      if image_key(i) not in truth.images}
    if unknown_images:
        _log.warning("%s: %d ranked image ids are not in the ground truth and never count as hits "
                     "(e.g. %s)", source, len(unknown_images), sorted(unknown_images)[0])
    ranked_buildings = [[truth.images.get(image_key(i)) for i in ranked.get(q, ())[:max(ks)]]
                        for q in truth.queries]
    return recall_at_k(ranked_buildings, list(truth.queries.values()), ks)
