"""Every kind of hostile input, generated for every tool that reads it: exit status 2 and one line.

Where test_bad_input.py lists hand-made cases, this test makes each *kind* of bad input (integers
of more than 4,300 digits, lone surrogates and names that are not UTF-8, 400-digit box values, YAML
nested 50,000 deep or not UTF-8, a garbage ``.safetensors`` or pickled ``.pt`` checkpoint, a row of
``image_ids.npy`` that is not UTF-8, a crafted coarse-search file whose sha256 was updated in
``index.json``) and feeds it to each of cgrs-index, cgrs-query, cgrs-eval, cgrs-submit and
cgrs-score that reads that input: each must end in one line naming what is wrong (never a
traceback, never an exception escaping ``main``).  The commands run in-process on one tiny index.
"""
from __future__ import annotations

import json
import shutil
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import yaml

from cgrs_ros.config import load_engine_config

HUGE = "9" * 5000               # past Python's 4,300-digit limit of int(str)
LONG = "9" * 400                # past a float
ROW = {"image_id": "a", "path": "images/p00_v0.png", "place_id": "p00", "platform": "drone",
       "lat": 47.0, "lon": 8.0, "alt": 10.0, "heading": 0.0}
GEOTEXT = {"image_id": "0001/a.png", "image": "images/p00_v0.png", "caption": "a red roof",
           "sentences": ["a red roof"], "bboxes": [[0.5, 0.5, 0.2, 0.2]]}


def _json_with(obj, marker: str, raw: str) -> str:
    """``obj`` as JSON with the string value ``marker`` replaced by ``raw`` (a number, an escape)."""
    return json.dumps(obj).replace(json.dumps(marker), raw)


# --- what each tool is given ----------------------------------------------------------------------

def index_cmd(source="--gallery", file="{tmp}/m.jsonl", config="{config}"):
    return ["index", source, file, "--out", "{tmp}/new", "--config", config, "--no-progress"]


QUERY = ["query", "red roof", "--index", "{index}", "--config", "{config}", "--images"]
EVAL = ["evaluate", "--index", "{index}", "--queries", "{tmp}/q.jsonl", "--config", "{config}", "--no-progress"]
EVAL_GEOTEXT = ["evaluate", "--index", "{index}", "--geotext", "{tmp}/g.json", "--image-root", "{gallery}",
                "--config", "{config}", "--no-progress"]
SUBMIT = ["submit", "--index", "{index}", "--queries", "{tmp}/q.txt", "--out", "{tmp}/s.txt", "--config",
          "{config}", "--no-progress"]
SCORE = ["score", "--ground-truth", "{tmp}/truth", "--submission", "{tmp}/s.txt"]
READERS_OF_THE_INDEX = (QUERY, EVAL, SUBMIT)


def write(name, text):
    def prepare(case):
        path = case.tmp / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return prepare


def good_inputs(case):
    write("q.jsonl", json.dumps({"query_id": "q1", "text": "red roof", "place_id": "p00"}) + "\n")(case)
    write("q.txt", "q_00001\tred roof\n")(case)
    write("s.txt", "q1 " + " ".join(f"p{p:02d}_v0" for p in range(6)) + "\n")(case)
    write("truth", "p00_v0 p00\nq_00001 p00\n")(case)


def config_yaml(change):
    def prepare(case):
        data = yaml.safe_load(case.config.read_text())
        change(data, case)
        case.tmp.joinpath("c.yaml").write_text(yaml.safe_dump(data))
    return prepare


def index_meta(change):
    def prepare(case):
        path = case.index / "index.json"
        path.write_text(change(path.read_text()))
    return prepare


def retriever_weights(write_file):
    """The tiny retriever's folder copied, its weight file replaced by ``write_file(path)``."""
    def change(data, case):
        folder = case.tmp / "clip"
        shutil.copytree(case.config.parent / "tiny_clip", folder)
        write_file(folder / "open_clip_model.safetensors", folder)
        data["retriever"]["model"] = f"local-dir:{folder}"
        data["captioner"]["model"] = str(case.config.parent / "tiny_blip")
    return config_yaml(change)


def pickled_checkpoint(path, folder):
    """A torch file pickling an object that is not a tensor (torch's weights-only loader refuses it)."""
    import argparse

    import torch

    torch.save({"state_dict": argparse.Namespace(weights=[1, 2, 3])}, folder / "x.pt")


def bad_id_row(case):
    """Every row of image_ids.npy not UTF-8 (so every id shown is one), its sampled checksum updated
    in index.json."""
    from cgrs_ros.index import _array_digest

    path = case.index / case.data / "image_ids.npy"
    ids = np.load(path)
    ids[:] = [b"\xff\xfe%d" % row for row in range(len(ids))]
    np.save(path, ids)
    meta = json.loads((case.index / "index.json").read_text())
    meta["checksums"]["image_ids.npy"] = _array_digest(ids)
    (case.index / "index.json").write_text(json.dumps(meta))


