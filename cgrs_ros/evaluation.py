"""Text -> image Recall@K with place-level positives, for coarse retrieval and CGRS in one run.

A query is a hit at K when any image of its place is among the top K (GeoText-1652 / RoboSense
protocol: positives are building-level).  Rankings are deterministic: equal scores keep gallery
order (coarse) or coarse order (rerank), so a figure can be reproduced exactly.  This is the
default protocol, ``place``; ``robosense-official`` reproduces the official evaluation code with its
quirks, for comparison with the leaderboard (:mod:`cgrs_ros.official_protocol`).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import numpy as np
from tqdm import tqdm

from . import official_protocol
from .errors import CGRSInputError
from .queries import Query

DEFAULT_KS = (1, 5, 10)
MODES = ("coarse", "cached", "online")
PROTOCOLS = ("place", official_protocol.NAME)


def recall_at_k(ranked_places: Sequence[Sequence[str]], positives: Sequence[str],
                ks: Sequence[int] = DEFAULT_KS) -> dict[int, float]:
    """Percent of queries whose place appears in the first K entries of their ranked place list."""
    if len(ranked_places) != len(positives):
        raise ValueError(f"{len(ranked_places)} rankings for {len(positives)} queries")
    if not positives:
        raise CGRSInputError("no queries with a known place to evaluate")
    first_hit = [next((i for i, place in enumerate(ranking) if place == positive), None)
                 for ranking, positive in zip(ranked_places, positives)]
    return {k: 100.0 * sum(h is not None and h < k for h in first_hit) / len(positives) for k in ks}


@dataclass
class EvaluationReport:
    n_queries: int
    ks: tuple[int, ...]
    recall: dict[str, dict[int, float]] = field(default_factory=dict)
    seconds_per_query: dict[str, float] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"n_queries": self.n_queries, "settings": self.settings,
                "recall": {mode: {f"R@{k}": round(v, 2) for k, v in r.items()} for mode, r in self.recall.items()},
                "seconds_per_query": {m: round(s, 5) for m, s in self.seconds_per_query.items()}}

    def table(self) -> str:
        header = f"{'mode':<14}" + "".join(f"{'R@' + str(k):>8}" for k in self.ks) + f"{'s/q batch':>10}"
        lines = [header, "-" * len(header)]
        for mode, values in self.recall.items():
            label = "coarse" if mode == "coarse" else f"CGRS-{mode}"
            lines.append(f"{label:<14}" + "".join(f"{values[k]:8.2f}" for k in self.ks)
                         + f"{self.seconds_per_query.get(mode, float('nan')):10.4f}")
        return "\n".join(lines)


def rank_all(engine, texts: Sequence[str], modes: Sequence[str], settings, depth: int,
             progress: bool = True, batch_size: int = 256) -> tuple[dict[str, list[np.ndarray]], dict[str, float]]:
    """Gallery rows ranked for every text under each mode, and the seconds per query of each mode.

    ``coarse`` is the CLIP-only baseline; every other mode is a caption mode answered by
    :meth:`~cgrs_ros.engine.CGRSEngine.rank`, the very path :meth:`~cgrs_ros.engine.CGRSEngine.query`
    takes, so a published recall is the recall of what the node serves.  Query texts are
    CLIP-encoded in batches first; the seconds are therefore an amortised batch *throughput*
    (per query latencies: ``bench/recall_benchmark.py`` measures ``engine.query`` p50/p90).
    """
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise CGRSInputError(f"unknown modes {unknown}; use {', '.join(MODES)}")
    if not modes:
        raise CGRSInputError(f"no modes to evaluate; use one or more of {', '.join(MODES)}")
    started = time.perf_counter()
    query_vectors = encode_queries(engine, texts, batch_size)
    encode_seconds = time.perf_counter() - started
    rankings, seconds = {}, {}
    for mode in modes:
        rankings[mode] = []
        mode_settings = settings if mode == "coarse" else replace(settings, caption_mode=mode)
        started = time.perf_counter()
        for i in tqdm(range(len(texts)), desc=f"rank {mode}", unit="q", disable=not progress, dynamic_ncols=True):
            if mode == "coarse":
                rows = engine.coarse(query_vectors[i], depth)
            else:
                rows = engine.rank(query_vectors[i], texts[i], mode_settings, depth).rows
            rankings[mode].append(rows[:depth])
        seconds[mode] = (time.perf_counter() - started + encode_seconds) / max(1, len(texts))
    return rankings, seconds


def encode_queries(engine, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """CLIP text vectors of ``texts``, encoded in batches."""
    return np.concatenate([engine.models.retriever.encode_texts(texts[i:i + batch_size])
                           for i in range(0, len(texts), batch_size)])


def evaluate(engine, queries: Sequence[Query], modes: Sequence[str] = ("coarse", "cached"),
             ks: Sequence[int] = DEFAULT_KS, settings=None, progress: bool = True,
             protocol: str = "place") -> EvaluationReport:
    """Rank every query with a known place under each mode; report Recall@K (percent) and time per query.

    ``protocol`` ``robosense-official`` scores the same rankings as the official code does (its
    queries must be GeoText ones, ``<image_id>#<n>``); its coarse scores are every image's CLIP
    cosine, so the query vectors are encoded once more (not part of the reported time).
    """
    if protocol not in PROTOCOLS:
        raise CGRSInputError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    scored = [q for q in queries if q.place_id is not None]
    if not scored:
        raise CGRSInputError("none of the queries has a place_id: nothing to score")
    settings = settings or engine.config.retrieval
    n_images = len(engine.index)
    if protocol == official_protocol.NAME:
        text_images = official_protocol.query_image_rows([q.query_id for q in scored],
                                                         [r.image_id for r in engine.index.records])
        labels = official_protocol.building_labels(list(engine.index.place_ids()))
    rankings, seconds = rank_all(engine, [q.text for q in scored], modes, settings,
                                 depth=max(max(ks), settings.top_k), progress=progress)
    report = EvaluationReport(len(scored), tuple(ks), seconds_per_query=seconds, settings={
        key: value for key, value in asdict(settings).items() if key not in ("caption_mode", "max_results")})
    report.settings["protocol"] = protocol
    places = engine.index.place_ids()
    for mode in modes:
        if protocol == "place":
            ranked_places = [places[rows[:max(ks)]].tolist() for rows in rankings[mode]]
            report.recall[mode] = recall_at_k(ranked_places, [q.place_id for q in scored], ks)
            continue
        if mode == "coarse":
            every_row = np.arange(n_images)
            scores = (engine.coarse_scores(vector, every_row)
                      for vector in encode_queries(engine, [q.text for q in scored]))
        else:
            scores = (official_protocol.ranking_scores(rows, n_images) for rows in rankings[mode])
        report.recall[mode] = official_protocol.text_to_image_recall(scores, text_images, labels, ks)
    return report
