"""The CGRS engine: a loaded index plus models, answering language queries with ranked places.

Per query (CGRS, arXiv 2510.02728):
1. coarse: CLIP text embedding of the query, cosine top-K over the index's image embeddings;
2. places: the candidates are grouped into places (:mod:`cgrs_ros.places`), and each candidate
   place brings all of its views as evidence;
3. captions of those views: cached (from the index, the fast path) or online (captioned now, as
   the paper does, remembered so no image is captioned twice, and logged in the index folder so a
   restart does not caption it again either: :mod:`cgrs_ros.caption_log`).  ``cached`` on an
   index built without captions (``index.captions: none``) captions each candidate online the first
   time it is needed, then reads it from memory or the log; ``off`` (and the coarse baseline)
   never caption;
4. rerank: the query is matched against each caption (by default the clause matcher of
   :mod:`cgrs_ros.models.text_similarity`, which checks each landmark the query names on the compass
   side it names; or a bi-encoder cosine, or a cross-encoder), a place's caption score is pooled from
   its views, and fused with its coarse score.
If the caption stage fails, the coarse ranking is returned marked ``degraded``, never nothing.

:meth:`CGRSEngine.rank` is the one retrieval path: :meth:`CGRSEngine.query` and the batch
evaluation (:func:`cgrs_ros.evaluation.rank_all`, hence every published recall) both call it.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .calibration import load_calibration, ranking_features
from .facts import PlaceEvidence, agreement, differences, read_facts, unknown_word_share
from .caption_log import CaptionLog
from .config import EngineConfig, RetrievalSettings
from .fingerprint import caption_key
from .fusion import fuse, rank_order
from .index import GalleryIndex, load_image, load_index
from .places import place_caption_scores, place_keys, visual_groups
from .queries import validate_query_text
from .rectify import compass_views, views_for_captioner
from .search import exact_scores, open_search

Progress = Callable[[str, float], None]


class QueryCancelled(Exception):
    """Raised when ``should_stop`` turns true between stages (an action goal was cancelled)."""


@dataclass(frozen=True)
class QueryOptions:
    """Per-query overrides of the engine's retrieval settings; None keeps the configured value."""

    top_k: int | None = None
    fusion_weight: float | None = None
    caption_mode: str | None = None
    max_results: int | None = None
    normalization: str | None = None
    grouping: str | None = None

    def apply(self, settings: RetrievalSettings) -> RetrievalSettings:
        changes = {k: v for k, v in vars(self).items() if v is not None}
        return replace(settings, **changes).validated("query options")


@dataclass(frozen=True)
class Match:
    rank: int
    image_id: str
    place_id: str
    platform: str
    score: float
    coarse_score: float
    caption_score: float
    caption: str
    lat: float | None
    lon: float | None
    alt: float | None
    heading: float | None
    image_path: Path
    row: int

    @property
    def has_geo(self) -> bool:
        return self.lat is not None and self.lon is not None


class LazyMatches(Sequence[Match]):
    """The matches of some ranked rows, each decoded from the index when first read.

    A place's supporting views are evidence most callers only count: decoding a record (and
    checking its path) costs ~0.1 ms, and ten places of ten views would be ~10 ms of a query.
    """

    def __init__(self, rows: Sequence[int], decode: Callable[[int], Match]):
        self._rows, self._decode = [int(r) for r in rows], decode     # ``decode`` memoises

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return self._decode(self._rows[i])


@dataclass(frozen=True)
class PlaceMatch:
    """One distinct place among the results: its views that support it, best view first.

    A navigation stack wants N distinct targets, not three photos of one roof; ``views`` keeps the
    image-level evidence (``views[0]`` is the view to show and whose camera pose is reported),
    decoded on access.
    """

    rank: int
    place_id: str
    score: float
    views: Sequence[Match]

    @property
    def best(self) -> Match:
        return self.views[0]

    @property
    def n_views(self) -> int:
        return len(self.views)


