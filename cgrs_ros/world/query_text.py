"""Place-level language queries, written unlike the captions on purpose.

A user asking for a place does not repeat an annotator's caption: they use their own words
("crimson", "swimming pool", "car park"), their own order, and mention only some attributes.
Each query is built from a few *facts* about its place (roof colour, shape, size, a neighbour
with or without its side), rendered through synonym tables and templates that captions never
use.  Among a handful of random fact choices the generator keeps the one that fits the fewest
places, so most queries single out their place, yet some stay ambiguous, as real ones do; how
many places each query fits is recorded in world.json for analysis.
"""
from __future__ import annotations

import numpy as np

from ..queries import Query
from .layout import OPPOSITE, Place

COLOUR = {"red": ("crimson", "scarlet", "brick-red"), "blue": ("navy", "azure", "cobalt"),
          "green": ("emerald", "jade", "bottle-green"), "white": ("snow-white", "ivory", "pale"),
          "black": ("charcoal", "jet-black", "dark"), "yellow": ("golden", "mustard", "lemon"),
          "orange": ("amber", "tangerine", "rust-orange"), "brown": ("chocolate", "chestnut", "dark-brown")}
SHAPE = {"rectangular": ("oblong", "rectangle-shaped", "long"), "square": ("square-shaped", "boxy", "cube-like"),
         "L-shaped": ("L-form", "L-like", "angled"), "U-shaped": ("horseshoe-shaped", "U-form", "U-like"),
         "T-shaped": ("T-form", "T-like", "T-type"), "round": ("circular", "cylindrical", "drum-shaped")}
SIZE = {"small": ("little", "compact", "modest"), "large": ("big", "huge", "sizeable")}
FEATURE = {"round pool": ("circular swimming pool", "round swimming pool", "circular pool"),
           "rectangular pool": ("rectangular swimming pool", "lap pool", "oblong swimming pool"),
           "parking lot": ("car park", "parking area", "lot full of parked cars"),
           "sports field": ("football pitch", "playing field", "soccer pitch"),
           "lake": ("pond", "small lake", "body of water"), "trees": ("cluster of trees", "grove", "patch of woods"),
           "field": ("crop field", "farmland", "cultivated plot"), "road": ("street", "roadway", "paved road"),
           "river": ("river crossed by a bridge", "bridge over a river", "stream with a bridge")}
SIDE = {"north": ("north of it", "on its northern side", "to its north", "above it on the map"),
        "south": ("south of it", "on its southern side", "to its south", "below it on the map"),
        "east": ("east of it", "on its eastern side", "to its east", "on its right on a north-up map"),
        "west": ("west of it", "on its western side", "to its west", "on its left on a north-up map")}
NEAR = ("nearby", "close by", "right beside it", "in the neighbourhood")
NOUNS = ("building", "structure", "house", "block")
_CANDIDATES = 6          # fact choices (of one size) tried per query; the most specific is kept
_FACT_COUNTS = (2, 3, 4)
_FACT_WEIGHTS = (0.35, 0.5, 0.15)


def place_facts(place: Place) -> frozenset:
    """Every fact a query may state about ``place`` (a neighbour with its side, or just nearby)."""
    facts = {("colour", place.colour), ("shape", place.shape), ("size", place.size)}
    for feature in place.features:
        facts.add(("near", feature.kind, feature.direction))
        facts.add(("near", feature.kind, None))
    return frozenset(facts)


def make_queries(places: list[Place], per_place: int, rng: np.random.Generator) -> list[tuple[Query, list, int]]:
    """``per_place`` queries for every place: (Query, its facts, how many places those facts fit)."""
    all_facts = [place_facts(p) for p in places]
    out = []
    for place in places:
        texts: set[str] = set()
        for _ in range(per_place):
            for _attempt in range(20):      # the same place must not get the same text twice
                count = int(rng.choice(_FACT_COUNTS, p=_FACT_WEIGHTS))
                facts = min((_pick_facts(place, count, rng) for _ in range(_CANDIDATES)),
                            key=lambda fs: _matches(fs, all_facts))
                text = render(facts, rng)
                if text not in texts:
                    break
            texts.add(text)
            query = Query(f"q{len(out):06d}", text, place.place_id)
            out.append((query, [list(f) for f in facts], _matches(facts, all_facts)))
    return out


def _matches(facts: tuple, all_facts: list[frozenset]) -> int:
    wanted = frozenset(facts)
    return sum(1 for pf in all_facts if wanted <= pf)


