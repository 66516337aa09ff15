"""GeoText-1652 and RoboSense Track 4 readers/writers on tiny real-format files."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from cgrs_ros.errors import CGRSInputError
from cgrs_ros.formats import (geotext_platform, load_geotext, load_track4_gallery,
                              load_track4_queries, submission_query_id, write_track4_submission)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TRAIN_JSON = FIXTURES / "geotext_train_tiny.json"
TEST_JSON = FIXTURES / "geotext_test_tiny.json"
TRACK4_QUERIES = FIXTURES / "track4_queries_tiny.txt"


# --- GeoText-1652 ------------------------------------------------------------------------------

def test_geotext_train_json_merges_items_of_one_image():
    gallery, queries = load_geotext(TRAIN_JSON)
    assert gallery.root == FIXTURES
    assert [r.image_id for r in gallery] == ["0839/image-43.jpeg", "0839/0839.jpg", "0840/image-01.jpeg"]
    assert [r.path for r in gallery] == ["train/0839/image-43.jpeg", "train/0839/0839.jpg",
                                         "train/0840/image-01.jpeg"]
    assert gallery.place_ids == ["0839", "0839", "0840"]
    assert [r.platform for r in gallery] == ["drone", "satellite", "drone"]
    for record in gallery:
        assert (record.lat, record.lon, record.alt, record.heading) == (None, None, None, None)
        assert not record.has_geo
    assert gallery.resolve(gallery.records[0]) == FIXTURES / "train/0839/image-43.jpeg"

    drone = gallery.records[0].extras
    assert drone["caption"] == [
        "In the center of the image is a large, modern office building with a white facade.",
        "A white office block seen from above, a busy street along its upper side."]
    # the pairs of both items, the repeated street pair once, the null pair kept
    assert len(drone["sentences"]) == len(drone["bboxes"]) == 4
    assert drone["sentences"][1].startswith("On the upper middle side")
    assert drone["sentences"][2].startswith("On the middle right side")
    assert drone["sentences"][3] is None and drone["bboxes"][3] is None
    assert drone["bboxes"][0] == pytest.approx([0.408688485622406, 0.6883664131164551,
                                                0.38859522342681885, 0.6234817504882812])
    assert gallery.records[1].extras == {
        "caption": ["A satellite view of a white office building next to a parking lot."],
        "sentences": [], "bboxes": []}

    assert [(q.query_id, q.place_id) for q in queries] == [
        ("0839/image-43.jpeg#0", "0839"), ("0839/image-43.jpeg#1", "0839"),
        ("0839/0839.jpg#0", "0839"), ("0840/image-01.jpeg#0", "0840")]
    assert queries[3].text == "A red brick library with a round tower, surrounded by trees."


def test_geotext_test_json_one_query_per_caption(tmp_path):
    # images really on disk under a separate image root
    for rel in ("test/gallery_no_train/0001/image-01.jpeg", "test/gallery_no_train/0001/0001.jpg",
                "test/gallery_no_train/0002/image-05.jpeg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(tmp_path / rel), np.full((8, 8, 3), 128, np.uint8))
    gallery, queries = load_geotext(TEST_JSON, image_root=tmp_path)
    assert gallery.root == tmp_path.resolve()
    assert all(gallery.resolve(r).is_file() for r in gallery)
    assert [(r.image_id, r.place_id, r.platform) for r in gallery] == [
        ("0001/image-01.jpeg", "0001", "drone"), ("0001/0001.jpg", "0001", "satellite"),
        ("0002/image-05.jpeg", "0002", "drone")]
    assert [(q.query_id, q.text, q.place_id) for q in queries] == [
        ("0001/image-01.jpeg#0", "A stadium with a green pitch and grey stands.", "0001"),
        ("0001/image-01.jpeg#1", "An oval sports ground seen from a drone.", "0001"),
        ("0001/0001.jpg#0", "A satellite image of a stadium beside a road.", "0001"),
        ("0002/image-05.jpeg#0", "A glass-roofed hall next to a parking lot.", "0002")]


@pytest.mark.parametrize("image, place, platform", [
    ("train/0839/image-43.jpeg", "0839", "drone"),
    ("train/0839/0839.jpg", "0839", "satellite"),
    ("University-Release/train/satellite/0839/0839.jpg", "0839", "satellite"),
    ("University-Release/train/drone/0839/image-01.jpeg", "0839", "drone"),
    ("University-Release/train/street/0839/abc123.jpg", "0839", "ground"),
    ("University-Release/train/google/0839/x.png", "0839", "ground"),
    ("test/query_street/0839/img.jpg", "0839", "ground"),
    ("test/gallery_satellite/0839/0839.png", "0839", "satellite"),
    ("test/gallery_no_train/0001/street_view.jpg", "0001", "ground"),
    ("test/gallery_no_train/0001/satellite_view.jpg", "0001", "satellite"),
    ("train/0839/0840.jpg", "0839", "drone"),   # a number that is not the building id
])
def test_geotext_platform_rule(image, place, platform):
    assert geotext_platform(image, place) == platform


def _good_item() -> dict:
    return {"image_id": "0840/image-02.jpeg", "image": "train/0840/image-02.jpeg",
            "caption": "A red brick library.", "sentences": ["a library", "a road"],
            "bboxes": [[0.5, 0.5, 0.2, 0.2], [0.1, 0.9, 0.1, 0.1]]}


def _set(field, value):
    def change(item):
        item[field] = value
    return change


def _drop(field):
    def change(item):
        del item[field]
    return change


@pytest.mark.parametrize("change, field", [
    (_drop("image_id"), "image_id"),
    (_set("image_id", 839), "image_id"),
    (_set("image_id", "ab/image-1.jpeg"), "image_id"),
    (_drop("image"), "image"),
    (_set("image", ["train/0840/image-02.jpeg"]), "image"),
    (_set("bboxes", [[0.5, 0.5, 0.2, 0.2]]), "bboxes"),
    (_set("bboxes", [[0.5, 0.5, 0.2], [0.1, 0.9, 0.1, 0.1]]), "bboxes"),
    (_set("bboxes", [[0.5, 0.5, 0.2, 1.5], [0.1, 0.9, 0.1, 0.1]]), "bboxes"),
    (_set("bboxes", [[0.5, "0.5", 0.2, 0.2], [0.1, 0.9, 0.1, 0.1]]), "bboxes"),
    (_set("bboxes", [[0.5, 0.5, 0.2, True], [0.1, 0.9, 0.1, 0.1]]), "bboxes"),
    (_set("sentences", "a library"), "sentences"),
    (_set("caption", 7), "caption"),
    (_set("caption", {"text": "x"}), "caption"),
    (_set("caption", ["fine", 3]), "caption"),
    (_set("caption", "   "), "caption"),
    (_set("caption", []), "caption"),
    (_drop("caption"), "caption"),
    (_set("image", "../../etc/passwd"), "image"),
    (_set("image", "/etc/passwd"), "image"),
    (_set("image", "train/../../outside.jpeg"), "image"),
    (_set("image", "train/0839/image-43.jpeg"), "image"),  # same image_id as item 0, other path
])
def test_geotext_bad_item_is_named(tmp_path, change, field):
    first = {"image_id": "0840/image-02.jpeg", "image": "train/0840/image-02.jpeg",
             "caption": "A library.", "sentences": [], "bboxes": []}
    bad = _good_item()
    change(bad)
    path = tmp_path / "train.json"
    path.write_text(json.dumps([first, bad]), encoding="utf-8")
    with pytest.raises(CGRSInputError) as info:
        load_geotext(path)
    message = str(info.value)
    assert str(path) in message
    assert "item 1" in message
    assert f"'{field}'" in message


def test_geotext_good_item_mutation_base_loads(tmp_path):
    # the bad-item cases above differ from this only by their change
    path = tmp_path / "train.json"
    path.write_text(json.dumps([_good_item()]), encoding="utf-8")
    gallery, queries = load_geotext(path)
    assert len(gallery) == 1 and [q.query_id for q in queries] == ["0840/image-02.jpeg#0"]


def test_geotext_bbox_float_noise_is_clamped_with_a_warning(tmp_path, caplog):
    """1.0000001 and -0.00002 are float noise the official loader accepts: clamp into [0, 1], warn
    once per file naming the first place; 1.01 stays refused (bad-item cases above: 1.5)."""
    noisy = _good_item()
    noisy["bboxes"] = [[0.5, 1.0000001, 0.2, 0.2], [-0.00002, 0.9, 0.1, 1.00005]]
    path = tmp_path / "train.json"
    path.write_text(json.dumps([_good_item(), noisy]), encoding="utf-8")
    with caplog.at_level("WARNING", logger="cgrs_ros.formats.geotext"):
        gallery, _ = load_geotext(path)
    assert gallery.records[0].extras["bboxes"] == [[0.5, 0.5, 0.2, 0.2], [0.1, 0.9, 0.1, 0.1],
                                                    [0.5, 1.0, 0.2, 0.2], [0.0, 0.9, 0.1, 1.0]]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert f"{path}: 3 bbox value(s) outside [0, 1]" in warnings[0]
    assert "first at " + f"{path}: item 1: field 'bboxes'[0]" in warnings[0]

    noisy["bboxes"][1][3] = 1.01
    path.write_text(json.dumps([noisy]), encoding="utf-8")
    with pytest.raises(CGRSInputError, match=r"item 0: field 'bboxes'\[1\] is .*1\.01"):
        load_geotext(path)


@pytest.mark.parametrize("content, expected", [
    (b"[", r":1:2: not valid JSON"),
    (b'{"image_id": "0839/a.jpeg"}', r"expected a JSON list"),
    (b"[]", r"annotation list is empty"),
    (b"[3]", r"item 0: expected a JSON object"),
    (b'["\xff"]', r"not UTF-8"),
])
def test_geotext_bad_file(tmp_path, content, expected):
    path = tmp_path / "ann.json"
    path.write_bytes(content)
    with pytest.raises(CGRSInputError, match=re.escape(str(path)) + ".*" + expected):
        load_geotext(path)


def test_geotext_missing_file(tmp_path):
    with pytest.raises(CGRSInputError, match="cannot read GeoText annotations .*nope.json"):
        load_geotext(tmp_path / "nope.json")


# --- RoboSense Track 4 -------------------------------------------------------------------------

def test_track4_gallery(tmp_path):
    names = ["image_ff01.jpeg", "image_0a9b.jpeg", "image_c3.png", "image_77.jpg"]
    for name in names:
        assert cv2.imwrite(str(tmp_path / name), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "._image_ff01.jpeg").write_bytes(b"AppleDouble")
    (tmp_path / "sub.jpeg").mkdir()
    gallery = load_track4_gallery(tmp_path)
    assert [r.image_id for r in gallery] == ["image_0a9b", "image_77", "image_c3", "image_ff01"]
    assert [r.path for r in gallery] == ["image_0a9b.jpeg", "image_77.jpg", "image_c3.png",
                                         "image_ff01.jpeg"]
    assert gallery.place_ids == [r.image_id for r in gallery]
    assert {r.platform for r in gallery} == {"drone"}
    assert all(r.lat is None and r.lon is None and r.alt is None and r.heading is None
               for r in gallery)
    assert all(gallery.resolve(r).is_file() for r in gallery)


def test_track4_gallery_errors(tmp_path):
    with pytest.raises(CGRSInputError, match="holds no .jpeg/.jpg/.png images"):
        load_track4_gallery(tmp_path)
    with pytest.raises(CGRSInputError, match="does not exist"):
        load_track4_gallery(tmp_path / "missing")
    (tmp_path / "image_a.jpeg").write_bytes(b"x")
    (tmp_path / "image_a.png").write_bytes(b"x")
    with pytest.raises(CGRSInputError, match="image_a.jpeg and image_a.png both give image id"):
        load_track4_gallery(tmp_path)


def test_track4_queries():
    queries = load_track4_queries(TRACK4_QUERIES)
    assert [(q.query_id, q.text, q.place_id) for q in queries] == [
        ("q_00001", "Find the white building with a red roof next to the river.", None),
        ("q_00002", "A parking lot surrounded by trees, north of a stadium.", None),
        ("q_00010", "The round tower at the corner of the campus.", None)]


@pytest.mark.parametrize("line, expected", [
    ("q_00003 a building with spaces not a tab", "found no TAB"),
    ("q_3x\ta building", "query id 'q_3x' is not 'q_<digits>'"),
    ("q\ta building", "query id 'q' is not 'q_<digits>'"),
    ("q1\tq_00001 again, as the submission writes it", "both become 'q1'"),
    ("Q_00003\ta building", "query id 'Q_00003'"),
    ("q_0000x\ta building", "query id 'q_0000x'"),
    ("\ta building", "query id ''"),
    ("q_00003\t", "the query text is empty"),
    ("q_00003\t   ", "the query text is empty"),
    ("q_00001\tthe same id again", "duplicate query id 'q_00001' (first on line 1)"),
    ("q_1\tanother spelling of q1", "both become 'q1'"),
])
def test_track4_bad_query_line_is_named(tmp_path, line, expected):
    path = tmp_path / "queries.txt"
    path.write_text("q_00001\ta white building\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(CGRSInputError) as info:
        load_track4_queries(path)
    assert f"{path}:3: " in str(info.value)
    assert expected in str(info.value)


def test_track4_queries_already_in_submission_form(tmp_path):
    """The official tool takes ``q1<TAB>text`` as well as ``q_00001<TAB>text``."""
    path = tmp_path / "queries.txt"
    path.write_text("q1\ta white building\nq_00002\ta red roof\nq10\ta tower\n", encoding="utf-8")
    queries = load_track4_queries(path)
    assert [q.query_id for q in queries] == ["q1", "q_00002", "q10"]
    assert [submission_query_id(q.query_id) for q in queries] == ["q1", "q2", "q10"]


def test_track4_gallery_in_nested_folders(tmp_path):
    """Images in sub-folders are read (hidden folders skipped); ids stay the file stems."""
    for name in ("a/image_02.jpeg", "a/b/image_01.png", "image_03.jpg", ".cache/image_04.jpeg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(tmp_path / name), np.zeros((4, 4, 3), np.uint8))
    gallery = load_track4_gallery(tmp_path)
    assert [(r.image_id, r.path) for r in gallery] == [
        ("image_01", "a/b/image_01.png"), ("image_02", "a/image_02.jpeg"), ("image_03", "image_03.jpg")]
    assert all(gallery.resolve(r).is_file() for r in gallery)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "image_01.jpeg").write_bytes(b"x")
    with pytest.raises(CGRSInputError, match="a/b/image_01.png and c/image_01.jpeg both give image id"):
        load_track4_gallery(tmp_path)


def test_track4_query_file_errors(tmp_path):
    with pytest.raises(CGRSInputError, match="cannot read Track 4 query file"):
        load_track4_queries(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(CGRSInputError, match="empty.txt: no queries"):
        load_track4_queries(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("q_00001\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(CGRSInputError, match="latin1.txt is not UTF-8"):
        load_track4_queries(tmp_path / "latin1.txt")


def test_submission_query_id():
    assert submission_query_id("q_00001") == "q1"
    assert submission_query_id("q_01230") == "q1230"
    assert submission_query_id("q_7") == "q7"
    assert submission_query_id("q12") == "q12"          # already in the submission form
    assert submission_query_id("q012") == "q12"
    for bad in ("q", "q_", "x_0001", "q_00a1", "Q1", "q 1", 5):
        with pytest.raises(CGRSInputError):
            submission_query_id(bad)


def _ranking(prefix: str, n: int = 12) -> list[str]:
    return [f"image_{prefix}{i:02x}" for i in range(n)]


def test_write_submission_exact_text(tmp_path):
    rankings = {"q_00002": _ranking("b"), "q_00001": _ranking("a", 10)}
    path = write_track4_submission(rankings, tmp_path / "out" / "submission.txt")
    assert path == tmp_path / "out" / "submission.txt"
    assert path.read_text(encoding="utf-8") == (
        "q2 image_b00 image_b01 image_b02 image_b03 image_b04 image_b05 image_b06 image_b07 "
        "image_b08 image_b09\n"
        "q1 image_a00 image_a01 image_a02 image_a03 image_a04 image_a05 image_a06 image_a07 "
        "image_a08 image_a09\n")
    assert [p.name for p in path.parent.iterdir()] == ["submission.txt"]  # no temp file left

    as_list = [("q_00010", ["image_x", "image_y", "image_z"])]
    write_track4_submission(as_list, tmp_path / "s3.txt", top=2)
    assert (tmp_path / "s3.txt").read_text() == "q10 image_x image_y\n"


@pytest.mark.parametrize("rankings, expected", [
    ({"q_00001": _ranking("a", 12), "q_00002": _ranking("b", 9)}, "query 'q_00002' has 9 ranked images"),
    ({"q_00001": _ranking("a", 11) + ["image_a03"]}, "query 'q_00001' ranks image_a03 more than once"),
    ({"q_00001": ["image_a00.jpeg"] + _ranking("a", 11)[1:]}, "without the file extension"),
    ({"q_00001": ["image a"] + _ranking("a", 11)[1:]}, "ranks 'image a', not an image id"),
    ({"q_00001": "image_a00 image_a01"}, "must be a list of image ids"),
    ({"q1x": _ranking("a")}, "query id 'q1x' is not a Track 4 id"),
    ([("q_00001", _ranking("a")), ("q1", _ranking("b"))], "query 'q1' appears twice"),
    ([("q_00001", _ranking("a")), ("q_1", _ranking("b"))], "query 'q_1' appears twice"),
    ({}, "no rankings"),
])
def test_write_submission_refuses(tmp_path, rankings, expected):
    path = tmp_path / "submission.txt"
    with pytest.raises(CGRSInputError) as info:
        write_track4_submission(rankings, path)
    assert expected in str(info.value)
    assert not path.exists()


def test_track4_round_trip_from_gallery_and_queries(tmp_path):
    for i in range(10):
        (tmp_path / f"image_{i:04x}.jpeg").write_bytes(b"jpeg")
    gallery = load_track4_gallery(tmp_path)
    queries = load_track4_queries(TRACK4_QUERIES)
    ids = [r.image_id for r in gallery]
    rankings = [(q.query_id, ids[n:] + ids[:n]) for n, q in enumerate(queries)]
    text = write_track4_submission(rankings, tmp_path / "submission.txt").read_text()
    lines = text.splitlines()
    assert [line.split()[0] for line in lines] == ["q1", "q2", "q10"]
    assert lines[2].split()[1:] == ids[2:] + ids[:2]
