"""Local Track 4 scoring: ground-truth files, submission files, and cgrs-score on a real index."""
import json
import re

import cv2
import numpy as np
import pytest

from cgrs_ros.errors import CGRSInputError
from cgrs_ros.formats import read_track4_submission
from cgrs_ros.track4_scoring import read_ground_truth, score_rankings

TRUTH_JSON = {"images": {"image_a1.jpeg": "A", "image_a2": "A", "image_b1": "B", "image_b2.png": "B",
                         "image_c1": "C"},
              "queries": {"q_00001": "A", "q2": "B", "q_00003": "C", "q4": "A"}}
TRUTH_TEXT = """# building of every image and query
image_a1.jpeg A
image_a2\tA
image_b1 B
image_b2.png B
image_c1 C

q_00001 A
q2 B
q_00003\tC
q4 A
"""
# q1 (A): first A at index 1 -> hit at 5, not at 1; q2 (B): index 0 -> hit at 1;
# q3 (C): c1 at index 6 -> hit at 10 only; q4 (A): not ranked -> miss; q9: not in the truth.
SUBMISSION = """q1 image_b1 image_a1 image_c1
q2  image_b2 image_a2
q3 image_a1 image_b1 image_zz image_a2 image_b2 image_a1x image_c1

q9 image_a1
"""
EXPECTED = {1: 25.0, 5: 50.0, 10: 75.0}    # hits at K over the 4 truth queries: 1, 2, 3


@pytest.fixture(params=["json", "text"])
def truth_file(request, tmp_path):
    path = tmp_path / f"truth.{request.param}"
    path.write_text(json.dumps(TRUTH_JSON) if request.param == "json" else TRUTH_TEXT)
    return path


def test_both_ground_truth_forms_read_the_same(truth_file):
    truth = read_ground_truth(truth_file)
    assert truth.images == {"image_a1": "A", "image_a2": "A", "image_b1": "B", "image_b2": "B", "image_c1": "C"}
    assert truth.queries == {"q1": "A", "q2": "B", "q3": "C", "q4": "A"}


def test_submission_scored_by_hand(truth_file, tmp_path, caplog):
    submission = tmp_path / "submission.txt"
    submission.write_text(SUBMISSION)
    rankings = read_track4_submission(submission)
    assert [q for q, _ in rankings] == ["q1", "q2", "q3", "q9"]
    with caplog.at_level("WARNING", logger="cgrs_ros.track4_scoring"):
        recall = score_rankings(rankings, read_ground_truth(truth_file), source=str(submission))
    assert recall == pytest.approx(EXPECTED)
    said = " | ".join(r.getMessage() for r in caplog.records)
    assert "1 queries are not in the ground truth and are not scored (e.g. q9)" in said
    assert "1 of 4 ground-truth queries are not ranked and count as misses (e.g. q4)" in said
    assert "2 ranked image ids are not in the ground truth" in said      # image_zz, image_a1x


@pytest.mark.parametrize("content, message", [
    ('{"images": {"image_a": "A"}}', "expected {\"images\""),
    ('[1, 2]', "got a list"),
    ('{"images": {"image_a": "A"}, "queries": {"x7": "A"}}', "'x7' is not a Track 4 query id"),
    ('{"images": {"image_a": "A"}, "queries": {}}', "needs images and queries, found 1 images and 0"),
    ('{"images": {"image_a": 7}, "queries": {"q1": "A"}}', "expected a non-empty id and building"),
    ("image_a A\nimage_a.jpeg B\nq1 A\n", ":2: image 'image_a.jpeg' is given building 'B' and 'A'"),
    ("image_a A extra\n", ":1: expected '<id> <building>', found 3 fields"),
    ('{"images": ', "not valid JSON"),
])
def test_bad_ground_truth_is_named(tmp_path, content, message):
    path = tmp_path / "truth.txt"
    path.write_text(content)
    with pytest.raises(CGRSInputError) as info:
        read_ground_truth(path)
    assert str(path) in str(info.value) and message in str(info.value)


@pytest.mark.parametrize("content, message", [
    ("q1 image_a\nq_00001 image_b\n", ":2: query 'q1' is ranked again (first on line 1)"),
    ("q1\n", ":1: query 'q1' has no ranked image ids"),
    ("query1 image_a\n", ":1: 'query1' is not a query id"),
    ("\n\n", "holds no rankings"),
])
def test_bad_submission_is_named(tmp_path, content, message):
    path = tmp_path / "submission.txt"
    path.write_text(content)
    with pytest.raises(CGRSInputError) as info:
        read_track4_submission(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_submission_of_another_query_file_is_refused(truth_file):
    with pytest.raises(CGRSInputError, match=re.escape("none of its 1 queries is in the ground truth")):
        score_rankings([("q_00077", ["image_a1"])], read_ground_truth(truth_file))


def test_cgrs_score_an_index_as_its_submission_scores(tmp_path, tiny_engine_config_path, capsys):
    """cgrs-score --index ranks as cgrs-submit does: scoring the index and scoring its submission
    give the same recall (six buildings of two images each, so it depends on the ranking)."""
    from cgrs_ros.cli.index import main as index_main
    from cgrs_ros.cli.score import main as score_main
    from cgrs_ros.cli.submit import main as submit_main

    gallery = tmp_path / "gallery" / "part"          # nested, as the official tool allows
    gallery.mkdir(parents=True)
    for i in range(12):
        cv2.imwrite(str(gallery / f"image_{i:04x}ab.jpeg"), np.full((32, 32, 3), 20 * i, np.uint8))
    queries = tmp_path / "queries.txt"
    queries.write_text("q_00001\ta dark roof\nq2\ta bright square\nq_00003\ta grey field\n")
    truth = tmp_path / "truth.txt"
    truth.write_text("".join(f"image_{i:04x}ab.jpeg b{i % 6}\n" for i in range(12))
                     + "q1 b0\nq2 b5\nq3 b3\n")
    config, index = str(tiny_engine_config_path), str(tmp_path / "idx")
    assert index_main(["--track4", str(tmp_path / "gallery"), "--config", config, "--out", index,
                       "--no-progress"]) == 0
    submission = tmp_path / "submission.txt"
    assert submit_main(["--index", index, "--queries", str(queries), "--out", str(submission),
                        "--config", config, "--no-progress", "--mode", "cached"]) == 0
    scores = {}
    for name, source in (("submission", ["--submission", str(submission)]),
                         ("cached", ["--index", index, "--queries", str(queries), "--modes", "cached",
                                     "--config", config, "--no-progress"])):
        out = tmp_path / f"{name}.json"
        capsys.readouterr()
        assert score_main(["--ground-truth", str(truth), *source, "--json", str(out)]) == 0
        assert "3 ground-truth queries, 12 ground-truth images" in capsys.readouterr().out
        scores[name] = json.loads(out.read_text())["recall"][name]
    assert scores["submission"] == scores["cached"]
    expected = score_rankings(read_track4_submission(submission), read_ground_truth(truth))
    assert scores["cached"] == {f"R@{k}": round(v, 2) for k, v in expected.items()}

    assert score_main(["--ground-truth", str(truth), "--index", index, "--config", config]) == 2
    assert "--index needs --queries" in capsys.readouterr().err
