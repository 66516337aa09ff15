"""Where a clause puts its landmark: compass sides read from English, so a matcher can compare sides.

A sentence embedding blurs "a lake east of it" into "a lake south of it" (the words differ in one
token of many).  People state where a place is in a few fixed ways, so the side is read with a small
lexicon instead, and only *what* the clause names is left to the embedding:

- compass words: "north", "northern", "to the north-east" (both sides);
- map words, read on a north-up map: "above it on the map", "on its right on a north-up map";
  in captions "above / below / on the left of / on the right of the building", which describe the
  north-up views the index captions (``index.rectify: north_up``; satellite images are north-up);
- the target owning the landmark ("which house has a pond to its east", "with a road on its south
  side") is split off a sided clause: the side belongs to the pond;
- the inverted relation, how a goal is usually spoken: "the hall just north of the round pool"
  names the target first, so the *pool* lies to the target's *south*.  A relation is inverted when
  the object of "of" is not the target itself ("of it", "of the building").

English only; a clause without any side keeps ``sides`` empty and is compared by meaning alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}

_MAP = r"(?:on (?:the|a) (?:north[- ]up )?map|on a north[- ]up map)"
# (pattern, sides) in the order they are tried: longer, more specific phrases first
_SIDE_PHRASES: tuple[tuple[re.Pattern, tuple[str, ...] | None], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), sides) for pattern, sides in (
        (rf"\babove (?:it|them) {_MAP}", ("north",)),
        (rf"\bbelow (?:it|them) {_MAP}", ("south",)),
        (rf"\bon (?:its|the) right(?: side)?(?: of it)? {_MAP}", ("east",)),
        (rf"\bon (?:its|the) left(?: side)?(?: of it)? {_MAP}", ("west",)),
        (r"\b(?:above) (?=the building\b)", ("north",)),
        (r"\b(?:below) (?=the building\b)", ("south",)),
        (r"\bon the right (?:side )?of (?=the building\b)", ("east",)),
        (r"\bon the left (?:side )?of (?=the building\b)", ("west",)),
        (r"\b(north|south)[- ]?(east|west)(?:ern|wards?)?\b", None),      # both groups are sides
        (r"\b(north|south|east|west)(?:ern|wards?)?\b", None),
    ))
# glue around a side that says nothing about what the landmark is
_GLUE_BEFORE = re.compile(r"(?:\b(?:lies|lying|located|situated|just|directly|immediately|right|due|"
                          r"to|on|at|in|the|its)\s+)*$", re.IGNORECASE)
_GLUE_AFTER = re.compile(r"^\s*(?:side\b)?\s*(?:(?:of\s+)?(?:it|them|the building)\b)?", re.IGNORECASE)
# "<subject> [just] <side> of <object>": inverted unless the object is the target itself
_INVERTED = re.compile(r"^(?P<subject>.*?\S)\s+(?:(?:just|directly|immediately|right|due)\s+)?"
                       r"(?P<side>(?:north|south)[- ]?(?:east|west)|north|south|east|west)\s+of\s+"
                       r"(?P<object>.+)$", re.IGNORECASE)
# "which house has a pond", "that building also has a grove": the owner is the target, not the landmark
_OWNER = re.compile(r"^(?P<owner>.*)\b(?:has|have|having)\s+(?P<owned>\S.*)$", re.IGNORECASE)
_TARGET = re.compile(r"^(?:it|them|the (?:building|structure|house|block|target|place))\b", re.IGNORECASE)


@dataclass(frozen=True)
class Relation:
    """One clause: ``what`` it names (the side words removed) and the ``sides`` it puts it on."""

    what: str
    sides: frozenset = frozenset()


def read_relations(clause: str) -> list[Relation]:
    """The relation(s) one clause states: two for an inverted one (the target, then the landmark)."""
    inverted = _INVERTED.match(clause)
    if inverted and not _TARGET.match(inverted["object"]):
        sides = frozenset(OPPOSITE[s] for s in _compass(inverted["side"]))
        return [Relation(inverted["subject"]), Relation(inverted["object"], sides)]
    for pattern, fixed in _SIDE_PHRASES:
        match = pattern.search(clause)
        if match:
            sides = frozenset(fixed or (s.lower() for s in match.groups() if s))
            before = _GLUE_BEFORE.sub("", clause[:match.start()])
            after = _GLUE_AFTER.sub("", clause[match.end():], count=1)
            what = " ".join((before + " " + after).split())
            owned = _OWNER.match(what)
            if owned:
                target = owned["owner"].strip()
                return ([Relation(target)] if target else []) + [Relation(owned["owned"], sides)]
            return [Relation(what or clause, sides)]
    return [Relation(clause)]


def _compass(word: str) -> list[str]:
    return re.findall(r"north|south|east|west", word.lower())
