"""The benchmark's goal families (bench/goal_families.py): deterministic, noisy as asked, true to their place."""
import json

import numpy as np

from bench.goal_families import family_goals, goal_families, noisy, place_facts, word_error_rate
from cgrs_ros.world.layout import build_places


def _world(tmp_path, n=60, seed=5):
    places = [p.to_json() for p in build_places(seed, n)]
    (tmp_path / "world.json").write_text(json.dumps({"places": places, "queries": []}))
    return tmp_path, places


def test_families_are_deterministic_and_name_their_place(tmp_path):
    world, places = _world(tmp_path)
    first, again = goal_families(world, 2), goal_families(world, 2)
    assert first == again
    assert goal_families(world, 3)["terse"] != first["terse"]
    ids = {p["place_id"] for p in places}
    for name in ("colloquial", "terse", "noisy10", "noisy25", "noisy50"):
        assert len(first[name]) == len(places)
        assert {q.place_id for q in first[name]} == ids


def test_goals_fit_their_place_and_mostly_only_it(tmp_path):
    world, places = _world(tmp_path)
    facts = {p["place_id"]: place_facts(p) for p in places}
    for name, goals in family_goals(world, 2).items():
        if name == "generator":
            continue
        for goal in goals:
            assert frozenset(goal.facts) <= facts[goal.query.place_id], (name, goal)
            assert goal.matching_places >= 1
        assert np.mean([g.matching_places == 1 for g in goals]) > 0.8, name


def test_noisy_word_error_rate_is_about_the_rate():
    rng = np.random.default_rng(0)
    text = "go to the large red L shaped building with a lake to the north and trees on the east side"
    clean = noisy(text, 0.0, rng)
    assert clean == text.replace("L shaped", "l shaped").lower()
    for rate in (0.1, 0.25, 0.5):
        wer = np.mean([word_error_rate(clean, noisy(text, rate, rng)) for _ in range(300)])
        assert abs(wer - rate) < 0.06, (rate, wer)
    assert noisy(text, 0.25, np.random.default_rng(7)) == noisy(text, 0.25, np.random.default_rng(7))
    assert "," not in noisy("a lake, north; trees: east", 0.0, rng)
