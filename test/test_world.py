"""Tests of the procedural world generator (cgrs_ros.world): determinism, geo, language, exports."""
from __future__ import annotations

import collections
import json
import math
import re
from pathlib import Path

import cv2
import pytest

from cgrs_ros.gallery import read_manifest
from cgrs_ros.queries import read_queries
from cgrs_ros.world import generate_world
from cgrs_ros.world.cli import main as world_main
from cgrs_ros.world.query_text import COLOUR, FEATURE

PLACES, DRONES, SIZE = 6, 8, 64
PER_PLACE = 1 + DRONES + 1


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """Two worlds from seed 11 (for byte comparison) and one from seed 12."""
    root = tmp_path_factory.mktemp("worlds")
    return {name: generate_world(root / name, seed, PLACES, views_drone=DRONES, size=SIZE, geotext=True,
                                 progress=False)
            for name, seed in (("a", 11), ("b", 11), ("c", 12))}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _world(folder: Path) -> dict:
    return json.loads((folder / "world.json").read_text(encoding="utf-8"))


def _haversine_m(lat1, lon1, lat2, lon2) -> float:
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def test_same_seed_gives_identical_bytes(worlds):
    a, b = _files(worlds["a"]), _files(worlds["b"])
    # manifest, 2 query files, world, train.json + test.json, images thrice (world, GeoText train and test)
    assert len(a) == 4 + 2 + 3 * PLACES * PER_PLACE
    assert a.keys() == b.keys()
    assert [name for name in a if a[name] != b[name]] == []


def test_different_seed_gives_a_different_world(worlds):
    a, c = _files(worlds["a"]), _files(worlds["c"])
    assert a["manifest.jsonl"] != c["manifest.jsonl"]
    assert a["images/p0000_drone_01.png"] != c["images/p0000_drone_01.png"]
    places_a = [p["building"] for p in _world(worlds["a"])["places"]]
    places_c = [p["building"] for p in _world(worlds["c"])["places"]]
    assert places_a != places_c


def test_records_platforms_images_and_altitudes(worlds):
    gallery = read_manifest(worlds["a"])
    places = {p["place_id"]: p for p in _world(worlds["a"])["places"]}
    assert len(gallery) == PLACES * PER_PLACE
    counts = collections.Counter((r.place_id, r.platform) for r in gallery)
    for place_id in places:
        assert (counts[(place_id, "satellite")], counts[(place_id, "drone")], counts[(place_id, "ground")]) == (1, 8, 1)
    assert gallery.records[0].image_id == "p0000_satellite_01"
    assert "p0003_drone_08" in {r.image_id for r in gallery}
    for record in gallery:
        image = cv2.imread(str(gallery.resolve(record)), cv2.IMREAD_UNCHANGED)
        assert image.shape == (SIZE, SIZE, 3)
        assert image.std() > 5          # a scene, not a blank frame
        above_ground = record.alt - places[record.place_id]["ground_height_m"]
        expected = {"satellite": (600.0, 600.0), "drone": (30.0, 120.0), "ground": (1.7, 1.7)}[record.platform]
        assert expected[0] - 0.01 <= above_ground <= expected[1] + 0.01
        assert 0.0 <= record.heading < 360.0
    satellite_headings = {r.heading for r in gallery if r.platform == "satellite"}
    drone_headings = [r.heading for r in gallery if r.place_id == "p0000" and r.platform == "drone"]
    assert satellite_headings == {0.0}
    assert max(drone_headings) - min(drone_headings) > 180     # the orbit goes round the building


def test_every_camera_stands_inside_its_place_footprint(worlds):
    gallery = read_manifest(worlds["a"])
    world = _world(worlds["a"])
    assert world["datum"]["name"] == "WGS-84"
    places = {p["place_id"]: p for p in world["places"]}
    offsets = []
    for record in gallery:
        place = places[record.place_id]
        distance = _haversine_m(place["lat"], place["lon"], record.lat, record.lon)
        assert distance <= place["radius_m"], (record.image_id, distance)
        offsets.append(distance)
    assert max(offsets) > 20.0          # oblique drones and the ground observer stand off-centre
    centres = [(p["lat"], p["lon"], p["radius_m"]) for p in world["places"]]
    for i, (lat1, lon1, r1) in enumerate(centres):
        for lat2, lon2, r2 in centres[i + 1:]:
            assert _haversine_m(lat1, lon1, lat2, lon2) > r1 + r2      # footprints never overlap


