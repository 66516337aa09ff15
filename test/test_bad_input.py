"""Every bad input to cgrs-index, cgrs-query, cgrs-eval, cgrs-submit and cgrs-score: exit status 2 and one line
naming the file, row or field; and a failed cgrs-index never harms the index already in --out.

The commands run in-process (``main(argv)``, as the console scripts do) on real files and the tiny
real models, so the whole table costs seconds, not a Python start per case.
"""
from __future__ import annotations

import fcntl
import json
import shutil
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cgrs_ros.index import load_index
from tiny_gallery import snapshot

ROW = {"image_id": "a", "path": "images/p00_v0.png", "place_id": "p00", "platform": "drone",
       "lat": 47.0, "lon": 8.0, "alt": 10.0, "heading": 0.0}


def manifest(*lines):
    """A manifest next to the tiny gallery's images (so paths resolve) with these lines."""
    def write(case):
        text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
        (case.gallery / "m.jsonl").write_text(text + "\n", encoding="utf-8")
    return write


def config(change):
    """An engine YAML: the tiny one with ``change(dict)`` applied."""
    def write(case):
        data = yaml.safe_load(case.tiny_config.read_text())
        data["retriever"]["model"] = f"local-dir:{case.tiny_config.parent / 'tiny_clip'}"
        data["captioner"]["model"] = str(case.tiny_config.parent / "tiny_blip")
        change(data)
        (case.tmp / "c.yaml").write_text(yaml.safe_dump(data))
    return write


def index_file(name, content):
    """Replace a file of the index copy (``{data}`` is its data folder); ``content`` maps old bytes to new."""
    def write(case):
        path = case.index / name.format(data=case.data)
        path.write_bytes(content(path.read_bytes()))
    return write


def index_array(name, change):
    def write(case):
        path = case.index / case.data / name
        np.save(path, change(np.load(path)))
    return write


def meta(change):
    def write(case):
        path = case.index / "index.json"
        path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return write


def queries(*lines):
    def write(case):
        (case.tmp / "q.jsonl").write_text("\n".join(json.dumps(q) if isinstance(q, dict) else q for q in lines) + "\n")
    return write


def both(*writers):
    def write(case):
        for writer in writers:
            writer(case)
    return write


def _set(path, value):
    def change(data):
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value
    return change


def _drop(key):
    return lambda data: {k: v for k, v in data.items() if k != key}


def _lock(case):
    case.held = open(case.index / ".lock", "a")
    fcntl.flock(case.held, fcntl.LOCK_EX)


def truth(text):
    def write(case):
        (case.tmp / "truth.txt").write_text(text)
    return write


SCORE = ["score", "--ground-truth", "{tmp}/truth.txt", "--submission", "{tmp}/s.txt"]
INDEX = ["index", "--gallery", "{gallery}/m.jsonl", "--out", "{index}", "--config", "{config}", "--no-progress"]
GOOD = manifest(ROW)
QUERY = ["query", "red roof", "--index", "{index}", "--config", "{config}"]
EVAL = ["evaluate", "--index", "{index}", "--queries", "{tmp}/q.jsonl", "--config", "{config}", "--no-progress"]
C = "{tmp}/c.yaml"
INDEX_C = INDEX[:5] + ["--config", C, "--no-progress"]