@dataclass
class Ranking:
    """What :meth:`CGRSEngine.rank` decided for one query (arrays aligned with ``rows``).

    ``rows`` is the image-level ranking: the best view of each candidate place in place order,
    then the places' other views, then the remaining coarse order (so an image-level top-10, as
    Track 4 scores it, shows ten distinct places where there are ten).  ``places`` lists every
    candidate place, best first.
    """

    rows: np.ndarray
    coarse: np.ndarray
    caption: np.ndarray | None
    fused: np.ndarray
    captions: list[str] | None
    places: list[RankedPlace]
    error: str | None = None
    captioned: int = 0        # images captioned for this ranking (0 when every caption was known)
    seconds: dict = field(default_factory=dict)     # time of its stages: search, captions, rerank


@dataclass(frozen=True)
class RankedPlace:
    """One candidate place of a :class:`Ranking`: fused score, its parts, and its views best first."""

    score: float
    coarse: float
    caption: float        # pooled caption score (NaN without captions)
    rows: np.ndarray


@dataclass(frozen=True)
class Ambiguity:
    """Two or more of the first places fit the goal equally: the result names them instead of
    picking one, with what tells them apart, so an operator (or a voice front-end) can ask."""

    place_ids: tuple[str, ...]       # the places that fit, best ranked first
    differences: tuple[str, ...]     # per place (same order): what its captions state that the other's do not
                                     # (the first two places compared; '' for the others)
    question: str                    # one question whose answer decides between them


@dataclass(frozen=True)
class Judgement:
    """How far a ranking's best place can be trusted: the confidence's features (None: none can be
    computed) and the places the goal does not tell apart."""

    features: np.ndarray | None
    ambiguity: Ambiguity | None


@dataclass
class QueryResult:
    """``matches`` ranks images (the Track 4 submission needs them); ``places`` ranks distinct places.

    ``confidence`` is the calibrated probability that ``places[0]`` is the place the query asks for
    (NaN when no calibration is available or the goal's settings are not those it was fitted for;
    ``confidence_note`` says why): an absolute measure, unlike the fused score, which only says how
    the best candidate compares with the others.  ``ambiguity`` is set when several of the first
    places fit the goal equally (then the best is a coin toss, whatever its confidence).  ``captioned`` counts the images
    the query had to caption (the expensive stage; 0 when the index, memory or the log had them).
    ``timings`` are seconds: ``encode`` (the CLIP text encoding of the goal), ``search`` (coarse
    search and grouping into places), ``captions`` (the candidates' captions read or made, and
    matched with the goal, its clauses encoded where the matcher has not seen them), ``rerank``
    (fusion and ordering), ``assemble`` (the result), ``confidence`` (the goal's facts read against
    the first places' captions, and the calibrated probability) and ``total``.
    """

    query: str
    matches: list[Match]
    reranked: bool
    degraded: bool
    status: str
    settings: RetrievalSettings
    timings: dict = field(default_factory=dict)
    places: list[PlaceMatch] = field(default_factory=list)
    confidence: float = math.nan
    captioned: int = 0
    confidence_note: str = ""
    ambiguity: Ambiguity | None = None


# places whose captions are compared with the goal's facts (rivals, better agreements elsewhere)
JUDGED_PLACES = 10


class CaptionCache:
    """Online captions by index row (made now or read from the caption log) and their text vectors,
    encoded when first needed (a long log costs no start-up time); thread-safe, each filled at most
    once per row."""

    def __init__(self, captions: dict[int, str] | None = None):
        self._captions: dict[int, str] = dict(captions or {})
        self._vectors: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def uncaptioned(self, rows) -> list[int]:
        with self._lock:
            return [int(r) for r in rows if int(r) not in self._captions]

    def unembedded(self, rows) -> tuple[list[int], list[str]]:
        """Rows (all captioned) whose caption has no vector yet, and those captions."""
        with self._lock:
            missing = [int(r) for r in rows if int(r) not in self._vectors]
            return missing, [self._captions[r] for r in missing]

    def put_captions(self, rows, captions) -> None:
        with self._lock:
            for row, caption in zip(rows, captions):
                self._captions.setdefault(int(row), caption)

    def put_vectors(self, rows, vectors) -> None:
        with self._lock:
            for row, vector in zip(rows, vectors):
                self._vectors.setdefault(int(row), vector)

    def texts(self, rows) -> list[str]:
        """The captions of ``rows``, '' for a row not captioned yet."""
        with self._lock:
            return [self._captions.get(int(r), "") for r in rows]

    def get(self, rows) -> tuple[list[str], np.ndarray]:
        with self._lock:
            return [self._captions[int(r)] for r in rows], np.stack([self._vectors[int(r)] for r in rows])

    def __len__(self) -> int:
        return len(self._captions)


