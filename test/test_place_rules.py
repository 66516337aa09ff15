"""The place rules where a slip keeps most tests green: radius grouping must join components by their
roots (three cameras of one place stay one place), visual grouping includes the threshold itself, and
a place's coarse score is the best of its views, not their sum (checked through CGRSEngine.rank)."""
import math
from pathlib import Path

import numpy as np
import pytest

from cgrs_ros.config import load_engine_config
from cgrs_ros.engine import CGRSEngine, QueryOptions
from cgrs_ros.gallery import GalleryRecord
from cgrs_ros.index import GalleryIndex
from cgrs_ros.places import radius_groups, visual_groups

_M_PER_DEG_LAT = 6371008.8 * math.pi / 180


def _coordinates(*lat_lon):
    records = [GalleryRecord(f"i{i}", f"i{i}.png", f"own{i}", "drone", lat, lon, None, None)
               for i, (lat, lon) in enumerate(lat_lon)]
    return GalleryIndex(Path("."), {}, records, [""] * len(records), None, None, Path("."), []).coordinates


def test_a_camera_near_two_others_joins_all_three_into_one_place():
    # camera 0 in the middle, 1 and 2 each 30 m from it on either side (60 m apart: not neighbours).
    # Joined in the order (0, 1), (0, 2): linking camera 0 itself to 2, instead of its component's
    # root, would leave camera 1 behind as a place of its own.
    step = 30.0 / _M_PER_DEG_LAT
    coordinates = _coordinates((47.0, 8.0), (47.0 - step, 8.0), (47.0 + step, 8.0))
    assert radius_groups(coordinates, 40.0).tolist() == [0, 0, 0]
    assert len(set(radius_groups(coordinates, 20.0).tolist())) == 3


def test_a_candidate_exactly_at_the_visual_threshold_is_a_near_duplicate():
    # cosine exactly 0.5 in float32 (1 * 0.5 + 0 * y): ">=" group_cosine joins it, ">" would not
    vectors = np.array([[1.0, 0.0], [0.5, math.sqrt(0.75)], [-1.0, 0.0]], np.float32)
    assert float(vectors[0] @ vectors[1]) == 0.5
    assert visual_groups(vectors, 0.5).tolist() == [0, 0, 1]
    assert visual_groups(vectors, np.nextafter(0.5, 1.0)).tolist() == [0, 1, 2]


@pytest.mark.parametrize("caption_mode", ["off", "cached"])
def test_a_places_coarse_score_is_its_best_views_cosine(tiny_engine_files, caption_mode):
    config_path, index_dir = tiny_engine_files
    engine = CGRSEngine.load(load_engine_config(config_path), index_dir)
    try:
        settings = QueryOptions(top_k=8, caption_mode=caption_mode).apply(engine.config.retrieval)
        query_vector = engine.models.retriever.encode_texts(["a red roof"])[0]
        ranking = engine.rank(query_vector, "a red roof", settings, depth=0)
        assert len(ranking.places) >= 2 and all(len(p.rows) == 3 for p in ranking.places)   # 3 views a place
        for place in ranking.places:
            views = engine.coarse_scores(query_vector, place.rows)
            assert place.coarse == pytest.approx(float(views.max()), abs=1e-9)
        if caption_mode == "off":      # no captions: places are ordered by that best cosine
            coarse = [p.coarse for p in ranking.places]
            assert coarse == sorted(coarse, reverse=True)
    finally:
        engine.close()