def crafted_search(content):
    """The faiss file of the HNSW index replaced by ``content(old bytes)``, its sha256 updated."""
    def prepare(case):
        import hashlib

        shutil.rmtree(case.index)
        shutil.copytree(case.hnsw_index, case.index)
        meta = json.loads((case.index / "index.json").read_text())
        path = case.index / meta["data"] / "search-hnsw.faiss"
        path.write_bytes(content(path.read_bytes()))
        meta["checksums"]["search-hnsw.faiss"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (case.index / "index.json").write_text(json.dumps(meta))
    return prepare


def _faiss_bytes(make):
    import faiss

    return faiss.serialize_index(make(faiss)).tobytes()


def _both(*prepares):
    def prepare(case):
        for p in prepares:
            p(case)
    return prepare


# --- the kinds, each for every tool that reads it -----------------------------------------------

def cases():
    yield "huge-int-manifest", index_cmd(), write("m.jsonl", _json_with(dict(ROW, lat="N"), "N", HUGE)), "m.jsonl:1"
    yield ("huge-int-geotext", index_cmd("--geotext", "{tmp}/g.json"),
           write("g.json", "[" + _json_with(dict(GEOTEXT, extra="N"), "N", HUGE) + "]"), "g.json")
    yield ("huge-int-geotext-eval", EVAL_GEOTEXT,
           write("g.json", "[" + _json_with(dict(GEOTEXT, extra="N"), "N", HUGE) + "]"), "g.json")
    yield ("huge-int-queries", EVAL, write("q.jsonl", _json_with({"query_id": "q", "text": "a", "n": "N"}, "N", HUGE)),
           "q.jsonl:1")
    for argv in READERS_OF_THE_INDEX:
        yield (f"huge-int-index-json-{argv[0]}", argv,
               index_meta(lambda text: text.replace('"count": 18', f'"count": {HUGE}')), "index.json")
    yield "huge-int-truth-json", SCORE, write("truth", '{"images": {"a": ' + HUGE + '}, "queries": {}}'), "truth"
    yield "huge-int-yaml", index_cmd(config="{tmp}/c.yaml"), _both(write("m.jsonl", json.dumps(ROW)), write(
        "c.yaml", f"index: {{batch_size: {HUGE}}}\n")), "c.yaml"
    yield "huge-int-yaml-query", QUERY[:-2] + ["{tmp}/c.yaml"], write("c.yaml", f"threads: {HUGE}\n"), "c.yaml"
    yield "huge-int-track4-query-id", SUBMIT, write("q.txt", f"q_{HUGE}\tred roof\n"), "q.txt:1"
    yield "huge-int-track4-submission", SCORE, write("s.txt", f"q{HUGE} p00_v0\n"), "s.txt:1"
    yield "huge-int-track4-truth", SCORE, write("truth", f"p00_v0 p00\nq_{HUGE} p00\n"), "truth"
    # lone surrogates (JSON escapes) and names that are not UTF-8
    for field in ("image_id", "path", "place_id", "roof"):
        yield (f"surrogate-manifest-{field}", index_cmd(), write("m.jsonl", _json_with(dict(ROW, **{field: "S"}), "S",
                                                                                   '"a\\ud800"')), "m.jsonl:1")
    yield ("surrogate-geotext", index_cmd("--geotext", "{tmp}/g.json"),
           write("g.json", "[" + _json_with(dict(GEOTEXT, caption="S"), "S", '"a \\udfff"') + "]"), "g.json")
    yield ("surrogate-queries", EVAL, write("q.jsonl", _json_with({"query_id": "S", "text": "a", "place_id": "p00"},
                                                                  "S", '"\\ud800"')), "q.jsonl:1")
    yield ("surrogate-truth-json", SCORE, write("truth", '{"images": {"\\ud800": "p"}, "queries": {"q1": "p"}}'),
           "truth")
    yield "surrogate-query-argument", ["query", "red \udcff roof"] + QUERY[2:], None, "not valid UTF-8"
    yield ("non-utf8-track4-name", ["index", "--track4", "{tmp}/t4", "--out", "{tmp}/new", "--config", "{config}",
                                    "--no-progress"], track4_with_bad_name, "t4")
    yield "non-utf8-query-file", SUBMIT, write("q.txt", b"q_00001\tred \xff roof\n"), "q.txt"
    # a box value too large for a float
    yield ("long-int-bbox", index_cmd("--geotext", "{tmp}/g.json"),
           write("g.json", "[" + _json_with(dict(GEOTEXT, bboxes=[["B", 0.5, 0.2, 0.2]]), '"B"', LONG)
                 .replace('["' + LONG, "[" + LONG) + "]"), "bboxes")
    yield ("long-int-bbox-eval", EVAL_GEOTEXT,
           write("g.json", "[" + json.dumps(dict(GEOTEXT, bboxes=[[0.5, 0.5, 0.2, 0.2]])).replace("0.2]", LONG + "]")
                 + "]"), "bboxes")
    # YAML
    for argv in (index_cmd(config="{tmp}/c.yaml"), QUERY[:-2] + ["{tmp}/c.yaml"]):
        yield (f"yaml-nested-deep-{argv[0]}", argv, _both(write("m.jsonl", json.dumps(ROW)),
                                                         write("c.yaml", "index: " + "[" * 50000 + "]" * 50000)), "c.yaml")
        yield (f"yaml-not-utf8-{argv[0]}", argv, _both(write("m.jsonl", json.dumps(ROW)),
                                                      write("c.yaml", b"device: \xff\xfe cpu\n")), "c.yaml")
    # checkpoints
    c_yaml = index_cmd(config="{tmp}/c.yaml")
    yield ("garbage-safetensors", c_yaml, _both(write("m.jsonl", json.dumps(ROW)), retriever_weights(
        lambda path, folder: path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage header}" + b"\0" * 64))),
        "is not a readable safetensors or weights-only torch file")
    yield ("pickled-pt-checkpoint", c_yaml, _both(write("m.jsonl", json.dumps(ROW)), retriever_weights(
        pickled_checkpoint), config_yaml(lambda data, case: data["retriever"].update(
            checkpoint=str(case.tmp / "clip" / "x.pt"), model=f"local-dir:{case.config.parent / 'tiny_clip'}"))),
        "x.pt")
    # an image id row that is not UTF-8 (checksum updated: the sampled check passes)
    for argv in (QUERY, SUBMIT):   # the commands that show ids (a rebuild reuses nothing of such an index)
        yield f"non-utf8-image-id-{argv[0]}", argv, bad_id_row, "image_ids.npy"
    # crafted coarse-search files, their sha256 updated in index.json
    crafted = {"garbage": lambda old: b"\x00garbage" * 40, "truncated": lambda old: old[:len(old) // 2],
               "flat-index": lambda old: _faiss_bytes(lambda faiss: faiss.IndexFlatIP(16)),
               "other-dim": lambda old: _faiss_bytes(lambda faiss: faiss.IndexHNSWFlat(8, 4, faiss.METRIC_INNER_PRODUCT))}
    for name, content in crafted.items():
        for argv in (QUERY, EVAL, SUBMIT):
            yield (f"crafted-faiss-{name}-{argv[0]}", [a if a != "{config}" else "{hnsw}" for a in argv],
                   crafted_search(content), "search-hnsw.faiss")


def track4_with_bad_name(case):
    folder = case.tmp / "t4"
    folder.mkdir()
    source = (case.gallery / "images" / "p00_v0.png").read_bytes()
    (folder / "image_00.png").write_bytes(source)
    with open(str(folder).encode() + b"/image_\xff.png", "wb") as handle:
        handle.write(source)


CASES = list(cases())


class Case:
    def __init__(self, tmp, config, index, hnsw_index, gallery):
        self.tmp, self.config, self.hnsw_index, self.gallery = tmp, config, hnsw_index, gallery
        self.index = tmp / "index"
        shutil.copytree(index, self.index)
        self.data = json.loads((self.index / "index.json").read_text())["data"]


@pytest.fixture(scope="module")
def indexes(tiny_engine_files, tmp_path_factory):
    """(config path, the tiny index, the same index built for HNSW search, its config)."""
    from cgrs_ros.gallery import read_manifest
    from cgrs_ros.index import build_index, load_index

    config_path, index_dir = tiny_engine_files
    folder = tmp_path_factory.mktemp("hnsw")
    hnsw_config = config_path.parent / "hnsw.yaml"
    data = yaml.safe_load(config_path.read_text())
    data.setdefault("index", {})["search"] = {"name": "faiss_hnsw"}
    hnsw_config.write_text(yaml.safe_dump(data))
    shutil.copytree(index_dir, folder / "idx")
    gallery = read_manifest(Path(load_index(index_dir).meta["gallery_source"]))
    assert build_index(gallery, load_engine_config(hnsw_config), folder / "idx", progress=False)["encoded"] == 0
    return config_path, index_dir, folder / "idx", hnsw_config


@pytest.mark.parametrize("name, argv, prepare, expected", CASES, ids=[c[0] for c in CASES])
def test_each_kind_of_bad_input_gets_one_line_and_status_2(name, argv, prepare, expected, indexes, tiny_gallery,
                                                          tmp_path, capsys):
    config_path, index_dir, hnsw_index, hnsw_config = indexes
    case = Case(tmp_path, config_path, index_dir, hnsw_index, tiny_gallery.parent)
    shutil.copytree(tiny_gallery.parent / "images", tmp_path / "images")     # what m.jsonl and g.json name
    good_inputs(case)
    if prepare is not None:
        prepare(case)
    values = {"index": case.index, "tmp": tmp_path, "config": config_path, "gallery": tiny_gallery.parent,
              "hnsw": hnsw_config}
    command, *args = [a.format(**values) for a in argv]
    capsys.readouterr()
    status = import_module(f"cgrs_ros.cli.{command}").main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line]
    prog = f"cgrs-{command if command != 'evaluate' else 'eval'}"
    assert status == 2 and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err and expected.format(**values) in lines[0], lines[0]
