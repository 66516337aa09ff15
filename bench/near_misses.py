"""Near-miss goals: a real place's description with one fact changed so that no place of the world fits.

These are the negatives a confidence fitted on clean goals and gibberish never saw: "large brown
T-shaped building" where the only large brown building is rectangular, a circular pool on the side
where the place's pool is rectangular, the lake on the wrong side.  Each goal is checked against
``world.json`` (no place has every stated fact, sides included), so its right answer is "nothing
here", and a drone must not fly.  The wording is this module's own (not the world generator's
templates), several phrasings per fact.

    goals = near_miss_goals(world_dir, seed)       # [(text, place it was made from, changed fact)]
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

COLOURS = ("red", "blue", "green", "white", "black", "yellow", "orange", "brown")
SHAPES = ("rectangular", "square", "L-shaped", "U-shaped", "T-shaped", "round")
SIZES = ("small", "large")
KINDS = ("round pool", "rectangular pool", "parking lot", "sports field", "lake", "trees", "field", "road", "river")
SIDES = ("north", "east", "south", "west")
# a changed kind stays plausible: the pool's shape, one water for another, ...
_KIN = {"round pool": ("rectangular pool",), "rectangular pool": ("round pool",), "lake": ("river", "field"),
        "river": ("lake", "road"), "trees": ("field", "lake"), "field": ("trees", "sports field"),
        "road": ("river", "parking lot"), "parking lot": ("road", "sports field"),
        "sports field": ("field", "parking lot")}
_WORDS = {"round pool": ("a round pool", "a circular pool"), "rectangular pool": ("a rectangular pool", "a lap pool"),
          "parking lot": ("a parking lot", "a car park"), "sports field": ("a sports field", "a football pitch"),
          "lake": ("a lake", "a pond"), "trees": ("trees", "some woods"), "field": ("a field", "farmland"),
          "road": ("a road", "a street"), "river": ("a river", "a stream")}


def place_facts(place: dict) -> dict:
    """A world.json place as facts: colour, shape, size and {kind: side}."""
    building = place["building"]
    return {"colour": building["colour"], "shape": building["shape"], "size": building["size"],
            "neighbours": {n["kind"]: n["direction"] for n in place["neighbours"]}}


def fits(goal: dict, place: dict) -> bool:
    """Whether ``place`` (:func:`place_facts`) has every fact of ``goal`` (same layout, any subset;
    a neighbour's side None means nearby)."""
    if any(goal.get(slot) not in (None, place[slot]) for slot in ("colour", "shape", "size")):
        return False
    return all(kind in place["neighbours"] and side in (None, place["neighbours"][kind])
               for kind, side in goal["neighbours"].items())


def _changed(goal: dict, place: dict, rng: np.random.Generator) -> tuple[dict, str] | None:
    """``goal`` with one of its facts given another value, and which (None when it states nothing)."""
    slots = [s for s in ("colour", "shape", "size") if goal.get(s)] + [("kind", k) for k in goal["neighbours"]] \
        + [("side", k) for k, side in goal["neighbours"].items() if side]
    if not slots:
        return None
    slot = slots[int(rng.integers(len(slots)))]
    new = {**goal, "neighbours": dict(goal["neighbours"])}
    if isinstance(slot, str):
        values = {"colour": COLOURS, "shape": SHAPES, "size": SIZES}[slot]
        new[slot] = str(rng.choice([v for v in values if v != goal[slot]]))
        return new, f"{slot} {goal[slot]} -> {new[slot]}"
    what, kind = slot
    side = new["neighbours"].pop(kind)
    if what == "kind":
        other = str(rng.choice([k for k in _KIN[kind] if k not in new["neighbours"]] or [kind]))
        new["neighbours"][other] = side
        return new, f"{kind} -> {other}"
    taken = set(place["neighbours"].values())
    free = [s for s in SIDES if s != side and s not in taken] or [s for s in SIDES if s != side]
    new["neighbours"][kind] = str(rng.choice(free))
    return new, f"{kind} {side} -> {new['neighbours'][kind]}"


def render(goal: dict, rng: np.random.Generator) -> str:
    """One sentence for ``goal`` in one of a few phrasings."""
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    words = [goal.get("size"), goal.get("colour") and pick((f"{goal['colour']}-roofed", goal["colour"])),
             goal.get("shape")]
    building = " ".join(w for w in words if w) + " " + pick(("building", "house", "block"))
    landmarks = []
    for kind, side in goal["neighbours"].items():
        noun = pick(_WORDS[kind])
        landmarks.append(pick((f"{noun} to the {side}", f"{noun} on its {side} side", f"{noun} {side} of it"))
                         if side else f"{noun} {pick(('nearby', 'close by', 'next to it'))}")
    if not landmarks:
        return pick((f"the {building}", f"go to the {building}"))
    joined = ", ".join(landmarks[:-1]) + (" and " if len(landmarks) > 1 else "") + landmarks[-1]
    return pick((f"the {building} with {joined}", f"find the {building}; it has {joined}",
                 f"{building}, {', '.join(landmarks)}"))


def near_miss_goals(world_dir: Path, seed: int, count: int = 300) -> list[tuple[str, str, str]]:
    """``count`` near misses of the world in ``world_dir``: (goal text, place it was made from, change)."""
    places = [place_facts(p) for p in json.loads((Path(world_dir) / "world.json").read_text())["places"]]
    ids = [p["place_id"] for p in json.loads((Path(world_dir) / "world.json").read_text())["places"]]
    rng = np.random.default_rng([seed, 71])
    goals, texts = [], set()
    for _ in range(count * 20):
        if len(goals) >= count:
            break
        n = int(rng.integers(len(places)))
        place = places[n]
        chosen = rng.permutation(["colour", "shape", "size", *place["neighbours"]])[:int(rng.integers(2, 5))]
        goal = {s: place[s] for s in ("colour", "shape", "size") if s in chosen}
        goal["neighbours"] = {k: (v if rng.random() < 0.85 else None) for k, v in place["neighbours"].items()
                              if k in chosen}
        changed = _changed(goal, place, rng)
        if changed is None or any(fits(changed[0], p) for p in places):
            continue
        text = render(changed[0], rng)
        if text not in texts:
            texts.add(text)
            goals.append((text, ids[n], changed[1]))
    return goals
