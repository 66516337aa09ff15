"""The gallery manifest and queries.jsonl: round trips, and every bad input named precisely."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import GalleryRecord, read_manifest, write_manifest
from cgrs_ros.queries import Query, read_queries, write_queries


def _record(image_id="p0001_drone_01", **changes) -> dict:
    row = {"image_id": image_id, "path": f"images/{image_id}.png", "place_id": image_id[:5],
           "platform": "drone", "lat": 47.3712, "lon": 8.5421, "alt": 120.0, "heading": 45.0}
    row.update(changes)
    return row


def _write_rows(path: Path, *rows) -> Path:
    """JSON Lines with a blank line 2, so the rows are lines 1, 3, 4, ..."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines[:1] + [""] + lines[1:]) + "\n", encoding="utf-8")
    return path


# --- manifest ----------------------------------------------------------------------------------

def test_manifest_round_trip(tmp_path):
    records = [
        GalleryRecord("p0001_drone_01", "images/p0001_drone_01.png", "p0001", "drone",
                      47.3712, 8.5421, 120.0, 45.0,
                      extras={"descriptions": ["a red roof", "Zürich 北"], "meta": {"k": [1, None]}}),
        GalleryRecord("p0001_sat", "images/sat/p0001.png", "p0001", "satellite",
                      47.3713, -8.5, -12.5, -90.0),
        GalleryRecord("0839/image-43.jpeg", "train/0839/image-43.jpeg", "0839", "ground",
                      None, None, None, None, extras={"caption": ["x"], "bboxes": [None]}),
    ]
    path = write_manifest(records, tmp_path / "gallery" / "manifest.jsonl")
    assert path == tmp_path / "gallery" / "manifest.jsonl"
    gallery = read_manifest(tmp_path / "gallery")  # a folder means its manifest.jsonl
    assert gallery.records == records
    assert [r.extras for r in gallery] == [r.extras for r in records]
    assert gallery.root == (tmp_path / "gallery").resolve()
    assert gallery.source == str(path)
    assert gallery.place_ids == ["p0001", "p0001", "0839"]
    assert [r.has_geo for r in gallery] == [True, True, False]
    assert gallery.resolve(gallery.records[1]) == (tmp_path / "gallery/images/sat/p0001.png").resolve()
    assert path.read_text(encoding="utf-8").count("\n") == 3
    # integers are read back as floats, and written identically the second time
    again = write_manifest(gallery.records, tmp_path / "again.jsonl")
    assert again.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("bad, expected", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "expected a JSON object"),
    (_record(lat=None, lon=None, alt=None, heading=None) | {"image_id": ""}, "field 'image_id'"),
    ({k: v for k, v in _record().items() if k != "place_id"}, "field 'place_id' is missing"),
    ({k: v for k, v in _record().items() if k != "alt"}, "field 'alt' is missing (use null"),
    ({k: v for k, v in _record().items() if k != "heading"}, "field 'heading' is missing"),
    (_record(lat="47.3"), "field 'lat' is '47.3', not a number"),
    (_record(lon=True), "field 'lon' is True, not a number"),
    (_record(alt=[120]), "field 'alt' is [120], not a number"),
    (_record(lat=91.0), "field 'lat' = 91.0 is outside [-90.0, 90.0]"),
    (_record(lon=-180.5), "field 'lon' = -180.5 is outside"),
    ('{"image_id": "x", "path": "x.png", "place_id": "p", "platform": "drone", '
     '"lat": NaN, "lon": 8.0, "alt": null, "heading": null}', "field 'lat' = nan is outside"),
    (_record(lat=None), "'lat' and 'lon' must both be numbers or both be null"),
    (_record(lon=None), "'lat' and 'lon' must both be numbers or both be null"),
    (_record(platform="uav"), "field 'platform' is 'uav'; expected one of drone, satellite, ground"),
    (_record(platform="Drone"), "field 'platform' is 'Drone'"),
    (json.dumps(_record()).replace("47.3712", "1" + "0" * 400), "field 'lat' is an integer too large"),
    ("[" * 100000 + "]" * 100000, "not valid JSON (nested too deeply)"),
    (_record(path="images/a\u0000.png"), "has an unusable path 'images/a\\x00.png'"),
])
def test_manifest_bad_row_is_named(tmp_path, bad, expected):
    path = _write_rows(tmp_path / "manifest.jsonl", _record("p0000_ok"), _record("p0002_ok"), bad)
    with pytest.raises(CGRSInputError) as info:
        read_manifest(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: ")
    assert expected in message


def test_manifest_missing_file(tmp_path):
    with pytest.raises(CGRSInputError, match="cannot read gallery manifest .*nope.jsonl"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(CGRSInputError, match="cannot read gallery manifest .*manifest.jsonl"):
        read_manifest(tmp_path)  # a folder without a manifest


def test_manifest_not_utf8(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(json.dumps(_record(descriptions=["Z\u00fcrich"]), ensure_ascii=False)
                     .encode("latin-1") + b"\n")
    with pytest.raises(CGRSInputError, match=f"gallery manifest {re.escape(str(path))} is not UTF-8 text"):
        read_manifest(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_manifest_empty(tmp_path, content):
    path = tmp_path / "manifest.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CGRSInputError, match=f"^{re.escape(str(path))}: the gallery is empty$"):
        read_manifest(path)


def test_manifest_duplicate_image_id(tmp_path):
    path = _write_rows(tmp_path / "manifest.jsonl", _record("p0001_a"), _record("p0001_b"),
                       _record("p0001_a", path="images/other.png"))
    with pytest.raises(CGRSInputError, match=f"^{re.escape(str(path))}:4: duplicate image_id 'p0001_a'$"):
        read_manifest(path)


@pytest.mark.parametrize("bad_path", ["../x.png", "/etc/passwd", "images/../../x.png"])
def test_manifest_path_leaving_gallery(tmp_path, bad_path):
    gallery_dir = tmp_path / "gallery"
    gallery_dir.mkdir()
    path = _write_rows(gallery_dir / "manifest.jsonl", _record("p0001_a"),
                       _record("p0001_b", path=bad_path))
    with pytest.raises(CGRSInputError) as info:
        read_manifest(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: image 'p0001_b' has path {bad_path!r}")
    assert f"leaves the gallery folder {gallery_dir.resolve()}" in message


@pytest.mark.parametrize("bad", [_record("p0001_a", path="images/other.png"),
                                 _record("p0001_b", path="../x.png")])
def test_manifest_duplicate_and_outside_name_the_row(tmp_path, bad):
    path = _write_rows(tmp_path / "manifest.jsonl", _record("p0001_a"), bad)
    with pytest.raises(CGRSInputError, match=f"^{re.escape(str(path))}:3: "):
        read_manifest(path)


def test_manifest_round_trip_line_separator_in_extras(tmp_path):
    record = GalleryRecord("a", "a.png", "p", "drone", None, None, None, None,
                           extras={"caption": ["left\u2028right", "next\x85line"]})
    path = write_manifest([record], tmp_path / "manifest.jsonl")
    assert read_manifest(path).records[0].extras == record.extras


# --- queries.jsonl -----------------------------------------------------------------------------

def test_queries_round_trip(tmp_path):
    queries = [Query("q00001", "the red roof next to the river", "p0001"),
               Query("q00002", "ein Gebäude mit grünem Dach", None)]
    path = write_queries(queries, tmp_path / "sub" / "queries.jsonl")
    assert read_queries(path) == queries
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[1]) == {
        "query_id": "q00002", "text": "ein Gebäude mit grünem Dach", "place_id": None}


def test_queries_whitespace_is_normalised(tmp_path):
    path = _write_rows(tmp_path / "queries.jsonl", {"query_id": "a", "text": "  red\t roof \n"})
    assert read_queries(path) == [Query("a", "red roof", None)]


@pytest.mark.parametrize("bad, expected", [
    ({"query_id": "q3", "text": ""}, "the query text is empty"),
    ({"query_id": "q3", "text": " \t \u3000 "}, "the query text is empty"),
    ({"query_id": "q3"}, "query text must be a string, got NoneType"),
    ({"query_id": "q3", "text": 5}, "query text must be a string, got int"),
    ({"query_id": "q1", "text": "again"}, "duplicate query_id 'q1'"),
    ({"query_id": 3, "text": "x"}, "expected an object with a string 'query_id'"),
    ({"query_id": "q3", "text": "x", "place_id": 7}, "'place_id' must be a string or null"),
    ("{oops", "not valid JSON"),
])
def test_queries_bad_row_is_named(tmp_path, bad, expected):
    path = _write_rows(tmp_path / "queries.jsonl", {"query_id": "q1", "text": "a roof"},
                       {"query_id": "q2", "text": "a road", "place_id": "p1"}, bad)
    with pytest.raises(CGRSInputError) as info:
        read_queries(path)
    assert str(info.value).startswith(f"{path}:4: ")
    assert expected in str(info.value)


def test_queries_missing_and_empty_file(tmp_path):
    with pytest.raises(CGRSInputError, match="cannot read query file .*nope.jsonl"):
        read_queries(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(CGRSInputError, match="empty.jsonl: no queries"):
        read_queries(tmp_path / "empty.jsonl")


def test_queries_not_utf8(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_bytes('{"query_id": "q1", "text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(CGRSInputError, match="UTF-8"):
        read_queries(path)
