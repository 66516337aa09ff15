"""Fusion math on controlled scores: the caption stage must be able to fix a wrong coarse order."""
import numpy as np
import pytest

from cgrs_ros.fusion import fuse, normalise, rank_order, top_k


def rerank(coarse, caption, weight, method):
    """The engine's order of candidate places (``CGRSEngine.rank``): fuse, then rank_order."""
    return rank_order(fuse(coarse, caption, weight, method))


def test_caption_scores_fix_a_wrong_coarse_order():
    # coarse (CLIP) prefers candidate 0 by a hair; the captions clearly describe candidate 2.
    coarse = np.array([0.31, 0.30, 0.29, 0.20])
    caption = np.array([0.20, 0.25, 0.80, 0.10])
    order = rerank(coarse, caption, weight=0.5, method="zscore")
    assert order.tolist()[0] == 2
    assert rank_order(coarse).tolist() == [0, 1, 2, 3]
    # weight 0 keeps the coarse order exactly, weight 1 is the caption order
    assert rerank(coarse, caption, 0.0, "zscore").tolist() == [0, 1, 2, 3]
    assert rerank(coarse, caption, 1.0, "zscore").tolist() == [2, 1, 0, 3]


def test_zscore_and_minmax_values():
    scores = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(normalise(scores, "zscore"), [-1.224744871, 0.0, 1.224744871])
    np.testing.assert_allclose(normalise(scores, "minmax"), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(normalise(scores, "none"), scores)
    # a constant list carries no information: it must not dominate (or divide by zero)
    np.testing.assert_allclose(normalise(np.array([0.4, 0.4]), "zscore"), [0.0, 0.0])
    np.testing.assert_allclose(fuse(np.array([0.4, 0.4]), np.array([0.1, 0.9]), 0.5, "minmax"), [0.0, 0.5])


def test_normalisation_makes_scales_comparable():
    # raw CLIP cosines spread by 0.01, caption cosines by 0.5: unnormalised, captions would always win
    coarse = np.array([0.30, 0.29, 0.28])
    caption = np.array([0.10, 0.60, 0.35])
    assert rerank(coarse, caption, 0.3, "none").tolist()[0] == 1
    assert rerank(coarse, caption, 0.3, "zscore").tolist()[0] == 0


def test_ties_keep_input_order():
    assert rank_order(np.array([0.5, 0.7, 0.5, 0.7])).tolist() == [1, 3, 0, 2]


def test_top_k_is_deterministic_with_ties_at_the_cut():
    sims = np.array([0.1, 0.9, 0.5, 0.5, 0.5, 0.2])
    assert top_k(sims, 3).tolist() == [1, 2, 3]
    assert top_k(sims, 10).tolist() == [1, 2, 3, 4, 5, 0]


def test_unknown_normalisation_is_refused():
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise(np.ones(3), "softmax")
