"""GeoText-style descriptions of one view: three captions, the relation sentences and their boxes.

Captions speak one canonical vocabulary ("red", "pool", "parking lot", "to the north of"), like a
consistent annotator; queries (:mod:`.query_text`) deliberately use other words and orders, so a
retriever cannot win by string matching captions against queries.

Only what the view actually shows is described (a low drone shot of a roof mentions no pool that
is out of frame), with one sentence + one normalized [cx, cy, w, h] box per mentioned object, the
building first.  Directions are cardinal for every platform: a neighbour does not move when the
drone turns, so "to the north of" stays true for all views of a place.  The north-up satellite
view may also say left / right / above / below, which there coincide with west / east / north /
south.
"""
from __future__ import annotations

import re

import numpy as np

from .layout import SHAPES, Place
from .query_text import article
from .views import BUILDING, View

NOUN = {"round pool": "a round pool", "rectangular pool": "a rectangular pool",
        "parking lot": "a parking lot with cars", "sports field": "a sports field", "lake": "a lake",
        "trees": "a group of trees", "field": "a field", "road": "a road", "river": "a river with a bridge"}
_MAP_RELATION = {"north": "above", "south": "below", "east": "on the right of", "west": "on the left of"}


def describe(place: Place, view: View, rng: np.random.Generator) -> tuple[list[str], list[str], list[list[float]]]:
    """(three descriptions, sentences, bboxes) for ``view`` of ``place``."""
    sentences, boxes, neighbours = [], [], []
    for key, box in view.objects:
        if key == BUILDING:
            sentences.append(f"{building_phrase(place)} in the centre")
        else:
            feature = place.features[key]
            relation = f"to the {feature.direction} of"
            if view.platform == "satellite" and rng.random() < 0.5:
                relation = _MAP_RELATION[feature.direction]
            sentences.append(f"{NOUN[feature.kind]} {relation} the building")
            neighbours.append(feature)
        boxes.append(box)
    vantage = _vantage(view)

    if len(sentences) > len(neighbours):
        first = f"The image shows {sentences[0]}."
        rest = sentences[1:]
    else:   # the building is out of frame: only its surroundings can be described
        first = f"The image shows the surroundings of {building_phrase(place)}."
        rest = sentences
    first += f" There is {_join(rest)}." if rest else " No other landmark is in view."

    order = [neighbours[i] for i in rng.permutation(len(neighbours))]
    second = f"{vantage} of {article(place.colour)}-roofed {place.shape} building of {place.size} size."
    second += "".join(f" {_cap(NOUN[f.kind])} lies to its {f.direction}." for f in order)

    order = [neighbours[i] for i in rng.permutation(len(neighbours))]
    around = _join([f"{NOUN[f.kind]} on its {f.direction} side" for f in order]) or "nothing else around it in view"
    third = f"{_cap(place.shape)} {place.colour} building ({place.size}) in the middle of the picture, with {around}."
    return [first, second, third], sentences, boxes


def building_phrase(place: Place) -> str:
    return f"a {place.size} {place.shape} building with {article(place.colour)} roof"


def _vantage(view: View) -> str:
    if view.platform == "satellite":
        return "Satellite image"
    if view.platform == "ground":
        return "Street-level photo"
    height = view.alt_agl
    words = "Low-altitude drone shot" if height < 55 else "Drone shot from medium height" if height < 90 \
        else "High drone shot"
    return words + (", oblique," if view.camera.tilt > 15 else "")


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


_SIDE_WORDS = {"north": "north", "south": "south", "east": "east", "west": "west",
               "above": "north", "below": "south", "on the right of": "east", "on the left of": "west"}
_KIND_BY_NOUN = {noun.split(" ", 1)[1] if noun.startswith(("a ", "an ")) else noun: kind
                 for kind, noun in NOUN.items()}
_BUILDING = re.compile(r"\b(small|large) ([\w-]+) building with an? (\w+) roof"
                       r"|an? (\w+)-roofed ([\w-]+) building of (small|large) size"
                       r"|\b([\w-]+) (\w+) building \((small|large)\)", re.IGNORECASE)
_SHAPE_BY_LOWER = {shape.lower(): shape for shape in SHAPES}
_SIDE = (r"(?:to the (north|south|east|west) of the building|(above|below|on the right of|on the left of) "
         r"the building|lies to its (north|south|east|west)|on its (north|south|east|west) side)")


def parse_description(text: str) -> dict:
    """What a description in the world's canonical vocabulary states: the inverse of :func:`describe`.

    Returns ``{"colour", "shape", "size"}`` (None when the building is not described) and
    ``"neighbours"``: {kind: side or None}.  Used to score captioners attribute by attribute
    (a caption that names the right lake on the wrong side is a wrong caption) against the
    world's own descriptions parsed the same way.
    """
    found = {"colour": None, "shape": None, "size": None, "neighbours": {}}
    match = _BUILDING.search(text)
    if match:
        g = match.groups()
        size, shape, colour = (g[0], g[1], g[2]) if g[0] else (g[5], g[4], g[3]) if g[3] else (g[8], g[6], g[7])
        found.update(colour=colour.lower(), shape=_SHAPE_BY_LOWER.get(shape.lower(), shape), size=size.lower())
    lowered = text.lower()
    for noun, kind in sorted(_KIND_BY_NOUN.items(), key=lambda item: -len(item[0])):
        at = lowered.find(noun)
        if at < 0 or kind in found["neighbours"]:
            continue
        side = re.match(r"\s*" + _SIDE, lowered[at + len(noun):])
        words = next((w for w in side.groups() if w), None) if side else None
        found["neighbours"][kind] = _SIDE_WORDS.get(words) if words else None
        # blank it out: "field" must not be found again inside "sports field"
        lowered = lowered[:at] + " " * len(noun) + lowered[at + len(noun):]
    return found
