"""Goal families: the ways a drone team sends a goal, made from a world's facts with our own words.

The world's queries (:mod:`cgrs_ros.world.query_text`) are one writer's phrasing.  Real goals come
from people, mission planners and speech recognisers, so the language benchmark scores the same
index on families written with templates and a vocabulary of their own (nothing here is shared with
the world generator's synonym tables):

- ``generator``: the world's ``queries.jsonl`` + ``relation_queries.jsonl`` as they are;
- ``colloquial``: one or two landmarks and the roof colour (sometimes the shape), everyday words
  ("pond", "car park", "woods", "soccer field"), "behind" / "next to" / "beside" for a landmark
  given without a side, the goal's parts in any order, a typo in one goal of four;
- ``terse``: mission-planner lines ("WHT T roof, RND pool S, rvr W", "YEL ROOF; N: PITCH",
  "rvr north / farmland west", "goto: ...", "TGT ...");
- ``noisy10`` / ``noisy25`` / ``noisy50``: a full spoken description ("uh fly over to the large red
  L shaped building with a lake to the north ...") through a speech-recognition simulator
  (:func:`noisy`) at 10 / 25 / 50 % word error: no punctuation, lower case, deletions,
  substitutions from a confusion list of near-sounding words, inserted fillers.

Every goal is made from facts of its place (roof colour, shape, size, a neighbour with or without
its side) and checked against world.json: ``matching_places`` says how many places those facts fit.
As in the generator, among a few random fact choices the one that fits the fewest places is kept,
so most goals single out their place and some stay ambiguous.  Deterministic from ``seed``.

    from bench.goal_families import goal_families
    families = goal_families(world_dir, seed=2)      # {"generator": [Query, ...], "terse": [...], ...}
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cgrs_ros.queries import Query, read_queries

FAMILIES = ("generator", "colloquial", "terse", "noisy10", "noisy25", "noisy50")
NOISE_RATES = {"noisy10": 0.10, "noisy25": 0.25, "noisy50": 0.50}

# ---- our own vocabulary (not the world generator's) ----
COLOUR_SAY = {"red": ("red", "reddish", "cherry red"), "blue": ("blue", "bluish", "sky blue"),
              "green": ("green", "greenish", "olive green"), "white": ("white", "whitish", "bright white"),
              "black": ("black", "blackish", "very dark"), "yellow": ("yellow", "yellowish", "canary yellow"),
              "orange": ("orange", "orangey", "bright orange"), "brown": ("brown", "brownish", "coffee brown")}
SHAPE_SAY = {"rectangular": ("rectangular", "long rectangular"), "square": ("square", "squarish"),
             "L-shaped": ("L shaped", "L-shape"), "U-shaped": ("U shaped", "U-shape"),
             "T-shaped": ("T shaped", "T-shape"), "round": ("round", "circle shaped")}
SIZE_SAY = {"small": ("small", "tiny", "smallish"), "large": ("large", "massive", "really big")}
FEATURE_SAY = {"round pool": ("round pool", "round swimming pool", "circle pool"),
               "rectangular pool": ("rectangular pool", "long swimming pool", "rectangle pool"),
               "parking lot": ("parking lot", "car lot", "parking"),
               "sports field": ("soccer field", "sports ground", "ball field"),
               "lake": ("pond", "lake", "little lake"), "trees": ("woods", "trees", "bunch of trees"),
               "field": ("farm field", "farmland", "crop field"), "road": ("road", "street", "main road"),
               "river": ("river", "creek with a bridge", "river and bridge")}
BUILDING_SAY = ("house", "building", "one", "place", "roof")
SIDE_SAY = {"north": ("to the north", "north of it", "on the north side", "up north of it"),
            "south": ("to the south", "south of it", "on the south side", "down south of it"),
            "east": ("to the east", "east of it", "on the east side", "off to the east"),
            "west": ("to the west", "west of it", "on the west side", "off to the west")}
NEAR_SAY = ("behind it", "next to it", "beside it", "in front of it", "right by it")

COLOUR_ABBR = {"red": ("RED", "red"), "blue": ("BLU", "blue"), "green": ("GRN", "green"),
               "white": ("WHT", "white"), "black": ("BLK", "black"), "yellow": ("YEL", "yellow"),
               "orange": ("ORG", "orange"), "brown": ("BRN", "brown")}
SHAPE_ABBR = {"rectangular": ("RECT", "rect"), "square": ("SQ", "square"), "L-shaped": ("L", "L-shp"),
              "U-shaped": ("U", "U-shp"), "T-shaped": ("T", "T-shp"), "round": ("RND", "round")}
SIZE_ABBR = {"small": ("SM", "sm"), "large": ("LG", "lg")}
FEATURE_ABBR = {"round pool": ("RND pool", "round pool"), "rectangular pool": ("RECT pool", "rect pool"),
                "parking lot": ("PKG", "parking"), "sports field": ("PITCH", "sports fld"),
                "lake": ("lake", "pond"), "trees": ("trees", "woods"), "field": ("farmland", "FIELD"),
                "road": ("rd", "ROAD"), "river": ("rvr", "RIVER")}
SIDE_LETTER = {"north": "N", "south": "S", "east": "E", "west": "W"}

SPOKEN_START = ("go to", "fly over to", "uh go to", "okay fly to", "head over to", "take us to")
# near-sounding words a recogniser puts for the domain's words (and for the glue around them)
CONFUSIONS = {"north": ("nor", "norse", "forth"), "south": ("sow", "mouth", "sous"), "east": ("yeast", "eased", "beast"),
              "west": ("vest", "best", "rest"), "red": ("read", "bread", "rid"), "blue": ("blew", "glue"),
              "green": ("grain", "queen", "grin"), "white": ("wide", "whit", "bite"), "black": ("block", "back", "plaque"),
              "yellow": ("jello", "hello", "fellow"), "orange": ("arrange", "oranges", "foreign"),
              "brown": ("brow", "browne", "crown"), "round": ("around", "ground", "frown"),
              "square": ("scare", "swear", "squared"), "shaped": ("shape", "shaking", "shade"),
              "large": ("largely", "lodge", "larch"), "small": ("smoll", "smell", "mall"),
              "building": ("billing", "bill ding", "filling"), "pool": ("pull", "poole", "full"),
              "lake": ("leak", "lake's", "late"), "trees": ("threes", "keys", "trees's"), "woods": ("words", "would"),
              "field": ("feel", "filled", "feeled"), "road": ("rode", "rowed", "load"), "river": ("liver", "rivers", "giver"),
              "parking": ("barking", "parkin", "marking"), "lot": ("lad", "a lot", "lots"), "sports": ("spots", "sport"),
              "soccer": ("sucker", "socket"), "pond": ("pound", "bond"), "car": ("core", "far"),
              "rectangular": ("rectangle", "wreck tangular"), "roof": ("rough", "proof", "room"),
              "to": ("two", "too"), "the": ("a", "this"), "with": ("width", "wit"), "of": ("off", "have"),
              "and": ("an", "in"), "side": ("sight", "size"), "on": ("an", "in")}
FILLERS = ("uh", "um", "like", "so", "okay")


@dataclass(frozen=True)
class Goal:
    """One goal of a family: the :class:`Query`, the facts it states and how many places they fit."""

    query: Query
    facts: tuple
    matching_places: int


def goal_families(world_dir: Path, seed: int) -> dict[str, list[Query]]:
    """Every family's goals for the world in ``world_dir`` (``place_id`` = the place they describe)."""
    return {name: [g.query for g in goals] for name, goals in family_goals(world_dir, seed).items()}


