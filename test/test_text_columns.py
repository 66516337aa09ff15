"""Text columns on disk: uncompressed captions (format 4) read like a list, every corrupt byte or
row offset refused with the file and block named, and a format-3 index (captions in zlib blocks)
still loaded, and rewritten as format 4 by a rebuild that captions nothing."""
import hashlib
import io
import json
import shutil

import numpy as np
import pytest

from cgrs_ros.columns import BlockTexts, RawTexts, encode_raw_texts, encode_text_blocks, raw_block_crc
from cgrs_ros.config import load_engine_config
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.gallery import GalleryRecord, read_manifest
from cgrs_ros.index import GalleryIndex, _sample_rows, build_index, load_index, write_index

TEXTS = ["a red roof", "", "Dach rot, Straße nördlich ✓", "屋根", "", "x" * 300, "emoji 🛰", "last"] * 5  # 40


def _raw(folder, texts, rows_per_block):
    blob, ends, table = encode_raw_texts(texts, rows_per_block)
    (folder / "t.utf8").write_bytes(blob)
    return RawTexts(folder / "t.utf8", ends, table, rows_per_block)


def _blocks(folder, texts, rows_per_block):
    blob, table, _ = encode_text_blocks(texts, rows_per_block)
    (folder / "t.z").write_bytes(blob)
    return BlockTexts(folder / "t.z", table, len(texts), rows_per_block)


@pytest.mark.parametrize("layout", [_raw, _blocks])
@pytest.mark.parametrize("rows_per_block", [1, 3, 64])
def test_a_text_column_reads_like_the_list_it_was_written_from(tmp_path, layout, rows_per_block):
    texts = layout(tmp_path, TEXTS, rows_per_block)
    assert len(texts) == 40 and list(texts) == TEXTS and texts[:] == TEXTS
    assert texts[5:33:4] == TEXTS[5:33:4] and texts[::-3] == TEXTS[::-3] and texts[-1] == "last"
    rows = [39, 2, 2, 0, 17, -1, 3, 0, -40]
    assert texts.take(rows) == texts.take(np.array(rows)) == [TEXTS[r] for r in rows]
    assert texts.take([]) == []
    for row in (40, -41):
        with pytest.raises(IndexError):
            texts[row]
        with pytest.raises(IndexError):
            texts.take([0, row])


@pytest.mark.parametrize("layout", [_raw, _blocks])
def test_an_empty_column_has_no_rows(tmp_path, layout):
    texts = layout(tmp_path, [], 64)
    assert len(texts) == 0 and list(texts) == [] and texts[:] == [] and texts.take([]) == []
    with pytest.raises(IndexError):
        texts[0]


def test_a_column_of_empty_texts_reads_back_from_an_empty_file(tmp_path):
    texts = _raw(tmp_path, ["", "", ""], 2)
    assert (tmp_path / "t.utf8").stat().st_size == 0
    assert list(texts) == ["", "", ""] and texts.take([2, 0]) == ["", ""]


def test_bad_bytes_and_offsets_of_a_raw_column_are_refused_when_their_block_is_read(tmp_path):
    blob, ends, table = encode_raw_texts(TEXTS, 8)                # 5 blocks of 8 rows
    (tmp_path / "t.utf8").write_bytes(blob)
    moved = ends.copy()
    moved[9] += 1                                                  # a row boundary inside block 1
    texts = RawTexts(tmp_path / "t.utf8", moved, table, 8)
    assert texts[0] == TEXTS[0] and texts.take([20, 39]) == [TEXTS[20], TEXTS[39]]
    with pytest.raises(CGRSInputError, match=r"t\.utf8 is corrupt at block 1 \(checksum mismatch of its bytes "
                                             r"or of its row offsets in t\.ends\.npy\); rebuild it with cgrs-index"):
        texts[10]
    outside = ends.copy()
    outside[17] = outside[23] + 5                                  # past the end of block 2
    with pytest.raises(CGRSInputError, match=r"t\.utf8 is corrupt at block 2 \(row offsets in t\.ends\.npy "
                                             r"out of order or outside the block\)"):
        RawTexts(tmp_path / "t.utf8", outside, table, 8).take([16])

    start, end = int(table[0, 0]), int(table[1, 0])
    broken = blob[:start + 1] + b"\xff" + blob[start + 2:]          # invalid UTF-8 under a matching crc32
    forged = table.copy()
    forged[1, 1] = raw_block_crc(broken[start:end], ends[8:16])
    (tmp_path / "t.utf8").write_bytes(broken)
    with pytest.raises(CGRSInputError, match=r"t\.utf8 is corrupt at block 1 \(not valid UTF-8: invalid start "
                                             rf"byte at byte {start + 1}\)"):
        RawTexts(tmp_path / "t.utf8", ends, forged, 8).check_sample(np.array([1]))


