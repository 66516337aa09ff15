"""Grouping views into places (by id, by radius, by visual near-duplicates) and the place score rule."""
from pathlib import Path

import numpy as np
import pytest

from cgrs_ros.config import load_engine_config
from cgrs_ros.engine import CGRSEngine, QueryOptions
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import GalleryRecord
from cgrs_ros.index import GalleryIndex
from cgrs_ros.places import place_caption_scores, place_keys, radius_groups, visual_groups


def _record(i, place, lat=None, lon=None):
    return GalleryRecord(f"i{i}", f"i{i}.png", place, "drone", lat, lon, None, None)


def _columns(records):
    """(place codes, coordinates) as an index holds them."""
    index = GalleryIndex(Path("."), {}, records, [""] * len(records), None, None, Path("."), [])
    return index.place_codes, index.coordinates


def test_grouping_by_place_id():
    records = [_record(0, "a"), _record(1, "b"), _record(2, "a"), _record(3, "c")]
    keys = place_keys(*_columns(records), "place_id", 50.0)
    assert keys[0] == keys[2] and len(set(keys.tolist())) == 3
    assert place_keys(*_columns(records), "none", 50.0).tolist() == [0, 1, 2, 3]


def test_grouping_by_radius_chains_close_cameras_and_keeps_untagged_views_alone():
    # 0.0003 deg of latitude ~ 33 m: 0-1-2 chain within 40 m, 3 is ~1.1 km away, 4 has no position
    records = [_record(0, "x", 47.0, 8.0), _record(1, "y", 47.0003, 8.0), _record(2, "z", 47.0006, 8.0),
               _record(3, "w", 47.01, 8.0), _record(4, "v")]
    keys = radius_groups(_columns(records)[1], 40.0)
    assert keys[0] == keys[1] == keys[2]
    assert len({int(keys[0]), int(keys[3]), int(keys[4])}) == 3
    assert len(set(radius_groups(_columns(records)[1], 20.0).tolist())) == 5     # 33 m apart: no longer one place


def test_grouping_by_visual_near_duplicates():
    vectors = np.array([[1, 0], [0.99, 0.141], [0, 1], [0.995, -0.0999]], np.float32)
    assert visual_groups(vectors, 0.95).tolist() == [0, 0, 1, 0]
    assert visual_groups(vectors, 0.999).tolist() == [0, 1, 2, 3]


def test_place_caption_scores_pool_each_places_best_views():
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.2, 0.8, 0.8, 0.1])
    place_of = np.array([0, 0, 0, 1, 2, 2, 2, 2])
    starts = np.array([0, 3, 4])
    assert place_caption_scores(scores, place_of, starts, 2) == pytest.approx([0.7, 0.3, 0.8])
    assert place_caption_scores(scores, place_of, starts, 10) == pytest.approx([0.5, 0.3, 0.475])
    assert place_caption_scores(scores, place_of, starts, 0) == pytest.approx([0.9, 0.3, 0.8])


@pytest.mark.parametrize("grouping", ["place_id", "radius", "visual", "none"])
def test_every_grouping_serves_distinct_places(tiny_engine_files, grouping):
    config_path, index_dir = tiny_engine_files
    engine = CGRSEngine.load(load_engine_config(config_path), index_dir)
    try:
        result = engine.query("a red roof", QueryOptions(grouping=grouping, top_k=8, max_results=18))
    finally:
        engine.close()
    keys = [tuple(sorted(v.image_id for v in p.views)) for p in result.places]
    assert len(keys) == len(set(keys)) and all(p.n_views >= 1 for p in result.places)
    if grouping in ("place_id", "radius"):   # the tiny gallery: 3 views per place, ~110 m between places
        assert all(p.n_views == 3 and len({v.place_id for v in p.views}) == 1 for p in result.places)
    if grouping == "none":
        assert all(p.n_views == 1 for p in result.places)


def test_bad_grouping_settings_are_named(tiny_engine_config_path):
    with pytest.raises(CGRSInputError, match="grouping 'building'"):
        QueryOptions(grouping="building").apply(load_engine_config(tiny_engine_config_path).retrieval)
