"""Reading compass sides out of English clauses (cgrs_ros.spatial_text): forward and inverted
relations, map words, the owner of a landmark, compound sides, and clauses without any side."""
import pytest

from cgrs_ros.models.text_similarity import relations
from cgrs_ros.spatial_text import Relation, read_relations


def sides(*names):
    return frozenset(names)


@pytest.mark.parametrize("clause, expected", [
    ("a pond east of it", [Relation("a pond", sides("east"))]),
    ("a lake to the north of the building", [Relation("a lake", sides("north"))]),
    ("A road lies to its south", [Relation("A road", sides("south"))]),
    ("a parking lot with cars on its north side", [Relation("a parking lot with cars", sides("north"))]),
    ("pond east", [Relation("pond", sides("east"))]),
    ("a grove on its southern side", [Relation("a grove", sides("south"))]),
    ("a pond to the north-east of it", [Relation("a pond", sides("north", "east"))]),
    # map words read on a north-up map; caption words for north-up views
    ("a car park above it on the map", [Relation("a car park", sides("north"))]),
    ("a pool on its left on a north-up map", [Relation("a pool", sides("west"))]),
    ("a lake below the building", [Relation("a lake", sides("south"))]),
    ("a field on the right of the building", [Relation("a field", sides("east"))]),
    # the owner of the landmark is a clause of its own: the side is the pond's
    ("Which small golden house has a lap pool east of it",
     [Relation("Which small golden house"), Relation("a lap pool", sides("east"))]),
    # inverted: the target is named first, so the landmark lies on the opposite side
    ("the red-roofed hall just north of the round pool",
     [Relation("the red-roofed hall"), Relation("the round pool", sides("south"))]),
    ("I am looking for the house directly south-west of a pond",
     [Relation("I am looking for the house"), Relation("a pond", sides("north", "east"))]),
    ("a crimson roof", [Relation("a crimson roof")]),
])
def test_read_relations(clause, expected):
    assert read_relations(clause) == expected


def test_relations_of_a_goal_and_a_caption_agree_on_sides():
    goal = "I am looking for the house just south of a pond; that building also has a grove to its east."
    caption = ("The image shows a small round building with a red roof in the centre. There is a lake "
               "to the north of the building and a group of trees on the right of the building.")
    assert {r.sides for r in relations(goal) if r.sides} == {sides("north"), sides("east")}
    assert {r.sides for r in relations(caption) if r.sides} == {sides("north"), sides("east")}
