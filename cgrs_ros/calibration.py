"""Calibrated confidence: the probability that a result's best place is the place the goal asks for.

A fused score is relative: it says how the best candidate compares with the other candidates of
the same query, so the best of any list, even the list returned for "banana", looks confident.
A navigation stack needs an absolute measure.  This module maps *absolute* signals of a ranking
to a probability with two logistic models fitted on the validation world (never the test world),
see :class:`Calibration`:

- ``caption``:  the best place's pooled caption score (how well its captions support the goal);
- ``caption_gap``: how far it is ahead of the runner-up place on that score;
- ``clip``:     the best place's raw CLIP cosine with the query;
- ``margin``:   the fused-score margin to the runner-up place;
- ``supported``: the share of the goal's facts (:mod:`cgrs_ros.facts`: roof colour, shape, size,
  each landmark and its side) that the best place's captions support, its unread clauses counted
  as unsupported;
- ``contradicted``: the share its captions contradict (the goal says T-shaped, the captions say
  rectangular; the pool on the west is rectangular, not round): what makes a near miss a miss;
- ``weakest``:  the least share of the best place's views that agree with one of the goal's facts (a
  near miss's changed fact is the one its captions support weakly, if at all);
- ``rival``:    another of the first places agrees with the goal as well and contradicts none of it (the
  goal does not tell them apart);
- ``better_elsewhere``: another of the first places agrees with the goal better than the best one;
- ``unknown_words``: the share of the goal's words that neither the fact lexicon nor the candidate
  places' captions know (a transcript of mostly misheard words).

Out-of-world goals (gibberish, unrelated requests, emoji, other languages: :func:`out_of_world_goals`)
are the negatives of the in-domain model, so "nothing here fits" has somewhere to go; near misses
(one fact of a real place changed so that no place fits) and goals written tersely or transcribed
with word errors are among the validation goals of the other (``bench/calibration_benchmark.py``).
A calibration file records the engine fingerprint and retrieval settings it was fitted for; an
engine with other models or settings gets no calibration (confidence NaN), never a wrong one, and
so does a goal whose own settings (an action goal's ``top_k``, a runtime parameter set) differ from
them (:meth:`Calibration.refuses`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import CGRSInputError

FEATURES = ("caption", "caption_gap", "clip", "margin", "supported", "contradicted", "weakest", "rival",
            "better_elsewhere", "unknown_words")
# indexes into FEATURES: what says the goal is about this world at all
DOMAIN_FEATURES = (0, 4, 9)
# Retrieval settings the score distributions depend on (a calibration is only valid for them).
CALIBRATED_SETTINGS = ("top_k", "fusion_weight", "normalization", "caption_mode", "grouping", "group_radius_m",
                       "group_cosine", "place_views")


def ranking_features(ranking, agreements=None, unknown_words: float = 1.0) -> np.ndarray | None:
    """The FEATURES of a :class:`~cgrs_ros.engine.Ranking` (None without caption scores).

    ``agreements``: :class:`cgrs_ros.facts.Agreement` of the goal with each of the first places, best
    first; ``unknown_words``: :func:`cgrs_ros.facts.unknown_word_share` over their captions."""
    places = ranking.places
    if not places or ranking.caption is None or not math.isfinite(places[0].caption) or not agreements:
        return None
    runner = places[1] if len(places) > 1 else None
    best, others = agreements[0], agreements[1:]
    content = best.facts + best.unread_clauses
    return np.array([places[0].caption,
                     places[0].caption - (runner.caption if runner else 0.0),
                     places[0].coarse,
                     places[0].score - (runner.score if runner else 0.0),
                     best.supported / content if content else 0.0,
                     best.contradicted / best.facts if best.facts else 0.0,
                     best.weakest,
                     float(best.plausible and any(a.plausible and a.balance >= best.balance for a in others)),
                     float(any(a.balance > best.balance for a in others)),
                     unknown_words], dtype=np.float64)


@dataclass(frozen=True)
class Logistic:
    """A logistic model on standardised features."""

    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]        # feature standardisation (fitted on validation)
    scale: tuple[float, ...]

    def probability(self, features: np.ndarray) -> float:
        z = (np.asarray(features, np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(1.0 / (1.0 + math.exp(-float(np.dot(self.weights, z) + self.bias))))


@dataclass(frozen=True)
class Calibration:
    """P(best place right) = P(the goal is about this world) x P(best place right | it is).

    Two models, because one linear model cannot say "whatever else, the captions must support the
    goal": on in-world goals the caption score barely separates right from wrong (the CLIP and the
    margins do), so a single fit gives it almost no weight, and a gibberish goal that happens to hit
    one image's CLIP vector hard ("parxww rqsyxn": CLIP 0.74, fused margin 1.3, caption 0.17 where
    real goals have 0.31 and more) came out 0.84 confident.  ``in_domain`` sees only the caption
    evidence (DOMAIN_FEATURES), fitted on the validation goals against the out-of-world goals;
    ``correct`` sees all FEATURES, fitted on the validation goals alone.  An out-of-world goal is never
    right, so the product is the probability the node needs.
    """

    correct: Logistic
    in_domain: Logistic
    fitted_for: dict               # engine fingerprint + retrieval settings
    fitted_on: dict                # what data (for the record)

    def probability(self, features: np.ndarray | None) -> float:
        if features is None:
            return math.nan
        features = np.asarray(features, np.float64)
        return self.in_domain.probability(features[list(DOMAIN_FEATURES)]) * self.correct.probability(features)

    def refuses(self, settings) -> str:
        """Why this calibration says nothing about a goal run with ``settings`` (a
        :class:`~cgrs_ros.config.RetrievalSettings`): '' when it was fitted for them.  A goal's own
        ``top_k`` or ``fusion_weight`` moves every feature's distribution (top_k 5 measured 0.9994
        where the fitted settings gave the same goal 0.379), so any difference gives NaN."""
        fitted = self.fitted_for.get("retrieval", {})
        changed = [f"{key} {getattr(settings, key)!r} (fitted for {fitted.get(key)!r})" for key in CALIBRATED_SETTINGS
                   if getattr(settings, key) != fitted.get(key)]
        return "calibration not fitted for " + ", ".join(changed) if changed else ""

    def save(self, path: Path) -> None:
        data = dict(asdict(self), features=list(FEATURES), domain_features=[FEATURES[i] for i in DOMAIN_FEATURES])
        Path(path).write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if (data.pop("features"), data.pop("domain_features")) != (
                    list(FEATURES), [FEATURES[i] for i in DOMAIN_FEATURES]):
                raise ValueError("it was fitted on other features")
            models = {name: Logistic(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in data.pop(name).items()})
                      for name in ("correct", "in_domain")}
            return cls(**models, **data)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CGRSInputError(f"calibration file {path} cannot be used: {exc}") from exc


# matcher keys that change speed or memory, not scores (``text_runtime`` auto, torch and onnx give the
# same vectors to ~1e-6; only onnx_int8 moves them, recorded apart below)
_RUNTIME_KEYS = ("device", "dtype", "batch_size", "cache_clauses", "cache_queries", "cache_pairs", "text_runtime")


def fitted_for(config) -> dict:
    """What a calibration is valid for: the models (by content, not by path), retrieval settings,
    which captions' sides the matcher reads (``index.north_up_platforms``), and which text encoders
    run with int8 weights (``text_runtime: onnx_int8`` moves the scores the features are made of)."""
    from .fingerprint import describe_value, engine_fingerprint

    valid_for = {"engine": engine_fingerprint(config),
                 "text_similarity": {k: describe_value(v) for k, v in sorted(config.text_similarity.items())
                                     if k not in _RUNTIME_KEYS},
                 "retrieval": {k: getattr(config.retrieval, k) for k in CALIBRATED_SETTINGS},
                 "north_up_platforms": sorted(config.index.north_up_platforms)}
    int8 = [kind for kind in ("retriever", "text_similarity") if getattr(config, kind).get("text_runtime") == "onnx_int8"]
    if int8:          # absent otherwise, so calibrations fitted before the key existed stay valid
        valid_for["int8_text_encoders"] = int8
    return valid_for


def load_calibration(config) -> tuple[Calibration | None, str]:
    """The config's calibration if it was fitted for these models and settings, and why not otherwise."""
    if not config.calibration:
        return None, "no calibration configured"
    calibration = Calibration.load(Path(config.calibration))
    wanted = json.loads(json.dumps(fitted_for(config)))
    if calibration.fitted_for != wanted:
        return None, f"calibration {config.calibration} was fitted for other models or retrieval settings"
    return calibration, ""


