"""The confidence model: an out-of-world goal gets a low probability even when its CLIP and margin
features look like a confident in-world goal's, because the captions do not support it."""
import math

import numpy as np
import pytest

from cgrs_ros.calibration import Calibration, fit
from cgrs_ros.errors import CGRSInputError


def _validation(rng):
    """In-world goals: caption 0.45-0.8, right when CLIP and margin are high and the best place's
    captions support the goal's facts; near misses (a contradicted fact, never right); out-of-world
    goals: caption 0.1-0.3 with any CLIP and margin (a gibberish goal can hit one image's vector
    hard), no fact read, every word unknown.  Columns: calibration.FEATURES."""
    n, m, k = 600, 60, 100
    caption = rng.uniform(0.45, 0.8, n)
    clip, margin = rng.uniform(0.4, 0.8, n), rng.uniform(0.0, 1.5, n)
    supported = rng.choice([0.5, 0.67, 1.0], n, p=[0.2, 0.2, 0.6])
    right = (rng.random(n) < 1 / (1 + np.exp(-(12 * (clip - 0.6) + 2 * (margin - 0.75) + 6 * (supported - 0.8))))
             ).astype(float)
    world = np.column_stack([caption, rng.normal(0.01, 0.01, n), clip, margin, supported, np.zeros(n),
                             rng.uniform(0.6, 1.0, n), np.zeros(n), np.zeros(n), rng.uniform(0.0, 0.2, n)])
    near = np.column_stack([rng.uniform(0.45, 0.8, k), rng.normal(0.01, 0.01, k), rng.uniform(0.4, 0.8, k),
                            rng.uniform(0.0, 1.5, k), rng.choice([0.5, 0.67], k), rng.choice([0.33, 0.5], k),
                            np.zeros(k), np.zeros(k), np.zeros(k), rng.uniform(0.0, 0.2, k)])
    ood = np.column_stack([rng.uniform(0.1, 0.3, m), rng.uniform(-0.02, 0.02, m), rng.uniform(0.4, 0.8, m),
                           rng.uniform(0.0, 1.5, m), np.zeros(m), np.zeros(m), np.zeros(m), np.zeros(m), np.zeros(m),
                           np.ones(m)])
    return (np.vstack([world, near, ood]), np.concatenate([right, np.zeros(k), np.zeros(m)]),
            np.concatenate([np.ones(n + k, bool), np.zeros(m, bool)]))


def test_out_of_world_goal_with_strong_clip_features_is_not_confident(tmp_path):
    x, y, in_world = _validation(np.random.default_rng(0))
    calibration = fit(x, y, in_world, {"engine": "e"}, {"world_seed": 2})
    strong_in_world = np.array([0.7, 0.02, 0.78, 1.4, 1.0, 0.0, 0.9, 0.0, 0.0, 0.0])
    same_but_unsupported = np.array([0.17, 0.01, 0.78, 1.4, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])     # "parxww rqsyxn"
    same_but_contradicted = np.array([0.7, 0.02, 0.78, 1.4, 0.67, 0.33, 0.0, 0.0, 0.0, 0.0])  # a near miss
    assert calibration.probability(strong_in_world) > 0.8
    assert calibration.probability(same_but_unsupported) < 0.2
    assert calibration.probability(same_but_contradicted) < 0.2
    assert math.isnan(calibration.probability(None))
    # the file round-trips, and a file of another feature set is refused with its path
    calibration.save(tmp_path / "c.json")
    again = Calibration.load(tmp_path / "c.json")
    assert again.probability(strong_in_world) == pytest.approx(calibration.probability(strong_in_world))
    (tmp_path / "old.json").write_text('{"features": ["caption"], "weights": [1.0], "bias": 0.0}')
    with pytest.raises(CGRSInputError, match="old.json"):
        Calibration.load(tmp_path / "old.json")


def test_in_world_probabilities_are_calibrated_on_their_own_data():
    x, y, in_world = _validation(np.random.default_rng(1))
    calibration = fit(x, y, in_world, {}, {})
    p = np.array([calibration.probability(f) for f in x[in_world]])
    assert abs(p.mean() - y[in_world].mean()) < 0.03        # mean confidence = accuracy on the fit data


def test_a_calibration_is_tied_to_the_settings_that_change_scores():
    from dataclasses import replace

    from cgrs_ros.calibration import fitted_for, load_calibration
    from cgrs_ros.config import load_engine_config

    config = load_engine_config(None)
    with_spec = lambda **extra: replace(config, text_similarity=dict(config.text_similarity, **extra))  # noqa: E731
    assert fitted_for(with_spec(side_weight=0.0)) != fitted_for(config)
    assert fitted_for(with_spec(batch_size=8, device="cpu")) == fitted_for(config)     # speed, not scores
    # where the text encoders run: the same vectors on torch and ONNX, moved ones with int8 weights
    for runtime in ("auto", "torch", "onnx"):
        same = replace(with_spec(text_runtime=runtime), retriever=dict(config.retriever, text_runtime=runtime))
        assert fitted_for(same) == fitted_for(config), runtime
    assert fitted_for(with_spec(text_runtime="onnx_int8")) != fitted_for(config)
    int8_clip = replace(config, retriever=dict(config.retriever, text_runtime="onnx_int8"))
    assert fitted_for(int8_clip) not in (fitted_for(config), fitted_for(with_spec(text_runtime="onnx_int8")))
    assert load_calibration(int8_clip)[0] is None and load_calibration(config)[0] is not None
    # which captions' sides are read changes the caption scores too
    orthophotos = replace(config, index=replace(config.index, north_up_platforms=("satellite", "drone")))
    assert fitted_for(orthophotos) != fitted_for(config)
