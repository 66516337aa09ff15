"""What a text states about a place, slot by slot, and whether a place's captions agree with a goal.

Why: a confidence built on similarity scores cannot see a contradiction.  "Large brown T-shaped
building" and "a large rectangular building with a brown roof" share four words of five, so their
cosine is high and a place one attribute away from the goal looks like a match; "a circular pool
on its west side" against a place whose west pool is rectangular differs by one word.  Read as
*slots*, the goal states a value (shape T-shaped, the pool to the west round) where the place's
captions state another: a contradiction, which the confidence (:mod:`cgrs_ros.calibration`) and
the ambiguity check (:func:`rivals`) read directly.

Slots: the building's ``colour``, ``shape`` and ``size``, and each ``landmark`` kind with the
compass sides the text puts it on (none: "nearby").  The lexicon below is English and covers the
landmark kinds a gallery of buildings has (pools, parking, sports fields, water, trees, fields,
roads, rivers) with their common synonyms; a word it does not know is counted as *unread* content,
which lowers the confidence instead of being ignored (a goal naming a "tennis court" cannot be
confirmed by captions the lexicon cannot read).  Sides come from the clause reader
(:func:`cgrs_ros.models.text_similarity.relations`: compass words, north-up map words, inverted
relations); a caption's sides count only where its view is north-up (``compass``).

A place is judged on all of its views' captions: an attribute is *supported* when at least
:data:`SUPPORTS` of the views that state that slot state the goal's value, *contradicted* when at
most :data:`CONTRADICTS` do, and *uncertain* in between (its views disagree); a landmark likewise,
its kind against the other kinds of its family (a round against a rectangular pool) and its side
against the other sides stated for it, and it is contradicted when none of the place's views names
it at all.
"""
from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

ATTRIBUTE_SLOTS = ("colour", "shape", "size")
LANDMARK = "landmark"
# a place with fewer views read than this cannot contradict a landmark by never naming it
MIN_VIEWS_FOR_ABSENCE = 2
# share of the views stating a slot that must state the goal's value for support; at most CONTRADICTS
# of them, it is contradicted; in between, the captions disagree among themselves (a captioner's
# shape or pool-kind errors) and the fact is ``uncertain``: neither confirmed nor refuted
SUPPORTS, CONTRADICTS = 0.6, 0.3

_COLOURS = {
    "red": ("red", "crimson", "scarlet", "brick-red", "brick red", "maroon", "ruby", "cherry", "burgundy"),
    "blue": ("blue", "navy", "azure", "cobalt", "sky-blue", "sky blue", "turquoise", "teal"),
    "green": ("green", "emerald", "jade", "olive", "lime", "bottle-green", "bottle green"),
    "white": ("white", "ivory", "snow-white", "snow white", "cream", "off-white", "pale"),
    "black": ("black", "charcoal", "jet-black", "jet black", "ebony", "dark", "coal-black"),
    "yellow": ("yellow", "golden", "gold", "mustard", "lemon"),
    "orange": ("orange", "amber", "tangerine", "rust-orange", "rust orange", "terracotta", "copper"),
    "brown": ("brown", "chocolate", "chestnut", "dark-brown", "dark brown", "tan", "beige", "coffee"),
}
_SHAPES = {
    "rectangular": ("rectangular", "oblong", "rectangle-shaped", "rectangle", "elongated", "long"),
    "square": ("square", "square-shaped", "boxy", "cube-like", "cubic", "cube"),
    "L-shaped": ("l-shaped", "l-shape", "l-form", "l-like", "angled", "l shaped", "l shape"),
    "U-shaped": ("u-shaped", "u-shape", "u-form", "u-like", "horseshoe-shaped", "horseshoe", "u shaped", "u shape"),
    "T-shaped": ("t-shaped", "t-shape", "t-form", "t-like", "t-type", "t shaped", "t shape"),
    "round": ("round", "circular", "cylindrical", "drum-shaped", "ring-shaped", "domed"),
}
_SIZES = {
    "small": ("small", "little", "compact", "modest", "tiny", "smaller", "smallish"),
    "large": ("large", "big", "huge", "sizeable", "sizable", "massive", "giant", "larger", "bigger", "vast"),
}
_POOL = r"(?:swimming[- ])?pool"
_LANDMARKS = {
    "round pool": (rf"(?:round|circular|oval|kidney[- ]shaped)\s+{_POOL}",),
    "rectangular pool": (rf"(?:rectangular|oblong|rectangle[- ]shaped|square|long)\s+{_POOL}", r"lap\s+pool"),
    "pool": (_POOL,),                                     # a pool of unstated shape: either kind
    "parking lot": (r"parking(?:\s+(?:lot|area|space|garage|place))?", r"car[- ]?park", r"(?:lot|area) full of (?:parked )?cars",
                    r"parked cars", r"cars"),
    "sports field": (r"sports?\s+(?:field|ground|pitch|court)", r"(?:football|soccer|rugby|hockey|playing|athletic)\s+"
                     r"(?:pitch|field|ground)", r"pitch", r"stadium", r"running track"),
    "lake": (r"lake", r"pond", r"body of water", r"reservoir", r"lagoon", r"water"),
    "trees": (r"(?:cluster|group|patch|stand|clump|line|row) of (?:trees|woods)", r"trees", r"tree", r"grove",
              r"woods", r"woodland", r"forest", r"copse", r"orchard"),
    "field": (r"crop\s+field", r"farm\s*land", r"cultivated (?:plot|land|field)", r"crops?", r"meadow", r"farm",
              r"field"),
    "road": (r"road(?:way)?", r"street", r"highway", r"avenue", r"lane", r"motorway", r"boulevard"),
    "river": (r"(?:river|stream|creek|canal)(?:\s+(?:crossed by|with) a bridge)?", r"bridge over a (?:river|stream)",
              r"bridge", r"waterway"),
}
# which landmark words stand for which kinds (a caption's "pool" supports a goal's round pool and v.v.)
_KIN = {"pool": {"round pool", "rectangular pool", "pool"}, "round pool": {"round pool", "pool"},
        "rectangular pool": {"rectangular pool", "pool"}}