def fit(features: np.ndarray, labels: np.ndarray, in_world: np.ndarray, fitted_for_: dict,
        fitted_on: dict) -> Calibration:
    """Both models of a :class:`Calibration`: ``correct`` on the in-world goals' FEATURES and labels,
    ``in_domain`` on every goal's DOMAIN_FEATURES against ``in_world``."""
    x, in_world = np.asarray(features, np.float64), np.asarray(in_world, bool)
    return Calibration(correct=fit_logistic(x[in_world], np.asarray(labels, np.float64)[in_world]),
                       in_domain=fit_logistic(x[:, list(DOMAIN_FEATURES)], in_world.astype(np.float64)),
                       fitted_for=fitted_for_, fitted_on=fitted_on)


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1e-2, iterations: int = 50) -> Logistic:
    """Logistic regression (Newton's method, small L2) on standardised features."""
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64)
    mean, scale = x.mean(0), x.std(0) + 1e-9
    z = np.column_stack([(x - mean) / scale, np.ones(len(x))])
    w = np.zeros(z.shape[1])
    penalty = np.diag([l2] * (z.shape[1] - 1) + [0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-z @ w))
        gradient = z.T @ (p - y) + penalty @ w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(w)), gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Logistic(tuple(float(v) for v in w[:-1]), float(w[-1]), tuple(float(v) for v in mean),
                    tuple(float(v) for v in scale))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict:
    """Reliability diagram rows and the expected calibration error (ECE, percent)."""
    p, y = np.asarray(probabilities, np.float64), np.asarray(labels, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows, ece = [], 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (p >= low) & ((p < high) if high < 1.0 else (p <= high))
        if inside.any():
            rows.append({"bin": f"{low:.1f}-{high:.1f}", "count": int(inside.sum()),
                         "mean_confidence": round(float(p[inside].mean()), 3),
                         "accuracy": round(float(y[inside].mean()), 3)})
            ece += inside.mean() * abs(p[inside].mean() - y[inside].mean())
    return {"ece_percent": round(100.0 * ece, 2), "bins": rows}


_UNRELATED = (
    "banana", "what is the weather tomorrow", "play some music", "call my mother", "how are you today",
    "set an alarm for seven", "the quick brown fox jumps over the lazy dog", "order a pizza with extra cheese",
    "who won the football match yesterday", "translate hello into french", "turn off the lights",
    "tell me a joke", "what time is it", "remind me to buy milk", "the stock market fell sharply",
    "I love reading books about history", "open the garage door", "how many calories are in an apple",
    "send an email to the team", "what is the capital of australia", "battery level", "land now",
    "return to home", "take a photo", "increase speed", "hello", "test test one two", "ok", "yes", "no",
)
_OTHER_LANGUAGES = (
    "das rote Haus nördlich des Sees", "la maison au toit rouge près de la piscine", "el edificio azul junto al río",
    "赤い屋根の建物", "красное здание у озера", "il parcheggio accanto al campo", "het gebouw bij het meer",
    "مبنى أحمر بجانب البحيرة", "빨간 지붕 건물", "zgrada sa crvenim krovom",
)
_EMOJI = ("🏠🏠🏠", "🚁➡️🏫", "🌳🌳🌊", "😀", "🍌", "🔴🏢")


ISSUE_EXAMPLES = ("🏠🏠🏠", "xqzv plorb wibble", "banana")   # goals once forwarded to Nav2


def out_of_world_goals(split: str, count: int = 60) -> list[str]:
    """Goals that name no place of any gallery: unrelated requests, other languages, emoji, gibberish.

    ``split`` "fit" (used with the validation world) and "report" (with the test world) share no
    goal; the report set always holds the goals that were once forwarded to Nav2.
    """
    if split not in ("fit", "report"):
        raise ValueError(f"split {split!r}: use fit or report")
    fixed = [g for g in _UNRELATED + _OTHER_LANGUAGES + _EMOJI if g not in ISSUE_EXAMPLES]
    picked = fixed[0::2] if split == "fit" else list(ISSUE_EXAMPLES) + fixed[1::2]
    rng = np.random.default_rng([0 if split == "fit" else 1, 99])
    letters = list("abcdefghijklmnopqrstuvwxyz")
    while len(picked) < count:
        picked.append(" ".join("".join(rng.choice(letters, int(rng.integers(3, 9))))
                               for _ in range(int(rng.integers(1, 5)))))
    return picked
