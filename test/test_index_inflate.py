"""Every zlib stream of an index is inflated bounded by the size index.json records for it.

A crafted block (a few kilobytes that inflate to many megabytes) in ``details.z`` or
``sources.json.zlib``, with its checksums updated so that only its size gives it away, is refused
(or, for the sources a rebuild reads, not reused) without being inflated whole.
"""
import hashlib
import io
import json
import shutil
import zlib

import numpy as np
import pytest

from cgrs_ros.columns import inflate
from cgrs_ros.config import load_engine_config
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import read_manifest
from cgrs_ros.index import build_index, load_index

BIG = 4 << 20       # each crafted text: 4 MiB of one letter (compresses to ~4 KiB)


def _copy(tiny_engine_files, tmp_path):
    out = tmp_path / "idx"
    shutil.copytree(tiny_engine_files[1], out)
    return out, json.loads((out / "index.json").read_text())


def _save_meta(out, meta):
    (out / "index.json").write_text(json.dumps(meta))


def test_inflate_refuses_a_stream_past_its_limit_and_keeps_one_within_it():
    data = zlib.compress(b"a" * 10_000)
    assert inflate(data, 10_000, "x") == b"a" * 10_000
    with pytest.raises(CGRSInputError, match="inflates to more than the 9999 bytes"):
        inflate(data, 9_999, "x")
    with pytest.raises(CGRSInputError, match="truncated"):
        inflate(data[:-3], 10_000, "x")


def test_a_crafted_details_block_is_refused(tiny_engine_files, tmp_path):
    out, meta = _copy(tiny_engine_files, tmp_path)
    data = out / meta["data"]
    table = np.load(data / "details.blocks.npy")
    blob = (data / "details.z").read_bytes()
    rows = meta["text_block_rows"]["details"]
    crafted = zlib.compress(json.dumps(["a" * BIG] * rows).encode(), 9)      # valid JSON, the right row count
    blocks = [crafted] + [blob[int(table[n - 1, 0]):int(table[n, 0])] for n in range(1, len(table))]
    (data / "details.z").write_bytes(b"".join(blocks))
    new_table = np.array([(end, zlib.crc32(block)) for end, block in zip(np.cumsum([len(b) for b in blocks]), blocks)],
                         dtype=np.int64)
    buffer = io.BytesIO()
    np.save(buffer, new_table, allow_pickle=False)
    (data / "details.blocks.npy").write_bytes(buffer.getvalue())
    meta["checksums"]["details.blocks.npy"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    _save_meta(out, meta)
    with pytest.raises(CGRSInputError, match=r"details.z block 0 is corrupt: it inflates to more than the \d+ bytes"):
        list(load_index(out).records)


def test_crafted_sources_are_not_reused(tiny_engine_files, tiny_gallery, tmp_path):
    out, meta = _copy(tiny_engine_files, tmp_path)
    data = out / meta["data"]
    sources = json.loads(zlib.decompress((data / "sources.json.zlib").read_bytes()))
    crafted = zlib.compress((json.dumps(sources) + " " * BIG).encode(), 9)     # still valid JSON
    (data / "sources.json.zlib").write_bytes(crafted)
    meta["checksums"]["sources.json.zlib"] = hashlib.sha256(crafted).hexdigest()
    _save_meta(out, meta)
    rows = tiny_gallery.read_text().splitlines()
    edited = tiny_gallery.parent / "one_fewer.jsonl"
    edited.write_text("\n".join(rows[:-1]) + "\n")
    try:
        built = build_index(read_manifest(edited), load_engine_config(tiny_engine_files[0]), out, progress=False)
    finally:
        edited.unlink()
    assert built["encoded"] == len(rows) - 1        # nothing taken from sources that inflate past their size


def test_an_index_that_records_no_sizes_still_loads(tiny_engine_files, tmp_path):
    """Indexes built before the sizes were recorded are bounded by 64 times each stream's size."""
    out, meta = _copy(tiny_engine_files, tmp_path)
    del meta["inflated"]
    _save_meta(out, meta)
    index = load_index(out)
    assert len(list(index.records)) == meta["count"] and index.inflated("sources.json.zlib")