_STOP = frozenset("""
a an the of to its it is are was be with and or on in at by near nearby next beside besides close closer find take
me go goto fly flying over which has have having that this these those there here i im i'm am looking look for one
side sides lies lie lying located situated just directly immediately right due also its' their they them from
around surrounded by into onto up down about along across behind front opposite adjacent neighbouring neighboring
neighbour neighbor bordering facing toward towards where what who whose please want need show get head navigate
land target tgt place spot location site area building buildings structure house block hall roof rooftop roofed
roofs warehouse shed home office school barn villa complex facility footprint size shaped shape coloured colored
colour color image photo picture view shot drone satellite aerial street-level centre center middle visible
seen can see some any other another no not only very quite rather bit kind sort type like looks appears there's
northern southern eastern western north south east west northeast northwest southeast southwest north-east
north-west south-east south-west above below left right map north-up top bottom upper lower corner part half
uh um er erm ok okay hey so well yeah now then again
""".split())


@dataclass(frozen=True)
class Fact:
    """One stated value of a slot; ``sides`` only for landmarks (empty: no side stated)."""

    slot: str
    value: str
    sides: frozenset = frozenset()

    def describe(self) -> str:
        """Words an operator reads: "a round pool to the west", "a red roof"."""
        if self.slot == "colour":
            return f"a {self.value} roof"
        if self.slot in ("shape", "size"):
            return f"a {self.value} building"
        where = " and ".join(sorted(self.sides))
        return f"{_article(self.value)} to the {where}" if where else f"{_article(self.value)} nearby"


@dataclass(frozen=True)
class Reading:
    """What one text states: its facts, and how much of its content the lexicon could not read."""

    facts: tuple[Fact, ...]
    words: frozenset             # the text's content words (not stop words)
    unread_clauses: int          # clauses with content words but no fact


def _alternation(table: dict) -> re.Pattern:
    """One pattern over every phrase of ``table`` (longest first, so "dark brown" beats "dark")."""
    phrases = sorted(((phrase, value) for value, words in table.items() for phrase in words), key=lambda p: -len(p[0]))
    return re.compile(r"\b(" + "|".join(re.escape(p) for p, _ in phrases) + r")\b", re.IGNORECASE), \
        {p.lower(): v for p, v in phrases}