def family_goals(world_dir: Path, seed: int) -> dict[str, list[Goal]]:
    """Like :func:`goal_families`, with each goal's facts and how many places they fit."""
    world_dir = Path(world_dir)
    doc = json.loads((world_dir / "world.json").read_text())
    places = doc["places"]
    facts = [place_facts(p) for p in places]
    recorded = {q["query_id"]: q for q in doc.get("queries", [])}
    out: dict[str, list[Goal]] = {"generator": []}
    for name in ("queries.jsonl", "relation_queries.jsonl"):
        if (world_dir / name).is_file():
            for query in read_queries(world_dir / name):
                known = recorded.get(query.query_id, {})
                out["generator"].append(Goal(query, tuple(tuple(f) for f in known.get("facts", ())),
                                             int(known.get("matching_places", 0))))
    makers = {"colloquial": (_colloquial, (1, 2, 3), (0.2, 0.6, 0.2)), "terse": (_terse, (2, 3, 4), (0.3, 0.5, 0.2))}
    for family, (write, counts, weights) in makers.items():
        rng = np.random.default_rng([seed, 30, FAMILIES.index(family)])
        goals = []
        for number, (place, own) in enumerate(zip(places, facts)):
            count = int(rng.choice(counts, p=weights))
            while True:         # one more fact while none of the choices singles the place out
                chosen = min((_pick(place, count, rng, family) for _ in range(6)), key=lambda fs: _fits(fs, facts))
                if _fits(chosen, facts) == 1 or count >= counts[-1] + 1:
                    break
                count += 1
            text = write(chosen, rng)
            goals.append(Goal(Query(f"{family[0]}{number:05d}", text, place["place_id"]), chosen, _fits(chosen, facts)))
        out[family] = goals
    spoken_rng = np.random.default_rng([seed, 30, 99])
    spoken = [(place, _full_facts(place), _spoken(place, spoken_rng)) for place in places]
    for family, rate in NOISE_RATES.items():
        rng = np.random.default_rng([seed, 30, FAMILIES.index(family)])
        out[family] = [Goal(Query(f"n{int(rate * 100):02d}{n:05d}", noisy(text, rate, rng), place["place_id"]),
                            full, _fits(full, facts))
                       for n, (place, full, text) in enumerate(spoken)]
    return out