def test_descriptions_sentences_and_boxes_match_the_place(worlds):
    gallery = read_manifest(worlds["a"])
    places = {p["place_id"]: p for p in _world(worlds["a"])["places"]}
    map_words = {"north": "above", "south": "below", "east": "on the right of", "west": "on the left of"}
    for record in gallery:
        place = places[record.place_id]
        descriptions, sentences, boxes = (record.extras[k] for k in ("descriptions", "sentences", "bboxes"))
        assert len(descriptions) == 3 and len(set(descriptions)) == 3
        assert all(place["building"]["colour"] in d.lower() and place["building"]["shape"].lower() in d.lower()
                   for d in descriptions)
        assert len(sentences) == len(boxes) >= 1
        assert all(len(box) == 4 and all(0.0 <= v <= 1.0 for v in box) for box in boxes)
        assert sentences[0].endswith("in the centre")
        for sentence in sentences[1:]:
            assert any(n["kind"].split()[-1] in sentence
                       and (f"to the {n['direction']} of" in sentence or map_words[n["direction"]] in sentence)
                       for n in place["neighbours"]), (record.image_id, sentence)
        if record.platform == "satellite":       # centred on the building, up to 4 m off
            assert abs(boxes[0][0] - 0.5) < 0.1 and abs(boxes[0][1] - 0.5) < 0.1
            assert len(sentences) >= 2           # the wide view shows at least one neighbour


def test_queries_are_per_place_and_never_copy_a_caption(worlds):
    queries = read_queries(worlds["a"] / "queries.jsonl")
    gallery = read_manifest(worlds["a"])
    descriptions = {d for r in gallery for d in r.extras["descriptions"]}
    sentences = {s for r in gallery for s in r.extras["sentences"]}
    assert len(queries) == PLACES * 3
    assert [q.query_id for q in queries[:2]] == ["q000000", "q000001"]
    assert collections.Counter(q.place_id for q in queries) == {f"p{i:04d}": 3 for i in range(PLACES)}
    assert {q.place_id for q in queries} <= set(gallery.place_ids)
    assert all(q.text not in descriptions and q.text not in sentences for q in queries)
    synonyms = {w for table in (COLOUR, FEATURE) for words in table.values() for w in words}
    assert any(any(s in q.text for s in synonyms) for q in queries)
    facts = {q["query_id"]: q for q in _world(worlds["a"])["queries"]}
    assert all(2 <= len(facts[q.query_id]["facts"]) <= 4 and facts[q.query_id]["matching_places"] >= 1
               for q in queries)


def test_relation_queries_name_two_sides_that_fit_exactly_one_place(tmp_path):
    folder = generate_world(tmp_path / "w", 21, 40, views_drone=1, size=32, progress=False)
    world = _world(folder)
    facts_of = {p["place_id"]: {(n["kind"], n["direction"]) for n in p["neighbours"]} for p in world["places"]}
    queries = read_queries(folder / "relation_queries.jsonl")
    recorded = {q["query_id"]: q for q in world["queries"]}
    assert len(queries) >= 10 and all(q.query_id.startswith("r") for q in queries)
    for query in queries:
        pair = {(kind, side) for _, kind, side in recorded[query.query_id]["facts"]}
        assert len(pair) == 2 and all(side in ("north", "east", "south", "west") for _, side in pair)
        assert [place for place, facts in facts_of.items() if pair <= facts] == [query.place_id]
    again = generate_world(tmp_path / "again", 21, 40, views_drone=1, size=32, progress=False)
    assert (again / "relation_queries.jsonl").read_bytes() == (folder / "relation_queries.jsonl").read_bytes()


def test_descriptions_read_back_exactly_and_use_the_right_article(worlds):
    """parse_description is the inverse of describe: it is what caption accuracy is measured with."""
    from cgrs_ros.world.captions import parse_description

    places = {p["place_id"]: p for p in _world(worlds["a"])["places"]}
    for record in read_manifest(worlds["a"]):
        building = places[record.place_id]["building"]
        sides = {n["kind"]: n["direction"] for n in places[record.place_id]["neighbours"]}
        for text in record.extras["descriptions"]:
            parsed = parse_description(text)
            assert not re.search(r"\ba [aeiou]", text), text
            if "surroundings of" not in text:
                assert (parsed["colour"], parsed["shape"], parsed["size"]) == (
                    building["colour"], building["shape"], building["size"]), text
            assert parsed["neighbours"] == {kind: sides[kind] for kind in parsed["neighbours"]}, text
            assert len(parsed["neighbours"]) == len(record.extras["sentences"]) - ("in the centre" in
                                                                                   record.extras["sentences"][0])
    texts = [q.text for q in read_queries(worlds["a"] / "queries.jsonl")]
    assert not [t for t in texts if re.search(r"\ba [aeiou]", t)]


