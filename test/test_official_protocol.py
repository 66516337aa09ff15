"""The robosense-official protocol on a hand-derived fixture, and cgrs-eval's --protocol end to end.

Fixture: six images in file order, buildings A A B B C C (indices 0..5), one text per image
(text t describes image t).  Every expected number below is worked out by hand in the comments.
"""
import json

import numpy as np
import pytest

from cgrs_ros import official_protocol
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.evaluation import recall_at_k

BUILDINGS = ["A", "A", "B", "B", "C", "C"]
# The official loader labels an image with the counter *before* bumping it at a building change:
# img0 A -> 0; img1 A -> 0; img2 B -> 0 (then 1); img3 B -> 1; img4 C -> 1 (then 2); img5 C -> 2.
LABELS = [0, 0, 0, 1, 1, 2]
SCORES = np.array([
    # t0 (A, label 0): img0 0.50002 and img5 0.50001 differ in fp32 but are both 0.5 in fp16
    # (spacing 2**-10 there); the reversed argsort puts the later one, img5 (label 2), first:
    # ranked img5, img0, ... -> official rank 1; place protocol (fp32): img0 first -> rank 0.
    [0.50002, 0.1, 0.1, 0.2, 0.3, 0.50001],
    # t1 (A, label 0): ranked img3 (B, label 1), img2 (B, label 0), img1 (A), ...
    # official: img2's label 0 is t1's -> rank 1; place: first A is img1 -> rank 2.
    [0.1, 0.2, 0.3, 0.9, 0.1, 0.1],
    # t2 (B, label 0): ranked img0 (A, label 0), img3 (B), ... official rank 0; place rank 1.
    [0.9, 0.1, 0.2, 0.3, 0.1, 0.1],
    # t3 (B, label 1): ranked img2 (B, label 0), img3 (B, label 1): official rank 1; place rank 0.
    [0.1, 0.1, 0.9, 0.8, 0.1, 0.1],
    # t4 (C, label 1): ranked img3 (B, label 1), img5 (C): official rank 0; place rank 1.
    [0.1, 0.1, 0.1, 0.9, 0.2, 0.3],
    # t5 (C, label 2): ranked img4 (C, label 1), img5 (C, label 2): official rank 1; place rank 0.
    [0.1, 0.1, 0.1, 0.1, 0.8, 0.7],
], dtype=np.float32)
KS = (1, 2, 3)
# official ranks 1 1 0 1 0 1: R@1 2/6, R@2 6/6, R@3 6/6
OFFICIAL = {1: 100 * 2 / 6, 2: 100.0, 3: 100.0}
# place ranks 0 2 1 0 1 0: R@1 3/6, R@2 5/6, R@3 6/6
PLACE = {1: 50.0, 2: 100 * 5 / 6, 3: 100.0}


def test_building_labels_are_off_by_one_at_every_change():
    assert official_protocol.building_labels(BUILDINGS).tolist() == LABELS
    # one image per building: each image after the first carries its predecessor's label;
    # a building that comes back after another is a new label
    assert official_protocol.building_labels(["A", "B", "C", "A"]).tolist() == [0, 0, 1, 2]
    assert official_protocol.building_labels([]).tolist() == []


def test_official_recall_on_the_hand_derived_fixture():
    recall = official_protocol.text_to_image_recall(SCORES, range(6), np.array(LABELS), KS)
    assert recall == pytest.approx(OFFICIAL)


def test_place_protocol_on_the_same_scores_is_unchanged():
    order = [np.argsort(-row, kind="stable") for row in SCORES]   # fp32, earlier image first
    ranked = [[BUILDINGS[i] for i in rows] for rows in order]
    assert recall_at_k(ranked, BUILDINGS, KS) == pytest.approx(PLACE)


def test_ranking_scores_keep_a_reranked_order_and_fill_the_rest():
    scores = official_protocol.ranking_scores(np.array([4, 0, 2]), 6)
    assert scores.tolist() == [2.0, -100.0, 1.0, -100.0, 3.0, -100.0]
    # t of image 0 (label 0): ranked img4 (label 1), img0 (label 0) -> rank 1
    recall = official_protocol.text_to_image_recall(scores[None], [0], np.array(LABELS), (1, 2))
    assert recall == {1: 0.0, 2: 100.0}