def _pick_facts(place: Place, count: int, rng: np.random.Generator) -> tuple:
    slots = [("colour", place.colour), ("shape", place.shape), ("size", place.size)]
    slots += [("near", f.kind, f.direction if rng.random() < 0.8 else None) for f in place.features]
    chosen = sorted(rng.choice(len(slots), min(count, len(slots)), replace=False))
    return tuple(slots[i] for i in chosen)


def render(facts: tuple, rng: np.random.Generator) -> str:
    """Turn facts into one query sentence through synonyms and a randomly chosen template."""
    attrs = {f[0]: f[1] for f in facts if f[0] != "near"}
    neighbours = [(f[1], f[2]) for f in facts if f[0] == "near"]
    neighbours = [neighbours[i] for i in rng.permutation(len(neighbours))]
    building = _building(attrs, rng)
    clauses = [f"{article(_pick(FEATURE[kind], rng))} {_pick(SIDE[side], rng) if side else _pick(NEAR, rng)}"
               for kind, side in neighbours]
    templates = ["find", "which", "keywords"] if clauses else ["find_only", "keywords"]
    if any(side for _, side in neighbours):
        templates.append("reversed")
    template = templates[int(rng.integers(len(templates)))]
    if template == "find":
        return f"Find the {building}; it has {_join(clauses)}."
    if template == "which":
        return f"Which {building} has {_join(clauses)}?"
    if template == "find_only":
        return f"Take me to the {building}."
    if template == "keywords":
        words = [_keyword(f, rng) for f in facts]
        return ", ".join(words[i] for i in rng.permutation(len(words)))
    # reversed: locate the building from its neighbour ("the house just south of the pond")
    anchor = next(i for i, (_, side) in enumerate(neighbours) if side)
    kind, side = neighbours[anchor]
    text = f"the {building} {_pick(('just ', 'directly ', ''), rng)}{OPPOSITE[side]} of {article(_pick(FEATURE[kind], rng))}"
    others = clauses[:anchor] + clauses[anchor + 1:]
    if others:
        # a separate sentence: ", with a grove east of it" after "south of a pond" reads as the
        # grove lying east of the pond, i.e. the relation inverted
        text += f"; that building also has {_join(others)}"
    return f"I am looking for {text}."


def make_relation_queries(places: list[Place], rng: np.random.Generator) -> list[tuple[Query, list, int]]:
    """At most one query per place that names only two neighbours with their sides ("a lake on its
    east side and trees to the south"), chosen among the place's pairs that fit no other place.

    These are what an operator actually says, and what a CLIP, which blurs where things are,
    cannot answer: the kinds alone fit many places, only the sides single one out.
    """
    all_facts = [place_facts(p) for p in places]
    out = []
    for place in places:
        sided = [("near", f.kind, f.direction) for f in place.features]
        pairs = [(a, b) for i, a in enumerate(sided) for b in sided[i + 1:]
                 if _matches((a, b), all_facts) == 1]
        if not pairs:
            continue
        facts = pairs[int(rng.integers(len(pairs)))]
        query = Query(f"r{len(out):06d}", render(facts, rng), place.place_id)
        out.append((query, [list(f) for f in facts], 1))
    return out


def article(noun_phrase: str) -> str:
    """"a pond", "an oblong swimming pool"."""
    return ("an " if noun_phrase[:1].lower() in "aeiou" else "a ") + noun_phrase


def _building(attrs: dict, rng: np.random.Generator) -> str:
    noun = _pick(NOUNS, rng)
    size = _word(SIZE, attrs.get("size"), rng)
    colour = _word(COLOUR, attrs.get("colour"), rng)
    shape = _word(SHAPE, attrs.get("shape"), rng)
    lead = " ".join(w for w in (size, shape) if w)
    if colour and rng.random() < 0.5:
        return " ".join(w for w in (lead, noun) if w) + f" whose roof is {colour}"
    return " ".join(w for w in (size, colour, shape, noun) if w)


def _keyword(fact: tuple, rng: np.random.Generator) -> str:
    if fact[0] == "colour":
        return f"{_word(COLOUR, fact[1], rng)} roof"
    if fact[0] == "shape":
        return f"{_word(SHAPE, fact[1], rng)} footprint"
    if fact[0] == "size":
        return f"{_word(SIZE, fact[1], rng)} size"
    feature = _pick(FEATURE[fact[1]], rng)
    return f"{feature} {fact[2]}" if fact[2] else f"{feature} near"


def _word(table: dict, value: str | None, rng: np.random.Generator) -> str:
    """A synonym most of the time, the plain word sometimes (people do say "red")."""
    if value is None:
        return ""
    return value if rng.random() < 0.3 else _pick(table[value], rng)


def _pick(options: tuple, rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
