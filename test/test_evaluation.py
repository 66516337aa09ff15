"""Recall@K on hand-computed cases, with place-level positives and ties."""
import pytest

from cgrs_ros.errors import CGRSInputError
from cgrs_ros.evaluation import recall_at_k


def test_place_level_hits():
    # query A: its place appears at rank 3 (another image of the same place); query B: rank 1; C: never
    rankings = [["x", "y", "A", "A"], ["B", "x", "y", "z"], ["x", "y", "z", "w"]]
    recall = recall_at_k(rankings, ["A", "B", "C"], ks=(1, 2, 3, 4))
    assert recall == pytest.approx({1: 100 / 3, 2: 100 / 3, 3: 200 / 3, 4: 200 / 3})


def test_any_image_of_the_place_counts_once():
    recall = recall_at_k([["A", "A", "A"]], ["A"], ks=(1, 3))
    assert recall == {1: 100.0, 3: 100.0}


def test_empty_and_mismatched_inputs():
    with pytest.raises(CGRSInputError, match="no queries"):
        recall_at_k([], [])
    with pytest.raises(ValueError, match="2 rankings for 1 queries"):
        recall_at_k([["A"], ["B"]], ["A"])