def test_query_image_rows_need_geotext_query_ids():
    assert official_protocol.query_image_rows(["b#0", "a/x.png#2"], ["a/x.png", "b"]) == [1, 0]
    with pytest.raises(CGRSInputError, match="query id 'q00001' does not name one"):
        official_protocol.query_image_rows(["q00001"], ["a"])
    with pytest.raises(CGRSInputError, match="describes image 'c', which is not in the index"):
        official_protocol.query_image_rows(["c#0"], ["a"])


def test_cgrs_eval_protocol_end_to_end(tmp_path, tiny_engine_config_path, capsys):
    """The real commands (in this process, to keep the test short) on a GeoText gallery: the default
    report says protocol place, the official one runs on the same index, and needs GeoText queries."""
    import cv2

    from cgrs_ros.cli.evaluate import main as evaluate_main
    from cgrs_ros.cli.index import main as index_main

    items = []
    for b in range(4):
        for v in range(3):
            image = f"test/{b:04d}/image-{v:02d}.png"
            (tmp_path / image).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / image), np.full((32, 32, 3), (60 * b + 20 * v) % 255, np.uint8))
            items.append({"image_id": f"{b:04d}/image-{v:02d}.png", "image": image,
                          "caption": [f"a building of shade {b}", f"roof number {b} seen from view {v}"]})
    ann = tmp_path / "test.json"
    ann.write_text(json.dumps(items))
    index = tmp_path / "idx"
    config = str(tiny_engine_config_path)
    assert index_main(["--geotext", str(ann), "--config", config, "--out", str(index), "--no-progress"]) == 0

    reports = {}
    for protocol in ("place", "robosense-official"):
        out = tmp_path / f"{protocol}.json"
        extra = ["--protocol", protocol] if protocol != "place" else []   # place is the default
        assert evaluate_main(["--index", str(index), "--geotext", str(ann), "--config", config, "--modes",
                              "coarse,cached", "--json", str(out), "--no-progress", *extra]) == 0
        reports[protocol] = json.loads(out.read_text())
        assert reports[protocol]["n_queries"] == 24
        assert reports[protocol]["settings"]["protocol"] == protocol
        assert f"protocol={protocol}" in capsys.readouterr().out
    for values in reports["robosense-official"]["recall"].values():
        assert 0.0 <= values["R@1"] <= values["R@5"] <= values["R@10"] <= 100.0

    assert evaluate_main(["--index", str(index), "--queries", str(tmp_path / "q.jsonl"), "--protocol",
                          "robosense-official", "--config", config]) == 2
    assert "labels each text by the image it describes" in capsys.readouterr().err


@pytest.mark.parametrize("change", ["reordered", "subset"])
def test_cgrs_eval_official_refuses_a_geotext_json_that_is_not_the_index_gallery(tmp_path, tiny_engine_config_path,
                                                                                 capsys, change):
    """The official numbers depend on the JSON's images and their order (building labels by order,
    the whole JSON gallery ranked): an index of the same images in another order, or of more images
    than the JSON names, would give other, plausible figures, so it is refused."""
    import cv2

    from cgrs_ros.cli.evaluate import main as evaluate_main
    from cgrs_ros.cli.index import main as index_main

    items = []
    for b in range(3):
        for v in range(2):
            image = f"test/{b:04d}/image-{v:02d}.png"
            (tmp_path / image).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / image), np.full((32, 32, 3), (60 * b + 20 * v) % 255, np.uint8))
            items.append({"image_id": f"{b:04d}/image-{v:02d}.png", "image": image, "caption": f"building {b}"})
    (tmp_path / "test.json").write_text(json.dumps(items))
    other = items[::-1] if change == "reordered" else items[:4]
    (tmp_path / "other.json").write_text(json.dumps(other))
    config = str(tiny_engine_config_path)
    assert index_main(["--geotext", str(tmp_path / "test.json"), "--config", config, "--out", str(tmp_path / "idx"),
                       "--no-progress"]) == 0
    capsys.readouterr()
    argv = ["--index", str(tmp_path / "idx"), "--config", config, "--modes", "coarse", "--no-progress",
            "--protocol", "robosense-official"]
    assert evaluate_main(argv + ["--geotext", str(tmp_path / "other.json")]) == 2
    err = capsys.readouterr().err
    expected = ("the same 6 images in another order (row 0: '0002/image-01.png' in the JSON"
                if change == "reordered" else "6 images, the JSON 4; 2 of the index's are not in the JSON")
    assert "ranks the gallery of" in err and expected in err, err
    assert evaluate_main(argv + ["--geotext", str(tmp_path / "test.json")]) == 0     # its own JSON: scored