def place_facts(place: dict) -> frozenset:
    """Every fact a goal may state about a world.json place (a neighbour with its side, or just near)."""
    building = place["building"]
    found = {("colour", building["colour"]), ("shape", building["shape"]), ("size", building["size"])}
    for neighbour in place["neighbours"]:
        found.add(("near", neighbour["kind"], neighbour["direction"]))
        found.add(("near", neighbour["kind"], None))
    return frozenset(found)


def _fits(chosen: tuple, facts: list[frozenset]) -> int:
    wanted = frozenset(chosen)
    return sum(1 for own in facts if wanted <= own)


def _pick(place: dict, count: int, rng: np.random.Generator, family: str) -> tuple:
    """``count`` facts: colloquial goals always give the roof colour and a landmark, terse ones a landmark."""
    building = place["building"]
    sided = 0.65 if family == "colloquial" else 0.9
    landmarks = [("near", n["kind"], n["direction"] if rng.random() < sided else None) for n in place["neighbours"]]
    landmarks = [landmarks[i] for i in rng.permutation(len(landmarks))]
    attributes = [("shape", building["shape"]), ("size", building["size"])]
    if family == "colloquial":
        chosen = [("colour", building["colour"]), landmarks[0]]
        rest = landmarks[1:] + attributes[:1]
    else:
        chosen = [landmarks[0]]
        rest = landmarks[1:] + [("colour", building["colour"])] + attributes
    extra = max(0, count - len(chosen))
    chosen += [rest[i] for i in sorted(rng.choice(len(rest), min(extra, len(rest)), replace=False))]
    return tuple(chosen)


def _full_facts(place: dict) -> tuple:
    building = place["building"]
    return (("colour", building["colour"]), ("shape", building["shape"]), ("size", building["size"])) + tuple(
        ("near", n["kind"], n["direction"]) for n in place["neighbours"])