_COLOUR_RE, _COLOUR_OF = _alternation(_COLOURS)
_SHAPE_RE, _SHAPE_OF = _alternation(_SHAPES)
_SIZE_RE, _SIZE_OF = _alternation(_SIZES)
_COLOUR_WORD = "|".join(sorted((re.escape(w) for words in _COLOURS.values() for w in words), key=len, reverse=True))
_LANDMARK_PATTERNS = sorted(((kind, pattern) for kind, patterns in _LANDMARKS.items() for pattern in patterns),
                            key=lambda kp: -len(kp[1]))
_LANDMARK_RE = re.compile(
    r"\b(?:(?:" + _COLOUR_WORD + r")\s+)?(?:" + "|".join(f"(?P<k{n}>{p})" for n, (_, p) in enumerate(_LANDMARK_PATTERNS))
    + r")\b", re.IGNORECASE)            # the one named group that matched (``lastgroup``) says which kind
# a bare letter shape as planners write it: "white T roof", "U building"
_LETTER_SHAPE = re.compile(r"(?<![\w-])([LUT])(?:[- ]?(?:shaped|shape|form|type))?(?=\s+(?:roof|building|block|"
                           r"footprint|house|structure|shape)\b)")
_WORD = re.compile(r"[a-z][a-z'-]*")