# --- a format-4 index on disk ---------------------------------------------------------------------

BLOCKS = 300    # more caption blocks than a load samples (256): some are first checked when read


@pytest.fixture(scope="module")
def big_index(tmp_path_factory, tiny_engine_config_path):
    """(folder, captions) of an index of 300 caption blocks and 5 rows (written without models)."""
    rows = BLOCKS * 64 + 5
    records = [GalleryRecord(f"i{n}", f"images/i{n}.png", f"p{n % 7}", "drone", 47.0, 8.0, None, None)
               for n in range(rows)]
    captions = [f"row {n}: {'ein Dach' if n % 3 else 'a roof, 北 of the pool'}" for n in range(rows)]
    vectors = np.random.default_rng(0).normal(size=(rows, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    folder = tmp_path_factory.mktemp("big") / "idx"
    write_index(folder, load_engine_config(tiny_engine_config_path), records, captions, vectors,
                np.zeros((rows, 0)), folder)
    return folder, captions


def _copy(index_dir, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(index_dir, copy)
    return copy, copy / json.loads((copy / "index.json").read_text())["data"]


def test_a_format_4_index_stores_raw_captions_and_reads_any_rows(big_index):
    folder, captions = big_index
    index = load_index(folder)
    data = index.data_dir
    assert index.meta["format"] == 4 and index.meta["text_block_rows"] == {"captions": 64, "details": 8}
    assert not (data / "captions.z").exists()
    assert (data / "captions.utf8").read_bytes() == "".join(captions).encode("utf-8")
    rows = np.random.default_rng(1).integers(0, len(captions), 1100)
    assert index.caption_texts(rows) == [captions[r] for r in rows]
    assert list(index.captions) == captions
    in_memory = GalleryIndex(folder, {}, list(index.records[:50]), captions[:50], index.image_embeddings[:50],
                             index.caption_embeddings[:50], folder, [])
    assert in_memory.caption_texts(np.array([49, 3, 3])) == [captions[49], captions[3], captions[3]]


def _unsampled_block(count: int) -> int:
    blocks = -(-count // 64)
    return int(np.setdiff1d(np.arange(blocks), _sample_rows(blocks))[0])


def test_a_flipped_caption_byte_is_refused_when_its_block_is_read(big_index, tmp_path):
    folder, captions = big_index
    copy, data = _copy(folder, tmp_path)
    block = _unsampled_block(len(captions))
    table = np.load(data / "captions.blocks.npy")
    blob = bytearray((data / "captions.utf8").read_bytes())
    blob[int(table[block - 1, 0]) + 3] ^= 0x01
    (data / "captions.utf8").write_bytes(blob)
    index = load_index(copy)
    with pytest.raises(CGRSInputError, match=rf"captions\.utf8 is corrupt at block {block} \(checksum mismatch"):
        index.caption_texts([0, block * 64 + 10])
    with pytest.raises(CGRSInputError, match=rf"captions\.utf8 is corrupt at block {block}"):
        index.captions[block * 64]
    others = [0, (block - 1) * 64 + 63, (block + 1) * 64, len(captions) - 1]
    assert index.caption_texts(others) == [captions[r] for r in others]


def test_a_truncated_caption_file_is_refused_at_load(big_index, tmp_path):
    copy, data = _copy(big_index[0], tmp_path)
    (data / "captions.utf8").write_bytes((data / "captions.utf8").read_bytes()[:-1])
    with pytest.raises(CGRSInputError, match=r"captions\.utf8 is truncated or padded: "):
        load_index(copy)


def test_tampered_caption_offsets_are_refused(big_index, tmp_path):
    folder, captions = big_index
    copy, data = _copy(folder, tmp_path)
    ends = np.load(data / "captions.ends.npy")
    sampled = _sample_rows(len(ends))
    block = _unsampled_block(len(ends))
    row = int(np.setdiff1d(np.arange(block * 64, block * 64 + 63), sampled)[0])
    moved = ends.copy()
    moved[row] -= 2                  # a boundary moved inside its block, outside the array's sample
    np.save(data / "captions.ends.npy", moved)
    index = load_index(copy)
    with pytest.raises(CGRSInputError, match=rf"captions\.utf8 is corrupt at block {block} \(checksum mismatch "
                                             r"of its bytes or of its row offsets in captions\.ends\.npy\)"):
        index.caption_texts([row])
    moved[sampled[1]] += 1           # a sampled row: the array no longer matches its checksum
    np.save(data / "captions.ends.npy", moved)
    with pytest.raises(CGRSInputError, match=r"captions\.ends\.npy does not match the checksum in index\.json"):
        load_index(copy)


# --- a format-3 index ------------------------------------------------------------------------------

def _as_format_3(index_dir, tmp_path):
    """A copy of the format-4 index ``index_dir`` as format 3 wrote it: captions in zlib blocks of 16."""
    copy, data = _copy(index_dir, tmp_path)
    captions = list(load_index(index_dir).captions)
    blob, table, _ = encode_text_blocks(captions, 16)
    buffer = io.BytesIO()
    np.save(buffer, table, allow_pickle=False)
    (data / "captions.z").write_bytes(blob)
    (data / "captions.blocks.npy").write_bytes(buffer.getvalue())
    (data / "captions.utf8").unlink()
    (data / "captions.ends.npy").unlink()
    meta = json.loads((copy / "index.json").read_text())
    del meta["checksums"]["captions.ends.npy"]
    meta["checksums"]["captions.blocks.npy"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    # a format-3 build's digest of its gallery had the format in it: never equal to a format-4 build's
    # (its details keep the blocks this writer made: the reader takes their size from index.json)
    meta.update(format=3, text_block_rows={"captions": 16, "details": meta["text_block_rows"]["details"]},
                source_digest="of a format-3 build")
    (copy / "index.json").write_text(json.dumps(meta))
    return copy, captions


def test_a_format_3_index_loads_and_a_rebuild_rewrites_it_without_captioning(
        tiny_engine_files, tiny_gallery, tmp_path):
    config_path, index_dir = tiny_engine_files
    old, captions = _as_format_3(index_dir, tmp_path)
    index = load_index(old, load_engine_config(config_path))
    assert isinstance(index.captions, BlockTexts) and list(index.captions) == captions
    assert index.caption_texts(np.array([17, 0, 5, 5])) == [captions[r] for r in (17, 0, 5, 5)]

    meta = build_index(read_manifest(tiny_gallery), load_engine_config(config_path), old, progress=False)
    assert (meta["format"], meta["encoded"], meta["reused"]) == (4, 0, 18)
    rebuilt = load_index(old)
    assert isinstance(rebuilt.captions, RawTexts) and list(rebuilt.captions) == captions


@pytest.mark.parametrize("fmt", [2, 5, "4"])
def test_other_formats_are_refused_naming_the_formats_read(tiny_engine_files, tmp_path, fmt):
    copy, _ = _copy(tiny_engine_files[1], tmp_path)
    meta = json.loads((copy / "index.json").read_text())
    (copy / "index.json").write_text(json.dumps(dict(meta, format=fmt)))
    with pytest.raises(CGRSInputError, match=rf"index format {fmt!r}, this version reads 3 and 4; rerun cgrs-index"):
        load_index(copy)