def _say(options: tuple, rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _an(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _colloquial(facts: tuple, rng: np.random.Generator) -> str:
    attrs = {f[0]: f[1] for f in facts if f[0] != "near"}
    landmarks = [(f[1], f[2]) for f in facts if f[0] == "near"]
    colour = _say(COLOUR_SAY[attrs["colour"]], rng)
    shape = f"{_say(SHAPE_SAY[attrs['shape']], rng)} " if "shape" in attrs else ""
    noun = _say(BUILDING_SAY, rng)
    if noun == "roof":
        thing = f"{shape}{colour} roof"
    elif rng.random() < 0.5:
        thing = f"{shape}{noun} with the {colour} roof"
    else:
        thing = f"{colour} roofed {shape}{noun}"

    def landmark(kind, side):
        where = _say(SIDE_SAY[side], rng) if side else _say(NEAR_SAY, rng)
        return f"{_an(_say(FEATURE_SAY[kind], rng))} {where}"

    style = int(rng.integers(5))
    first_kind, first_side = landmarks[0]
    if style == 0:              # target first
        text = f"the {thing} with " + " and ".join(landmark(k, s) for k, s in landmarks)
    elif style == 1:            # landmarks first, mixed order
        text = ", ".join(landmark(k, s) for k, s in landmarks) + f", {thing}"
    elif style == 2:            # a chat line
        text = f"looking for a {thing}, there's " + " and ".join(landmark(k, s) for k, s in landmarks)
    elif style == 3 and first_side:   # the target located from its landmark
        opposite = {"north": "south", "south": "north", "east": "west", "west": "east"}[first_side]
        text = f"the {thing} just {opposite} of the {_say(FEATURE_SAY[first_kind], rng)}"
        if landmarks[1:]:
            text += ", also " + " and ".join(landmark(k, s) for k, s in landmarks[1:])
    else:                       # the landmark as the reference, side-less
        preposition = _say(("behind", "next to", "beside", "near"), rng)
        text = f"that {thing} {preposition} the {_say(FEATURE_SAY[first_kind], rng)}"
        if first_side:
            text = f"the {thing}, {_say(FEATURE_SAY[first_kind], rng)} {_say(SIDE_SAY[first_side], rng)}"
        if landmarks[1:]:
            text += " with " + " and ".join(landmark(k, s) for k, s in landmarks[1:])
    if rng.random() < 0.25:
        text = typo(text, rng)
    return text


def typo(text: str, rng: np.random.Generator) -> str:
    """One keyboard slip in a word of four letters or more: two letters swapped, one dropped or doubled."""
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long:
        return text
    at = long[int(rng.integers(len(long)))]
    word = words[at]
    k = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(3))
    words[at] = (word[:k] + word[k + 1] + word[k] + word[k + 2:] if kind == 0 else
                 word[:k] + word[k + 1:] if kind == 1 else word[:k] + word[k] + word[k:])
    return " ".join(words)


def _terse(facts: tuple, rng: np.random.Generator) -> str:
    upper = rng.random() < 0.4
    pick = lambda options: options[0] if upper else options[int(rng.integers(len(options)))]  # noqa: E731
    attrs = {f[0]: f[1] for f in facts if f[0] != "near"}
    building = " ".join(pick(table[attrs[key]]) for key, table in
                        (("size", SIZE_ABBR), ("colour", COLOUR_ABBR), ("shape", SHAPE_ABBR)) if key in attrs)
    if building:
        building += " ROOF" if upper else _say((" roof", " bldg", ""), rng)
    parts = []
    for _, kind, side in (f for f in facts if f[0] == "near"):
        feature = pick(FEATURE_ABBR[kind])
        if side is None:
            parts.append(f"{feature} near" if rng.random() < 0.5 else f"nr {feature}")
            continue
        letter = SIDE_LETTER[side] if rng.random() < 0.75 else side
        style = int(rng.integers(3))
        parts.append(f"{feature} {letter}" if style == 0 else f"{letter}: {feature}" if style == 1
                     else f"{feature} {letter} of bldg")
    items = ([building] if building else []) + parts
    if rng.random() < 0.3:
        items = [items[i] for i in rng.permutation(len(items))]
    separator = _say((", ", "; ", " / ", " | ", " - "), rng)
    text = separator.join(items)
    prefix = _say(("", "", "goto: ", "TGT ", "TGT: ", "target: "), rng)
    text = prefix + text
    return text.upper() if upper else text


def _spoken(place: dict, rng: np.random.Generator) -> str:
    """A full description as someone says it into a microphone (no punctuation)."""
    building = place["building"]
    start = _say(SPOKEN_START, rng)
    lead = (f"the {_say(SIZE_SAY[building['size']], rng)} {_say(COLOUR_SAY[building['colour']], rng)} "
            f"{_say(SHAPE_SAY[building['shape']], rng)} building")
    said = []
    order = rng.permutation(len(place["neighbours"]))
    for n in (place["neighbours"][i] for i in order):
        side = n["direction"]
        where = _say((f"to the {side}", f"on the {side} side", f"{side} of it"), rng)
        said.append(f"{_an(_say(FEATURE_SAY[n['kind']], rng))} {where}")
    text = f"{start} {lead} with " + " and ".join(said)
    return re.sub(r"[^\w\s'-]", "", text).replace("-", " ").lower()


def noisy(text: str, rate: float, rng: np.random.Generator) -> str:
    """``text`` as a speech recogniser might return it at about ``rate`` word error rate.

    The text is lower-cased and stripped of punctuation (a recogniser writes none); then each word
    is, with probability ``rate``, substituted (60 %: a near-sounding word from :data:`CONFUSIONS`,
    else a filler), deleted (25 %), or kept with a filler inserted after it (15 %).  Each such event
    is one word error, so the word error rate against the clean words is about ``rate``.
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"word error rate must be in [0, 1], got {rate!r}")
    words = re.sub(r"[^\w\s']", " ", text.replace("-", " ")).lower().split()
    out = []
    for word in words:
        if rng.random() >= rate:
            out.append(word)
            continue
        event = rng.random()
        if event < 0.6:
            out.append(_say(CONFUSIONS.get(word, FILLERS), rng))
        elif event < 0.85:
            continue
        else:
            out += [word, _say(FILLERS, rng)]
    return " ".join(out) or _say(FILLERS, rng)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length (what :func:`noisy` aims at)."""
    ref, hyp = reference.split(), hypothesis.split()
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / max(1, len(ref))


def summary(goals: dict[str, list[Goal]]) -> dict:
    """Per family: how many goals, and the share that fit exactly their own place."""
    return {name: {"goals": len(rows), "single_place_%": round(100 * sum(g.matching_places == 1 for g in rows)
                                                                 / max(1, len(rows)), 1)}
            for name, rows in goals.items()}


if __name__ == "__main__":
    import sys
    import time

    started = time.perf_counter()
    made = family_goals(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    print(json.dumps(summary(made)), f"{time.perf_counter() - started:.2f}s")
    for name, rows in made.items():
        for goal in rows[:4]:
            print(name, "|", goal.query.text, "|", goal.matching_places)
