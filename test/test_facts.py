"""The goal's facts against a place's captions: what the confidence reads to see contradictions and rivals."""
from dataclasses import replace

from cgrs_ros.calibration import load_calibration
from cgrs_ros.config import load_engine_config
from cgrs_ros.facts import Fact, PlaceEvidence, agreement, differences, read_facts

# captions of three views of one place, in the embedded captioner's three templates
PLACE = ["The image shows a large rectangular building with a brown roof in the centre. There is a round pool "
         "to the west of the building and a road below the building.",
         "Drone shot from medium height of a brown-roofed rectangular building of large size. A round pool lies to "
         "its west.",
         "Rectangular brown building (large) in the middle of the picture, with a road on its south side."]
OTHER = ["The image shows a large rectangular building with a brown roof in the centre. There is a round pool "
         "to the east of the building and a lake above the building."] * 3


def evidence(captions):
    return PlaceEvidence.of(captions, [True] * len(captions))


def test_goal_facts_are_read_by_slot_with_their_sides():
    facts = set(read_facts("the large brown T-shaped house; it has a circular pool on its western side").facts)
    assert facts == {Fact("size", "large"), Fact("colour", "brown"), Fact("shape", "T-shaped"),
                     Fact("landmark", "round pool", frozenset({"west"}))}
    # the inverted relation: the pool lies to the target's south
    assert Fact("landmark", "round pool", frozenset({"south"})) in read_facts("the hall just north of a round pool").facts
    assert read_facts("banana").facts == () and read_facts("banana").unread_clauses == 1


def test_the_true_description_fits_and_a_near_miss_is_contradicted():
    place = evidence(PLACE)
    true = agreement(read_facts("large brown rectangular building with a round pool to the west"), place)
    assert true.fits and true.contradicted == 0 and true.weakest == 1.0
    for near_miss in ("large brown T-shaped building with a round pool to the west",      # shape changed
                      "large brown rectangular building with a rectangular pool to the west",   # pool kind
                      "large brown rectangular building with a round pool to the east",    # side
                      "large brown rectangular building with a lake to the west"):          # a landmark it lacks
        missed = agreement(read_facts(near_miss), place)
        assert not missed.fits and missed.contradicted == 1 and missed.weakest < true.weakest, near_miss


def test_sides_of_captions_of_unknown_turn_are_not_read():
    turned = PlaceEvidence.of(PLACE, [False] * len(PLACE))
    verdict, _ = turned.verdict(Fact("landmark", "round pool", frozenset({"east"})))
    assert verdict == "unknown"


def test_two_places_that_fit_are_told_apart_by_what_only_one_has():
    goal = read_facts("large brown rectangular building with a round pool")
    assert agreement(goal, evidence(PLACE)).fits and agreement(goal, evidence(OTHER)).fits
    first, second = differences(evidence(PLACE), evidence(OTHER), goal)
    assert "a round pool to the west" in first and "a road to the south" in first
    assert "a round pool to the east" in second and "a lake to the north" in second


def test_a_goals_own_settings_void_the_calibration():
    config = load_engine_config(None)
    calibration, _ = load_calibration(config)
    assert calibration.refuses(config.retrieval) == ""
    assert "top_k 5" in calibration.refuses(replace(config.retrieval, top_k=5))
    assert "fusion_weight 0.0" in calibration.refuses(replace(config.retrieval, fusion_weight=0.0))
    assert "caption_mode 'online'" in calibration.refuses(replace(config.retrieval, caption_mode="online"))