CASES = [
    # --- the gallery manifest ---------------------------------------------------------------------
    ("manifest-missing", INDEX, None, "cannot read gallery manifest {gallery}/m.jsonl"),
    ("manifest-not-json", INDEX, manifest("{oops"), "{gallery}/m.jsonl:1: not valid JSON"),
    ("manifest-deeply-nested", INDEX, manifest("[" * 100000 + "]" * 100000), "m.jsonl:1: not valid JSON (nested too deeply)"),
    ("manifest-row-is-list", INDEX, manifest("[1, 2]"), "m.jsonl:1: expected a JSON object, got list"),
    ("manifest-huge-integer", INDEX, manifest(json.dumps(ROW).replace("47.0", "9" * 400)),
     "m.jsonl:1: field 'lat' is an integer too large"),
    ("manifest-lat-missing", INDEX, manifest(_drop("lat")(ROW)), "m.jsonl:1: field 'lat' is missing"),
    ("manifest-lat-text", INDEX, manifest(dict(ROW, lat="47")), "m.jsonl:1: field 'lat' is '47', not a number"),
    ("manifest-nul-in-path", INDEX, manifest(dict(ROW, path="images/a\u0000.png")), "m.jsonl:1: image 'a' has an unusable path"),
    ("manifest-path-leaves", INDEX, manifest(dict(ROW, path="../x.png")), "m.jsonl:1: image 'a' has path '../x.png', which leaves"),
    ("manifest-duplicate-id", INDEX, manifest(ROW, ROW), "m.jsonl:2: duplicate image_id 'a'"),
    ("manifest-bad-platform", INDEX, manifest(dict(ROW, platform="uav")), "m.jsonl:1: field 'platform' is 'uav'"),
    ("manifest-empty", INDEX, manifest(""), "m.jsonl: the gallery is empty"),
    ("manifest-not-utf8", INDEX, lambda case: (case.gallery / "m.jsonl").write_bytes(b"\xff\xfe{}\n"), "m.jsonl is not UTF-8 text"),
    ("no-image-readable", INDEX, manifest(dict(ROW, path="images/nope.png")), "m.jsonl: no gallery image could be read"),
    ("geotext-deeply-nested", ["index", "--geotext", "{tmp}/g.json", "--out", "{index}", "--config", "{config}"],
     lambda case: (case.tmp / "g.json").write_text("[" * 100000), "g.json: not valid JSON (nested too deeply)"),
    # --- the engine config ------------------------------------------------------------------------
    ("config-missing", INDEX[:5] + ["--config", "{tmp}/nope.yaml"], GOOD, "cannot read engine config {tmp}/nope.yaml"),
    ("config-not-yaml", INDEX_C, both(GOOD, lambda case: (case.tmp / "c.yaml").write_text("a: [")),
     "engine config {tmp}/c.yaml is not valid YAML"),
    ("config-unknown-key", INDEX_C, both(GOOD, config(_set("indx", {}))), "unknown keys ['indx']"),
    ("chunk-size-zero", INDEX_C, both(GOOD, config(_set("index.chunk_size", 0))),
     "index.chunk_size must be a positive integer, got 0"),
    ("batch-size-negative", INDEX_C, both(GOOD, config(_set("index.batch_size", -4))),
     "index.batch_size must be a positive integer, got -4"),
    ("chunk-size-fraction", INDEX_C, both(GOOD, config(_set("index.chunk_size", 2.5))),
     "index.chunk_size must be a positive integer, got 2.5"),
    ("chunk-size-text", INDEX_C, both(GOOD, config(_set("index.chunk_size", "8"))),
     "index.chunk_size must be a positive integer, got '8'"),
    ("max-image-side-zero", INDEX_C, both(GOOD, config(_set("index.max_image_side", 0))),
     "index.max_image_side must be a positive integer"),
    ("rectify-unknown", INDEX_C, both(GOOD, config(_set("index.rectify", "sideways"))),
     "index.rectify 'sideways'"),
    ("max-new-tokens-negative", INDEX_C, both(GOOD, config(_set("captioner.max_new_tokens", -1))),
     "c.yaml: captioner.max_new_tokens must be a positive integer, got -1"),
    ("captioner-folder-missing", INDEX_C, both(GOOD, config(_set("captioner.model", "missing_blip"))),
     "c.yaml: cannot load captioner 'missing_blip'"),
    ("text-model-missing", INDEX_C, both(GOOD, config(_set("text_similarity.model", "no/such-model"))),
     "c.yaml: cannot load text_similarity 'no/such-model'"),
    ("retriever-unknown", INDEX_C, both(GOOD, config(_set("retriever.name", "clip9"))),
     "unknown retriever 'clip9'"),
    pytest.param("device-cuda-without-cuda", INDEX + ["--device", "cuda"], GOOD, "'cuda' was asked for but CUDA is not available",
                 id="device-cuda-without-cuda", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    # --- the output folder --------------------------------------------------------------------------
    ("out-is-a-file", INDEX[:3] + ["--out", "{tmp}/file"] + INDEX[5:],
     both(GOOD, lambda case: (case.tmp / "file").write_text("x")), "index folder {tmp}/file is a file, not a folder"),
    ("out-under-a-file", INDEX[:3] + ["--out", "{tmp}/file/idx"] + INDEX[5:],
     both(GOOD, lambda case: (case.tmp / "file").write_text("x")), "cannot write the index folder {tmp}/file/idx"),
    ("out-holds-other-files", INDEX[:3] + ["--out", "{gallery}"] + INDEX[5:], GOOD,
     "index folder {gallery} holds other files and no cgrs index"),
    ("out-locked", INDEX, both(GOOD, _lock), "index folder {index} is being built by another process"),
    # --- the index a query opens ------------------------------------------------------------------
    ("query-empty", ["query", "  ", "--index", "{index}", "--config", "{config}"], None, "the query text is empty"),
    ("index-missing", QUERY[:3] + ["{tmp}"] + QUERY[4:], None, "{tmp} is not a cgrs index: index.json is missing"),
    ("index-json-list", QUERY, index_file("index.json", lambda old: b"[1]"), "index.json is corrupt: expected a JSON object, got list"),
    ("index-json-no-count", QUERY, meta(_drop("count")), "index.json is corrupt: field 'count' is missing"),
    ("index-json-count-text", QUERY, meta(lambda m: dict(m, count="18")), "index.json is corrupt: field 'count'"),
    ("index-json-not-json", QUERY, index_file("index.json", lambda old: old[:40]), "{index}/index.json: not valid JSON"),
    ("index-json-deeply-nested", QUERY, index_file("index.json", lambda old: b"[" * 100000), "index.json: not valid JSON (nested"),
    ("index-format-1", QUERY, meta(lambda m: dict(m, format=1)), "index.json: index format 1, this version reads 3 and 4"),
    ("index-data-escapes", QUERY, meta(lambda m: dict(m, data="../x")), "index.json is corrupt: field 'data' is '../x'"),
    ("index-data-missing", QUERY, lambda case: shutil.rmtree(case.index / case.data), "is missing; rebuild the index with cgrs-index"),
    ("npy-zero-bytes", QUERY, index_file("{data}/image_embeddings.npy", lambda old: b""), "image_embeddings.npy is corrupt"),
    ("npy-garbage", QUERY, index_file("{data}/caption_embeddings.npy", lambda old: b"garbage"),
     "caption_embeddings.npy is corrupt"),
    ("npy-truncated", QUERY, index_file("{data}/image_embeddings.npy", lambda old: old[:-64]),
     "image_embeddings.npy is corrupt"),
    ("npy-wrong-shape", QUERY, index_array("image_embeddings.npy", lambda a: a[:3]),
     "image_embeddings.npy has shape (3, 16) (float16), expected (18, 16)"),
    ("npy-float64", QUERY, index_array("image_embeddings.npy", lambda a: a.astype(np.float64)), "expected (18, 16) (float16)"),
    ("npy-all-nan", QUERY, index_array("image_embeddings.npy", lambda a: np.full_like(a, np.nan)),
     "image_embeddings.npy is corrupt: row 0 holds NaN or infinite values"),
    ("npy-zeros", QUERY, index_array("caption_embeddings.npy", np.zeros_like), "caption_embeddings.npy is corrupt: row 0 has norm 0"),
    ("npy-rows-swapped", QUERY, index_array("image_embeddings.npy", lambda a: a[::-1]),
     "image_embeddings.npy does not match the checksum in index.json"),
    ("details-byte-flipped", QUERY, index_file("{data}/details.z", lambda old: old[:30] + bytes([old[30] ^ 1]) + old[31:]),
     "details.z is corrupt at block 0 (checksum mismatch)"),
    ("captions-truncated", QUERY, index_file("{data}/captions.utf8", lambda old: old[:-1]),
     "captions.utf8 is truncated or padded: "),
    ("captions-byte-flipped", QUERY, index_file("{data}/captions.utf8", lambda old: old[:5] + bytes([old[5] ^ 1]) + old[6:]),
     "captions.utf8 is corrupt at block 0 (checksum mismatch"),
    ("place-codes-swapped", QUERY, index_array("place_codes.npy", lambda a: a[::-1]),
     "place_codes.npy does not match the checksum in index.json"),
    ("geo-one-column", QUERY, index_array("geo.npy", lambda a: a[:, :1]), "geo.npy has shape (18, 1) (float64), expected (18, 4)"),
    ("places-list-edited", QUERY, index_file("{data}/places.json", lambda old: old.replace(b"p00", b"p99")),
     "places.json does not match the checksum"),
    ("skipped-corrupt", QUERY, index_file("{data}/skipped.json", lambda old: b"[{"), "skipped.json does not match the checksum"),
    ("index-of-other-models", QUERY[:-1] + [C], config(_set("captioner.max_new_tokens", 9)),
     "was built with other models than the config {tmp}/c.yaml asks for; rebuild it with cgrs-index"),
    ("weights-path-missing", QUERY[:-1] + [C], config(_set("retriever.model", "local-dir:/nonexistent/tiny_clip")),
     "c.yaml: retriever.model is 'local-dir:/nonexistent/tiny_clip', which does not exist"),
    ("fusion-weight-out-of-range", QUERY + ["--fusion-weight", "2"], None, "fusion_weight must be a number in [0, 1]"),
    # --- evaluation and submission ------------------------------------------------------------------
    ("queries-missing", EVAL, None, "cannot read query file {tmp}/q.jsonl"),
    ("queries-deeply-nested", EVAL, queries("[" * 100000), "q.jsonl:1: not valid JSON (nested too deeply)"),
    ("queries-duplicate-id", EVAL, queries({"query_id": "q", "text": "a"}, {"query_id": "q", "text": "b"}),
     "q.jsonl:2: duplicate query_id 'q'"),
    ("queries-of-another-gallery", EVAL, queries({"query_id": "q1", "text": "red roof", "place_id": "x07"},
                                                 {"query_id": "q2", "text": "a road", "place_id": "x08"}),
     "q.jsonl: none of the 2 queries names a place of the index"),
    ("queries-without-places", EVAL, queries({"query_id": "q1", "text": "red roof"}), "none of the queries has a place_id"),
    ("modes-empty", EVAL + ["--modes", ","], queries({"query_id": "q1", "text": "red roof", "place_id": "p00"}),
     "--modes ',': give a comma list of coarse, cached, online"),
    ("modes-unknown", EVAL + ["--modes", "coarse,fast"], queries({"query_id": "q1", "text": "red roof", "place_id": "p00"}),
     "--modes 'coarse,fast'"),
    ("submit-queries-missing", ["submit", "--index", "{index}", "--queries", "{tmp}/q.txt", "--config", "{config}"], None,
     "cannot read Track 4 query file {tmp}/q.txt"),
    ("submit-query-line", ["submit", "--index", "{index}", "--queries", "{tmp}/q.txt", "--config", "{config}"],
     lambda case: (case.tmp / "q.txt").write_text("q_1 no tab\n"), "q.txt:1: expected 'q_<digits><TAB><text>'"),
    ("submit-out-is-a-folder", ["submit", "--index", "{index}", "--queries", "{tmp}/q.txt", "--out", "{tmp}",
                                "--config", "{config}", "--no-progress"],
     lambda case: (case.tmp / "q.txt").write_text("q_1\tred roof\n"), "Is a directory"),
    ("eval-official-protocol-needs-geotext", EVAL + ["--protocol", "robosense-official"],
     queries({"query_id": "q1", "text": "red roof", "place_id": "p00"}), "labels each text by the image it describes"),
    # --- local Track 4 scoring ----------------------------------------------------------------------
    ("score-truth-missing", SCORE, None, "cannot read ground truth {tmp}/truth.txt"),
    ("score-truth-line", SCORE, truth("image_a p1 extra\n"), "truth.txt:1: expected '<id> <building>', found 3 fields"),
    ("score-truth-no-queries", SCORE, truth("image_a p1\n"), "truth.txt: needs images and queries"),
    ("score-submission-missing", SCORE, truth("image_a p1\nq1 p1\n"), "cannot read submission {tmp}/s.txt"),
    ("score-submission-line", SCORE, both(truth("image_a p1\nq1 p1\n"),
                                          lambda case: (case.tmp / "s.txt").write_text("q1\n")),
     "s.txt:1: query 'q1' has no ranked image ids"),
    ("score-submission-of-other-queries", SCORE, both(truth("image_a p1\nq1 p1\n"),
                                                      lambda case: (case.tmp / "s.txt").write_text("q7 image_a\n")),
     "none of its 1 queries is in the ground truth"),
]


class Case:
    """The folders a case works in: a copy of the good index, the tiny gallery, a scratch folder."""

    def __init__(self, tmp: Path, tiny_config: Path, index: Path, gallery: Path):
        self.tmp, self.tiny_config, self.gallery = tmp, tiny_config, gallery
        self.index = tmp / "index"
        shutil.copytree(index, self.index)
        self.data = json.loads((self.index / "index.json").read_text())["data"]
        self.held = None


@pytest.fixture(scope="module")
def good_index(tiny_engine_files):
    config_path, index_dir = tiny_engine_files
    return config_path, index_dir, snapshot(load_index(index_dir))


@pytest.mark.parametrize("name, argv, prepare, expected",
                         [c if hasattr(c, "marks") else pytest.param(*c, id=c[0]) for c in CASES])
def test_bad_input_gets_one_line_and_status_2(name, argv, prepare, expected, tmp_path, tiny_gallery, good_index, capsys):
    config_path, index_dir, before = good_index
    gallery = tmp_path / "g"
    shutil.copytree(tiny_gallery.parent, gallery)
    case = Case(tmp_path, config_path, index_dir, gallery)
    if prepare is not None:
        prepare(case)
    values = {"index": case.index, "tmp": tmp_path, "config": config_path, "gallery": gallery}
    command, *args = [a.format(**values) for a in argv]
    capsys.readouterr()
    try:
        status = import_module(f"cgrs_ros.cli.{command}").main(args)
    finally:
        if case.held:
            case.held.close()
    err = capsys.readouterr().err
    # progress bars of model loading are not messages; everything else is the one error line
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line]
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"cgrs-{command if command != 'evaluate' else 'eval'}: error: "), err
    assert expected.format(**values) in lines[0]
    if command == "index":  # a failed build never harms the index already there
        assert snapshot(load_index(case.index)) == before