class CGRSEngine:
    def __init__(self, config: EngineConfig, index: GalleryIndex, models):
        self.config, self.index, self.models = config, index, models
        self.caption_log = CaptionLog(index.caption_log_file, caption_key(config))
        self.caption_cache = CaptionCache(self.caption_log.read(index.image_id, len(index)))
        self.search = open_search(index, config.index.search, _search_device(config.device))
        self._groupings: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}
        self.calibration, self.calibration_note = load_calibration(config)

    @classmethod
    def load(cls, config: EngineConfig, index_dir: str | Path | None = None,
             device: str | None = None) -> "CGRSEngine":
        """Open the index (refusing one made by other models) and load the models queries need.

        ``index_dir`` None serves the embedded demo gallery, built on first use.  The captioner is
        only loaded when the configured caption mode captions at query time (``online``, or
        ``cached`` on an index without captions); it is loaded on first use if a query asks for
        online captions later.
        """
        from .models import load_models
        from .models.device import apply_threads

        if device:
            config = replace(config, device=device)
        apply_threads(config.threads)
        if index_dir is None:
            from .demo import ensure_demo_index
            index_dir = ensure_demo_index(config)
        index = load_index(index_dir, config)
        kinds = ["retriever", "text_similarity"]
        if config.retrieval.caption_mode == "online" or (config.retrieval.caption_mode == "cached"
                                                         and not index.has_captions):
            kinds.append("captioner")
        return cls(config, index, load_models(config, kinds))

    def close(self) -> None:
        self.models.close()

    # -- query -----------------------------------------------------------------------------
    def query(self, text: str, options: QueryOptions | None = None, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None) -> QueryResult:
        text = validate_query_text(text)
        settings = (options or QueryOptions()).apply(self.config.retrieval)
        report = progress or (lambda stage, fraction: None)
        timings: dict[str, float] = {}
        started = time.perf_counter()

        def stage(name: str, fraction: float) -> None:
            if should_stop is not None and should_stop():
                raise QueryCancelled(f"cancelled before {name}")
            report(name, fraction)

        stage("coarse", 0.0)
        query_vector = self.models.retriever.encode_texts([text])[0]
        timings["encode"] = time.perf_counter() - started
        ranking = self.rank(query_vector, text, settings, settings.max_results, stage)
        timings.update(ranking.seconds)
        stage("rerank", 0.9)
        assembling = time.perf_counter()
        result = self.assemble(text, ranking, settings)
        timings["assemble"] = time.perf_counter() - assembling
        judging = time.perf_counter()
        self.set_confidence(result, text, ranking, settings)
        timings["confidence"] = time.perf_counter() - judging
        timings["total"] = time.perf_counter() - started
        result.timings = timings
        report("done", 1.0)
        return result

    def rank(self, query_vector: np.ndarray, text: str, settings: RetrievalSettings, depth: int,
             stage: Callable[[str, float], None] | None = None) -> Ranking:
        """The one retrieval path: coarse top-K, places, captions, rerank (see the module docstring).

        ``stage(name, fraction)`` is called between stages (it may raise :class:`QueryCancelled`).
        A caption-stage failure returns the coarse ranking with ``error`` set.
        """
        started = time.perf_counter()
        candidates = self.search.search(query_vector, max(settings.top_k, depth))
        views, sizes = self._candidate_places(candidates[:settings.top_k], settings)
        searched = time.perf_counter()
        place_of = np.repeat(np.arange(len(sizes)), sizes)          # each view's candidate place
        starts = np.cumsum(sizes) - sizes                            # where each place's views begin
        caption = captions = error = None
        captioned = 0
        if settings.caption_mode != "off":
            if stage is not None:
                stage("captions", 0.3)
            try:
                captions, caption, captioned = self._caption_scores(text, views, settings.caption_mode)
            except QueryCancelled:
                raise
            except Exception as exc:  # any caption-stage failure degrades to the coarse ranking
                error = f"{type(exc).__name__}: {exc}"
        matched = time.perf_counter()
        view_coarse = self.coarse_scores(query_vector, views)
        view_fused = (view_coarse if caption is None
                      else fuse(view_coarse, caption, settings.fusion_weight, settings.normalization))
        # positions of the views grouped by place, best view first (ties keep the coarse order)
        by_place = np.lexsort((-view_fused, place_of))
        place_fused = place_coarse = np.maximum.reduceat(view_coarse, starts)
        place_caption = np.full(len(sizes), math.nan)
        if caption is not None:
            place_caption = place_caption_scores(caption, place_of, starts, settings.place_views)
            place_fused = fuse(place_coarse, place_caption, settings.fusion_weight, settings.normalization)
        place_order = rank_order(place_fused)
        place_rank = np.empty_like(place_order)
        place_rank[place_order] = np.arange(len(place_order))
        rests = np.delete(by_place, starts)                      # every view but each place's best
        positions = np.concatenate([by_place[starts][place_order],
                                    rests[np.argsort(place_rank[place_of[rests]], kind="stable")]])
        rows = views[positions]
        # the coarse order past the candidate places, when ``depth`` asks for more rows than they have
        tail = (candidates[~np.isin(candidates, rows)][:depth - len(rows)] if depth > len(rows)
                else candidates[:0])
        fused, coarse, pooled = place_fused.tolist(), place_coarse.tolist(), place_caption.tolist()
        grouped = views[by_place]            # each place's views best first, one place after another
        first, last = starts.tolist(), (starts + sizes).tolist()
        return Ranking(
            rows=np.concatenate([rows, tail]),
            coarse=np.concatenate([view_coarse[positions], self.coarse_scores(query_vector, tail)]),
            caption=None if caption is None else np.concatenate([caption[positions], np.full(len(tail), np.nan)]),
            fused=np.concatenate([view_fused[positions], np.full(len(tail), np.nan)]),
            captions=None if captions is None else [captions[p] for p in positions.tolist()] + [None] * len(tail),
            places=[RankedPlace(fused[i], coarse[i], pooled[i], grouped[first[i]:last[i]])
                    for i in place_order.tolist()], error=error, captioned=captioned,
            seconds={"search": searched - started, "captions": matched - searched,
                     "rerank": time.perf_counter() - matched})

    # -- confidence ------------------------------------------------------------------------------
    def set_confidence(self, result: QueryResult, text: str, ranking: Ranking, settings: RetrievalSettings) -> None:
        """``result``'s calibrated confidence, why it is NaN when it is, and its ambiguity."""
        if result.degraded or ranking.caption is None:
            result.confidence_note = "no caption evidence (" + ("degraded" if result.degraded else "caption mode off") + ")"
            return
        judgement = self.judge(text, ranking)
        result.ambiguity = judgement.ambiguity
        if self.calibration is None:
            result.confidence_note = self.calibration_note
            return
        result.confidence_note = self.calibration.refuses(settings)
        if not result.confidence_note:
            result.confidence = self.calibration.probability(judgement.features)
            if math.isnan(result.confidence):
                result.confidence_note = "no caption evidence for the best place"

    def judge(self, text: str, ranking: Ranking) -> Judgement:
        """The goal's facts against the captions of the first :data:`JUDGED_PLACES` places
        (:mod:`cgrs_ros.facts`): the confidence's features and the ambiguity, if any."""
        goal = read_facts(text)
        places = ranking.places[:JUDGED_PLACES]
        evidence = [self.place_evidence(place.rows) for place in places]
        agreements = tuple(agreement(goal, e) for e in evidence)
        words = set().union(*(e.words for e in evidence)) if evidence else set()
        features = ranking_features(ranking, agreements, unknown_word_share(goal, words))
        ambiguity = None
        fitting = [n for n, a in enumerate(agreements) if a.fits]
        if agreements and agreements[0].fits and len(fitting) > 1:
            ambiguity = self._ambiguity([places[n] for n in fitting], [evidence[n] for n in fitting], goal)
        return Judgement(features, ambiguity)

    def place_evidence(self, rows: np.ndarray) -> PlaceEvidence:
        """What the captions of one place's views (index rows) state, sides read only from north-up views."""
        compass = compass_views(self.index.platform_codes[rows], self.index.headings[rows], self.config.index)
        if self.index.has_captions:
            captions = self.index.caption_texts(rows)
        else:                                       # captioned at query time: what this engine has made
            captions = self.caption_cache.texts(rows)
        return PlaceEvidence.of(captions, compass.tolist())

    def _ambiguity(self, places: list[RankedPlace], evidence: list[PlaceEvidence], goal) -> Ambiguity:
        ids = [self.index.records[int(place.rows[0])].place_id for place in places]
        first, second = differences(evidence[0], evidence[1], goal)
        apart = [", ".join(first) or "no other landmark named", ", ".join(second) or "no other landmark named"]
        question = (f"Two places fit: {ids[0]} ({apart[0]}) or {ids[1]} ({apart[1]})?" if first or second else
                    f"Two places fit and their captions do not tell them apart: {ids[0]} or {ids[1]}?")
        if ids[2:]:
            question += f" ({len(ids) - 2} more fit: {', '.join(ids[2:])})"
        return Ambiguity(tuple(ids), tuple(apart + [""] * (len(ids) - 2)), question)

    def coarse_scores(self, query_vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """CLIP cosine of the query with the gallery images ``rows`` (the score coarse search ranks by)."""
        return exact_scores(self.index.image_embeddings, rows, query_vector)

    def coarse(self, query_vector: np.ndarray, k: int) -> np.ndarray:
        """The CLIP-only baseline: the ``k`` most similar images, best first."""
        return self.search.search(query_vector, k)

    def _candidate_places(self, head: np.ndarray, settings: RetrievalSettings) -> tuple[np.ndarray, np.ndarray]:
        """(views, sizes): the rows of the places of the candidates ``head`` (first appearance order),
        each place with all its views, one place after another, and how many views each has."""
        if settings.grouping == "visual":
            keys = visual_groups(np.asarray(self.index.image_embeddings[head], dtype=np.float32), settings.group_cosine)
            order = np.argsort(keys, kind="stable")
            return head[order], np.bincount(keys)         # keys number the groups by first appearance
        keys, order, starts = self._grouping(settings)
        wanted = np.fromiter(dict.fromkeys(keys[head].tolist()), dtype=np.int64)
        sizes = starts[wanted + 1] - starts[wanted]
        offsets = np.repeat(starts[wanted] - (np.cumsum(sizes) - sizes), sizes)
        return order[offsets + np.arange(int(sizes.sum()))], sizes

    def _grouping(self, settings: RetrievalSettings):
        """(key per row, rows sorted by key, start offsets per key), computed once per setting."""
        name = (settings.grouping, settings.group_radius_m)
        if name not in self._groupings:
            keys = place_keys(self.index.place_codes, self.index.coordinates, settings.grouping,
                              settings.group_radius_m)
            order = np.argsort(keys, kind="stable")
            starts = np.searchsorted(keys[order], np.arange(int(keys.max(initial=-1)) + 2))
            self._groupings[name] = (keys, order, starts)
        return self._groupings[name]

    def _caption_scores(self, text: str, rows: np.ndarray, mode: str) -> tuple[list[str] | None, np.ndarray, int]:
        """Captions of ``rows`` (cached, or online: see the module docstring; None where the index's
        clause table stands for them: a match reads its own caption), how well each matches the
        query, and how many were captioned now."""
        matcher = self.models.text_similarity
        compass = compass_views(self.index.platform_codes[rows], self.index.headings[rows], self.config.index)
        if mode == "cached" and self.index.has_captions:
            table = self.index.clause_table
            if table is not None and table.key == getattr(matcher, "clause_key", None):
                return None, np.asarray(matcher.score_table(text, table, rows, compass), dtype=np.float64), 0
            captions = self.index.caption_texts(rows)
            vectors = np.asarray(self.index.caption_embeddings[rows], dtype=np.float32)
            captioned = 0
        else:
            captions, vectors, captioned = self.online_captions(rows)
        scores = matcher.score(text, captions, vectors, compass=compass)
        return captions, np.asarray(scores, dtype=np.float64), captioned

    def online_captions(self, rows) -> tuple[list[str], np.ndarray, int]:
        """Captions of ``rows`` and their text vectors, and how many rows were captioned now: only
        rows this engine has not captioned before and the caption log does not hold (batched, then
        logged); vectors are encoded for the captions that have none yet."""
        missing = self.caption_cache.uncaptioned(rows)
        if missing:
            if self.models.captioner is None:
                from .models import CAPTIONERS
                self.models.captioner = CAPTIONERS.build(self.config.model_spec("captioner"))
            settings = self.config.index
            records = [self.index.records[r] for r in missing]
            images = [load_image(self.index.record_path(record), settings.max_image_side) for record in records]
            captions = self.models.captioner.caption(views_for_captioner(
                images, records, settings.rectify, settings.horizontal_platforms))
            self.caption_cache.put_captions(missing, captions)
            self.caption_log.append([(row, record.image_id, caption)
                                     for row, record, caption in zip(missing, records, captions)])
        unembedded, texts = self.caption_cache.unembedded(rows)
        if unembedded:
            matcher = self.models.text_similarity
            self.caption_cache.put_vectors(unembedded, matcher.encode(texts) if matcher.embeds_captions
                                           else np.zeros((len(texts), 0), np.float32))
        return (*self.caption_cache.get(rows), len(missing))

    def assemble(self, text: str, ranking: Ranking, settings: RetrievalSettings) -> QueryResult:
        """The result a caller sees: matches for the first ``max_results`` rows and the first
        ``max_results`` places (their views decoded when read: a record is decoded per row asked for)."""
        shown_places = ranking.places[:settings.max_results]
        decoded: dict[int, Match] = {}

        def match(row: int) -> Match:          # each row decoded once, whichever list reads it first
            if row not in decoded:
                position = int(np.flatnonzero(ranking.rows == row)[0])    # a few dozen rows are read
                decoded[row] = self._match(row, position, ranking)
            return decoded[row]

        places = []
        for rank, place in enumerate(shown_places, start=1):
            views = LazyMatches(place.rows, match)
            places.append(PlaceMatch(rank, views[0].place_id, place.score, views))
        reranked = ranking.caption is not None
        status = (f"reranked {len(ranking.places)} candidate places with {settings.caption_mode} captions"
                  if reranked else "coarse ranking (caption mode off)")
        result = QueryResult(text, [match(int(r)) for r in ranking.rows[:settings.max_results]], reranked,
                             False, status, settings, places=places, captioned=ranking.captioned)
        if ranking.error is not None:
            result.degraded = True
            result.status = f"caption stage failed ({ranking.error}); coarse ranking only"
        return result

    def _match(self, row: int, position: int, ranking: Ranking) -> Match:
        record = self.index.records[row]
        caption = ranking.captions[position] if ranking.captions is not None else None
        return Match(
            rank=position + 1, image_id=record.image_id, place_id=record.place_id, platform=record.platform,
            score=float(ranking.fused[position]), coarse_score=float(ranking.coarse[position]),
            caption_score=math.nan if ranking.caption is None else float(ranking.caption[position]),
            caption=caption if caption is not None else self.index.captions[row],
            lat=record.lat, lon=record.lon, alt=record.alt, heading=record.heading,
            image_path=self.index.record_path(record), row=row)


def _search_device(device: str) -> str:
    """Where coarse search runs: the engine's CUDA device when it has one, else the CPU."""
    from .models.device import resolve_device

    return str(resolve_device(device))