def test_caption_accuracy_counts_each_attribute():
    from cgrs_ros.training.evaluate import caption_accuracy

    truth = ("The image shows a large L-shaped building with an orange roof in the centre. "
             "There is a lake to the north of the building and a road to the east of the building.")
    said = ("The image shows a large round building with an orange roof in the centre. "
            "There is a lake to the south of the building.")
    scores = caption_accuracy([said, truth], [truth, truth])
    assert scores["colour"] == {"accuracy": 100.0, "count": 2}
    assert scores["shape"]["accuracy"] == 50.0
    assert scores["neighbour kind"] == {"accuracy": 75.0, "count": 4}     # the road was missed once
    assert scores["neighbour side"] == {"accuracy": 66.7, "count": 3}     # the lake put south once


def test_geotext_export_layout(worlds):
    """train.json: one item per description (caption a string); test.json: one item per image
    (caption the list of its descriptions); images under images/ with paths relative to it."""
    root = worlds["a"] / "geotext"
    gallery = {r.image_id: r for r in read_manifest(worlds["a"])}
    train = json.loads((root / "train.json").read_text(encoding="utf-8"))
    test = json.loads((root / "test.json").read_text(encoding="utf-8"))
    assert len(test) == PLACES * PER_PLACE and len(train) == 3 * len(test)
    for split, items in (("train", train), ("test", test)):
        for item in items:
            assert set(item) == {"image_id", "image", "caption", "sentences", "bboxes"}
            building, name = item["image_id"].split("/")
            record = gallery[Path(name).stem]
            assert item["image_id"][:4] == building == record.place_id[1:]
            folder = "train" if split == "train" else "test/gallery_no_train"
            assert item["image"] == f"{folder}/{item['image_id']}"
            assert item["sentences"] == record.extras["sentences"] and len(item["bboxes"]) == len(item["sentences"])
            assert (root / "images" / item["image"]).read_bytes() == (worlds["a"] / record.path).read_bytes()
    for item in test:
        assert item["caption"] == gallery[Path(item["image_id"]).name.rsplit(".", 1)[0]].extras["descriptions"]
    assert [i["caption"] for i in train] == [text for i in test for text in i["caption"]]
    # a building's images are consecutive (the official test loader numbers buildings as they change)
    buildings = [i["image_id"][:4] for i in test]
    assert buildings == sorted(buildings)


def test_geotext_export_loads_from_either_file(worlds):
    """Both files load without --image-root (images/ is found) into one gallery and the same queries."""
    from cgrs_ros.formats import load_geotext

    root = worlds["a"] / "geotext"
    train_gallery, train_queries = load_geotext(root / "train.json")
    test_gallery, test_queries = load_geotext(root / "test.json")
    assert [r.image_id for r in train_gallery] == [r.image_id for r in test_gallery]
    assert train_gallery.root == test_gallery.root == (root / "images").resolve()
    assert all(test_gallery.resolve(r).is_file() for r in test_gallery)
    assert [(q.query_id, q.text) for q in train_queries] == [(q.query_id, q.text) for q in test_queries]
    assert len(test_queries) == 3 * len(test_gallery)


def test_cli_options_replacement_and_refusal(tmp_path, capsys):
    out = tmp_path / "w"
    assert world_main(["--seed", "5", "--places", "3", "--out", str(out), "--views-drone", "2",
                       "--no-ground", "--size", "48", "--quiet"]) == 0
    gallery = read_manifest(out)
    assert collections.Counter(r.platform for r in gallery) == {"satellite": 3, "drone": 6}
    assert not (out / "geotext").exists()
    assert world_main(["--seed", "6", "--places", "2", "--out", str(out), "--quiet"]) == 0   # replaces the world
    assert len(read_manifest(out)) == 2 * PER_PLACE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]                             # no temp leftovers
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert world_main(["--seed", "5", "--places", "2", "--out", str(tmp_path / "mine"), "--quiet"]) == 2
    assert "not a generated world" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
