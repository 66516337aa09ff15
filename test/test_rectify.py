"""Heading-aware views: an aerial image turned north-up from its heading, before captioning."""
import numpy as np
import pytest
from PIL import Image

from cgrs_ros.config import IndexSettings, load_engine_config
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import PLATFORMS, GalleryRecord
from cgrs_ros.index import load_index
from cgrs_ros.rectify import compass_views, north_up, views_for_captioner


def _landmark_quadrant(image: Image.Image) -> str:
    """Where the red landmark is: top / right / bottom / left of the image centre."""
    pixels = np.asarray(image).astype(int)
    ys, xs = np.nonzero((pixels[..., 0] > 150) & (pixels[..., 1] < 80))
    dy, dx = ys.mean() - (pixels.shape[0] - 1) / 2, xs.mean() - (pixels.shape[1] - 1) / 2
    return ("bottom" if dy > 0 else "top") if abs(dy) > abs(dx) else ("right" if dx > 0 else "left")


def _drone_image(heading: float) -> Image.Image:
    """A nadir view whose top faces ``heading``, of a ground with a red landmark east of the centre.

    Seen with the top facing ``heading`` (clockwise from north), a point at compass bearing b
    appears at bearing b - heading clockwise from the image's up direction.
    """
    image = np.full((64, 64, 3), 90, np.uint8)
    bearing = np.radians(90.0 - heading)           # east is at compass bearing 90
    cx, cy = 31.5 + 20 * np.sin(bearing), 31.5 - 20 * np.cos(bearing)
    image[int(cy) - 4:int(cy) + 5, int(cx) - 4:int(cx) + 5] = (220, 30, 30)
    return Image.fromarray(image)


@pytest.mark.parametrize("heading, seen_at", [(0.0, "right"), (90.0, "top"), (180.0, "left"), (270.0, "bottom")])
def test_a_landmark_drawn_east_ends_up_on_the_right(heading, seen_at):
    image = _drone_image(heading)
    assert _landmark_quadrant(image) == seen_at           # the raw view puts east elsewhere
    assert _landmark_quadrant(north_up(image, heading)) == "right"


def test_oblique_headings_are_turned_too():
    assert _landmark_quadrant(north_up(_drone_image(30.0), 30.0)) == "right"
    assert _landmark_quadrant(north_up(_drone_image(235.0), 235.0)) == "right"


def test_ground_views_and_untagged_views_are_left_as_they_are():
    image = _drone_image(90.0)
    records = [GalleryRecord("a", "a.png", "p", "ground", None, None, None, 90.0),
               GalleryRecord("b", "b.png", "p", "drone", None, None, None, None),
               GalleryRecord("c", "c.png", "p", "drone", None, None, None, 90.0)]
    seen = views_for_captioner([image] * 3, records, "north_up", ("ground",))
    assert seen[0] is image and seen[1] is image and _landmark_quadrant(seen[2]) == "right"
    assert all(v is image for v in views_for_captioner([image] * 3, records, "none", ("ground",)))


def test_rectification_is_part_of_the_index_fingerprint(tiny_engine_files):
    config_path, index_dir = tiny_engine_files
    config = load_engine_config(config_path)
    assert config.index.rectify == "none"
    turned = load_engine_config(config_path, index=dict(batch_size=8, chunk_size=8, rectify="north_up"))
    with pytest.raises(CGRSInputError, match="index.rectify: index has 'none', config has 'north_up'"):
        load_index(index_dir, turned)


def test_unknown_rectify_mode_is_named(tiny_engine_config_path):
    with pytest.raises(CGRSInputError, match="index.rectify 'sideways'"):
        load_engine_config(tiny_engine_config_path, index={"rectify": "sideways"})


@pytest.mark.parametrize("platform, heading, rectify, compass", [
    ("satellite", None, "none", True),       # published north-up
    ("drone", None, "north_up", False),      # nothing to turn it by: its "east" is wherever its top faced
    ("drone", 30.0, "north_up", True),       # turned north-up before captioning
    ("drone", 30.0, "none", False),          # captioned as it is, turned by 30 degrees
    ("drone", 360.0, "none", True),          # taken facing north
    ("ground", 0.0, "north_up", False),      # a street photo faces along the ground, never up
])
def test_which_captions_state_compass_sides(platform, heading, rectify, compass):
    settings = IndexSettings(rectify=rectify)
    codes, headings = np.array([PLATFORMS.index(platform)]), np.array([np.nan if heading is None else heading])
    assert compass_views(codes, headings, settings).tolist() == [compass]


def test_north_up_platforms_are_a_setting(tiny_engine_config_path):
    codes, headings = np.array([PLATFORMS.index("drone")]), np.array([np.nan])
    orthophotos = load_engine_config(tiny_engine_config_path, index={"north_up_platforms": ["satellite", "drone"]})
    assert compass_views(codes, headings, orthophotos.index).tolist() == [True]
    with pytest.raises(CGRSInputError, match="index.north_up_platforms must be a list of platform names"):
        load_engine_config(tiny_engine_config_path, index={"north_up_platforms": ["blimp"]})
