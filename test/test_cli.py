"""The commands end to end (index -> query -> eval) as a user runs them, and their bad-input exits."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cgrs_ros.queries import Query, write_queries

ENV = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def cli(module, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", f"cgrs_ros.cli.{module}", *map(str, args)],
                          env=ENV, capture_output=True, text=True, timeout=timeout)


def test_index_query_eval(tmp_path, tiny_gallery, tiny_engine_config_path):
    out = tmp_path / "idx"
    built = cli("index", "--gallery", tiny_gallery, "--config", tiny_engine_config_path, "--out", out, "--no-progress")
    assert built.returncode == 0, built.stderr
    assert "indexed 18 images of 18" in built.stdout

    sheet = tmp_path / "sheet.png"
    query = cli("query", "a red roof next to a road", "--index", out, "--config", tiny_engine_config_path,
                "--sheet", sheet, "--max-results", "3", "--images")
    assert query.returncode == 0, query.stderr
    rows = [line for line in query.stdout.splitlines() if line[:4].strip().isdigit()]
    assert len(rows) == 3 and rows[0].split()[0] == "1"
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] > 100 and image.shape[1] >= 3 * 160

    places = cli("query", "a red roof", "--index", out, "--config", tiny_engine_config_path, "--top-k", "9")
    rows = [line.split() for line in places.stdout.splitlines() if line[:4].strip().isdigit()]
    assert len(rows) >= 2 and len({r[1] for r in rows}) == len(rows)          # distinct places
    assert all(r[2] == "3" for r in rows)                                      # each with its 3 views

    as_json = cli("query", "a red roof", "--index", out, "--config", tiny_engine_config_path, "--json")
    payload = json.loads(as_json.stdout)
    assert payload["reranked"] and len(payload["matches"]) == 5
    assert {"lat", "lon", "alt", "heading", "place_id", "caption", "score"} <= set(payload["matches"][0])
    assert payload["places"][0]["n_views"] == 3 and payload["places"][0]["best"]["image_id"] in payload["places"][0]["views"]

    queries = write_queries([Query("q1", "red roof", "p00"), Query("q2", "blue roof", "p01"),
                             Query("q3", "unknown place", None)], tmp_path / "queries.jsonl")
    report_path = tmp_path / "report.json"
    evaluated = cli("evaluate", "--index", out, "--config", tiny_engine_config_path, "--queries", queries,
                    "--modes", "coarse,cached,online", "--json", report_path, "--no-progress")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(report_path.read_text())
    assert report["n_queries"] == 2  # the query without a place is not scored
    assert set(report["recall"]) == {"coarse", "cached", "online"}
    for values in report["recall"].values():
        assert values["R@1"] <= values["R@5"] <= values["R@10"]
        assert set(values.values()) <= {0.0, 50.0, 100.0}  # two scored queries
    assert "CGRS-cached" in evaluated.stdout


@pytest.mark.parametrize("args, message", [
    (["query", "   ", "--index", "{index}"], "the query text is empty"),
    (["query", "red roof", "--index", "{tmp}"], "is not a cgrs index: index.json is missing"),
    (["query", "red roof", "--index", "{index}", "--fusion-weight", "2"], "fusion_weight must be a number in [0, 1]"),
    (["index", "--gallery", "{tmp}/nope.jsonl", "--out", "{tmp}/o"], "cannot read gallery manifest"),
    (["evaluate", "--index", "{index}", "--queries", "{tmp}/nope.jsonl"], "cannot read query file"),
])
def test_bad_input_exits_2_with_one_clear_line(tmp_path, tiny_engine_files, args, message):
    config_path, index_dir = tiny_engine_files
    args = [a.format(index=index_dir, tmp=tmp_path) for a in args]
    done = cli(args[0], *args[1:], "--config", config_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_empty_gallery_writes_nothing(tmp_path, tiny_engine_config_path):
    (tmp_path / "manifest.jsonl").write_text("\n")
    done = cli("index", "--gallery", tmp_path / "manifest.jsonl", "--config", tiny_engine_config_path,
               "--out", tmp_path / "idx")
    assert done.returncode == 2 and "the gallery is empty" in done.stderr
    assert not (tmp_path / "idx").exists()


def test_track4_index_and_submission(tmp_path, tiny_engine_config_path):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for i in range(12):
        image = np.full((32, 32, 3), 20 * i, np.uint8)
        cv2.imwrite(str(gallery / f"image_{i:04x}ab.jpeg"), image)
    queries = tmp_path / "queries.txt"
    queries.write_text("q_00001\ta dark roof\nq_00002\ta bright square\n")
    out = tmp_path / "idx"
    assert cli("index", "--track4", gallery, "--config", tiny_engine_config_path, "--out", out,
               "--no-progress").returncode == 0
    submission = tmp_path / "submission.txt"
    done = cli("submit", "--index", out, "--queries", queries, "--out", submission,
               "--config", tiny_engine_config_path, "--no-progress")
    assert done.returncode == 0, done.stderr
    lines = submission.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["q1", "q2"]
    for line in lines:
        ids = line.split()[1:]
        assert len(ids) == 10 and len(set(ids)) == 10
        assert all(i.startswith("image_") and not i.endswith(".jpeg") for i in ids)