def _article(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _attributes(text: str) -> list[Fact]:
    facts = [Fact("colour", _COLOUR_OF[m.group(1).lower()]) for m in _COLOUR_RE.finditer(text)]
    facts += [Fact("shape", _SHAPE_OF[m.group(1).lower()]) for m in _SHAPE_RE.finditer(text)]
    facts += [Fact("shape", f"{m.group(1)}-shaped") for m in _LETTER_SHAPE.finditer(text)]
    facts += [Fact("size", _SIZE_OF[m.group(1).lower()]) for m in _SIZE_RE.finditer(text)]
    return facts


@functools.lru_cache(maxsize=65_536)
def read_facts(text: str) -> Reading:
    """The facts ``text`` (a goal or a caption) states, clause by clause (remembered: a gallery's
    captions come back goal after goal)."""
    from .models.text_similarity import relations

    facts: list[Fact] = []
    unread = 0
    for relation in relations(text):
        found = [Fact(LANDMARK, _LANDMARK_PATTERNS[int(match.lastgroup[1:])][0], frozenset(relation.sides))
                 for match in _LANDMARK_RE.finditer(relation.what)]
        rest = _LANDMARK_RE.sub(" ", relation.what)
        found += _attributes(rest)
        if not found and any(w not in _STOP for w in _WORD.findall(rest.lower())):
            unread += 1
        facts += found
    words = frozenset(w for w in _WORD.findall(text.lower()) if w not in _STOP)
    return Reading(tuple(dict.fromkeys(facts)), words, unread)


def known_words() -> frozenset:
    """Every word the lexicon reads (its phrases' words)."""
    words = set()
    for table in (_COLOURS, _SHAPES, _SIZES):
        for phrases in table.values():
            for phrase in phrases:
                words.update(_WORD.findall(phrase.lower()))
    for _, pattern in _LANDMARK_PATTERNS:
        words.update(w for w in re.findall(r"[a-z]+", pattern) if len(w) > 2)
    return frozenset(words)


_KNOWN = known_words()


@dataclass
class PlaceEvidence:
    """What the captions of one place's views state: votes per attribute value, and per landmark kind
    how many views name it and on which compass sides."""

    views: int = 0                                         # views whose caption states any fact
    attributes: dict = field(default_factory=lambda: {slot: Counter() for slot in ATTRIBUTE_SLOTS})
    mentions: Counter = field(default_factory=Counter)     # landmark kind -> views naming it
    sides: dict = field(default_factory=dict)              # landmark kind -> Counter of sides (compass views)
    words: set = field(default_factory=set)

    @classmethod
    def of(cls, captions: Sequence[str], compass: Sequence[bool]) -> "PlaceEvidence":
        evidence = cls()
        for caption, is_compass in zip(captions, compass):
            if not caption:
                continue
            reading = read_facts(caption)
            evidence.words |= reading.words
            if not reading.facts:
                continue
            evidence.views += 1
            for slot in ATTRIBUTE_SLOTS:
                values = {f.value for f in reading.facts if f.slot == slot}
                if len(values) == 1:                       # a caption stating two shapes states none
                    evidence.attributes[slot][values.pop()] += 1
            for kind in {f.value for f in reading.facts if f.slot == LANDMARK}:
                evidence.mentions[kind] += 1
            if is_compass:
                for fact in reading.facts:
                    if fact.slot == LANDMARK and fact.sides:
                        evidence.sides.setdefault(fact.value, Counter()).update(fact.sides)
        return evidence

    def verdict(self, fact: Fact) -> tuple[str, float]:
        """(``supported`` | ``contradicted`` | ``uncertain`` | ``unknown``, the share of the views
        stating the slot that agree) for one goal fact (see the module docstring; unknown: 0.5)."""
        if fact.slot != LANDMARK:
            votes = self.attributes[fact.slot]
            return _share_verdict(votes[fact.value], sum(votes.values()))
        kin = _KIN.get(fact.value, {fact.value})
        named = sum(self.mentions[k] for k in kin)
        if not named:
            return ("contradicted", 0.0) if self.views >= MIN_VIEWS_FOR_ABSENCE else ("unknown", 0.5)
        family = set().union(*(_KIN.get(k, {k}) for k in kin))          # both pool kinds for any pool
        kind = _share_verdict(named, sum(self.mentions[k] for k in family))
        if kind[0] != "supported" or not fact.sides:
            return kind
        sides = Counter()
        for k in kin:
            sides.update(self.sides.get(k, {}))
        side = _share_verdict(sum(sides[s] for s in fact.sides), sum(sides.values()))
        return side if side[0] != "unknown" else ("unknown", kind[1])

    def profile(self) -> set[Fact]:
        """The place as its captions describe it: each attribute's majority value, each landmark named
        by at least a quarter of the views with its majority side."""
        facts = {Fact(slot, votes.most_common(1)[0][0]) for slot, votes in self.attributes.items() if votes}
        for kind, count in self.mentions.items():
            if count * 4 >= max(self.views, 1):
                sides = self.sides.get(kind)
                facts.add(Fact(LANDMARK, kind, frozenset([sides.most_common(1)[0][0]]) if sides else frozenset()))
        return facts


def _share_verdict(agreeing: int, stated: int) -> tuple[str, float]:
    if not stated:
        return "unknown", 0.5
    share = agreeing / stated
    return ("supported" if share >= SUPPORTS else "contradicted" if share <= CONTRADICTS else "uncertain"), share


@dataclass(frozen=True)
class Agreement:
    """How one place's captions stand to one goal's facts."""

    supported: int
    contradicted: int
    uncertain: int
    unknown: int
    facts: int                   # goal facts read
    unread_clauses: int          # goal clauses the lexicon could not read
    weakest: float               # the least share of agreeing views over the goal's facts (0 without facts)

    @property
    def fits(self) -> bool:
        """Every fact the goal states is supported and none contradicted."""
        return self.facts > 0 and self.supported == self.facts

    @property
    def balance(self) -> int:
        return self.supported - self.contradicted

    @property
    def plausible(self) -> bool:
        """No fact contradicted: the place may be the one the goal means."""
        return self.facts > 0 and self.contradicted == 0


def agreement(goal: Reading, evidence: PlaceEvidence) -> Agreement:
    found = [evidence.verdict(fact) for fact in goal.facts]
    verdicts = Counter(verdict for verdict, _ in found)
    return Agreement(verdicts["supported"], verdicts["contradicted"], verdicts["uncertain"], verdicts["unknown"],
                     len(goal.facts), goal.unread_clauses, min((share for _, share in found), default=0.0))


def unknown_word_share(goal: Reading, caption_words: set) -> float:
    """Share of the goal's content words that neither the lexicon nor the compared captions know."""
    if not goal.words:
        return 1.0
    return sum(1 for w in goal.words if w not in _KNOWN and w not in caption_words) / len(goal.words)


def differences(first: PlaceEvidence, second: PlaceEvidence, goal: Reading) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What the captions state of one place and not of the other (the goal's own facts aside):
    (descriptions of the first's, of the second's), the words of a question that tells them apart."""
    stated = {(f.slot, f.value) for f in goal.facts}
    a, b = first.profile(), second.profile()
    only_a = sorted(f.describe() for f in a - b if (f.slot, f.value) not in stated or f.slot == LANDMARK)
    only_b = sorted(f.describe() for f in b - a if (f.slot, f.value) not in stated or f.slot == LANDMARK)
    return tuple(only_a), tuple(only_b)
