"""The index's rows as typed columns, and its texts in blocks of rows read only when asked for.

Why: parsed into Python objects at load, a million gallery records (with the world's descriptions,
sentences and boxes) took 34 s and 4.3 GB of RAM, four times the vectors, while a query needs the
records of a few dozen rows.  So what every query or grouping reads for all rows is a typed column
(place codes, coordinates, image ids; a few tens of bytes per row, memory-mapped), and everything
else of a record (its path and extra keys) and its caption are texts kept in blocks of rows, read
when a row of the block is asked for.

Two layouts of a text column, both a memory-mapped blob cut into blocks by ``NAME.blocks.npy``
(int64 (B, 2): end offset of each block in the blob, and its crc32):

    NAME.z             concatenated zlib streams, one per block: the UTF-8 JSON list of its texts.
                       For the details (a query reads ~10): JSON lines of one place repeat their keys
                       and descriptions, so a block compresses 5-10x.
    NAME.utf8          the UTF-8 bytes of all texts, concatenated, and NAME.ends.npy the int64 end
                       offset of each row; a block's crc32 covers its bytes and then its rows' end
                       offsets.  For the captions: a cached query reads ~1,000 candidate captions, and
                       decoding their zlib blocks (crc32, inflate, JSON for every block touched) was a
                       large share of its time; uncompressed they cost the size of a caption (~170
                       B/image) more and are sliced straight from the map.

Every block is checked against its crc32 when first read (zlib blocks whenever decoded), so a
corrupt block is refused (with the file and block named) whenever it is read, not only when a
load-time sample hits it.
"""
from __future__ import annotations

import json
import mmap
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import CGRSInputError
from .gallery import GEO_FIELDS, PLATFORMS, GalleryRecord, parse_record

DECODED_BLOCKS = 256          # decoded blocks kept per zlib text column (a query touches a few dozen)
SCAN_ROWS = 1024              # raw texts a full scan reads per take: numpy's cost per call amortised


def encode_text_blocks(texts: Sequence[str], rows_per_block: int) -> tuple[bytes, np.ndarray, int]:
    """(NAME.z bytes, NAME.blocks table, the size of its largest block inflated) for ``texts``."""
    parts, table, end, largest = [], [], 0, 0
    for start in range(0, len(texts), rows_per_block):
        raw = json.dumps(list(texts[start:start + rows_per_block]), ensure_ascii=False).encode("utf-8")
        block = zlib.compress(raw, 9)
        parts.append(block)
        largest = max(largest, len(raw))
        end += len(block)
        table.append((end, zlib.crc32(block)))
    return b"".join(parts), np.array(table, dtype=np.int64).reshape(-1, 2), largest


def inflate_limit(recorded: object, compressed: int) -> int:
    """The most bytes a zlib stream of ``compressed`` bytes may inflate to: the size ``index.json``
    records for it, or for an index that records none, 64 times its size (the index's text blocks
    compress 5-10 times; zlib can reach 1,000)."""
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded >= 0:
        return recorded
    return max(1 << 20, 64 * compressed)


def inflate(data: bytes, limit: int, what: str) -> bytes:
    """``zlib.decompress(data)``, refused (never held in memory) when it inflates past ``limit``
    bytes: a crafted block of a few megabytes must not take gigabytes before it is refused."""
    stream = zlib.decompressobj()
    try:
        out = stream.decompress(data, limit + 1)
    except zlib.error as exc:
        raise CGRSInputError(f"{what} is corrupt ({exc}); rebuild it with cgrs-index") from None
    if len(out) > limit or stream.unconsumed_tail:
        raise CGRSInputError(f"{what} is corrupt: it inflates to more than the {limit} bytes the index records "
                             f"for it; rebuild it with cgrs-index")
    if not stream.eof:
        raise CGRSInputError(f"{what} is corrupt (truncated zlib stream); rebuild it with cgrs-index")
    return out


def encode_raw_texts(texts: Sequence[str], rows_per_block: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """(NAME.utf8 bytes, NAME.ends array, NAME.blocks table) for ``texts``."""
    encoded = [text.encode("utf-8") for text in texts]
    blob = b"".join(encoded)
    ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
    table, start = [], 0
    for first in range(0, len(ends), rows_per_block):
        row_ends = ends[first:first + rows_per_block]
        end = int(row_ends[-1])
        table.append((end, raw_block_crc(blob[start:end], row_ends)))
        start = end
    return blob, ends, np.array(table, dtype=np.int64).reshape(-1, 2)


def raw_block_crc(data: bytes, row_ends: np.ndarray) -> int:
    """crc32 of a raw block's bytes followed by its rows' end offsets (little-endian int64): a
    flipped byte and a moved row boundary are both refused."""
    return zlib.crc32(np.asarray(row_ends, dtype="<i8").tobytes(), zlib.crc32(data))


class _BlockedTexts(Sequence[str]):
    """What both layouts share: ``count`` texts in blocks of ``rows_per_block`` rows of a
    memory-mapped blob, whose size and block count are checked against the table at open."""

    def __init__(self, blob: Path, table: np.ndarray, count: int, rows_per_block: int):
        self.blob, self.count, self.rows_per_block = blob, count, rows_per_block
        self._block_ends = np.asarray(table[:, 0])
        self._crcs = np.asarray(table[:, 1])
        expected_blocks = -(-count // rows_per_block)
        if len(table) != expected_blocks:
            raise CGRSInputError(f"index file {blob.with_suffix('.blocks.npy')} lists {len(table)} blocks, "
                                 f"{count} rows need {expected_blocks}; rebuild it with cgrs-index")
        try:
            with open(blob, "rb") as handle:
                size = handle.seek(0, 2)
                self._data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        except FileNotFoundError:
            raise CGRSInputError(f"index file {blob} is missing; rebuild the index with cgrs-index") from None
        except (OSError, ValueError) as exc:
            raise CGRSInputError(f"index file {blob} is unreadable: {exc}") from exc
        listed = int(self._block_ends[-1]) if len(table) else 0
        if size != listed:
            raise CGRSInputError(f"index file {blob} is truncated or padded: {size} bytes, its block table says "
                                 f"{listed}; rebuild it with cgrs-index")

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, row):
        if isinstance(row, slice):
            return self.take(np.arange(*row.indices(self.count)))
        row = int(row)
        if row < 0:
            row += self.count
        if not 0 <= row < self.count:
            raise IndexError(f"row {row} of {self.count}")
        return self._text(row)

    def _rows(self, rows) -> np.ndarray:
        """``rows`` as an int64 array, negative ones counted from the end as a list does."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        outside = (rows < -self.count) | (rows >= self.count)
        if outside.any():
            raise IndexError(f"row {int(rows[outside][0])} of {self.count}")
        return np.where(rows < 0, rows + self.count, rows)

    def _span(self, number: int) -> tuple[int, int]:
        """(start, end) byte offsets of block ``number`` in the blob."""
        return int(self._block_ends[number - 1]) if number else 0, int(self._block_ends[number])

    def _corrupt(self, number: int, why: str) -> CGRSInputError:
        return CGRSInputError(f"index file {self.blob} is corrupt at block {number} ({why}); "
                              f"rebuild it with cgrs-index")


class BlockTexts(_BlockedTexts):
    """A read-only sequence of texts decoded block by block from a memory-mapped ``NAME.z``."""

    def __init__(self, blob: Path, table: np.ndarray, count: int, rows_per_block: int, largest: int | None = None):
        """``largest``: the inflated size of the largest block, as index.json records it (None: see
        :func:`inflate_limit`)."""
        super().__init__(blob, table, count, rows_per_block)
        self.largest = largest
        self.block = lru_cache(maxsize=DECODED_BLOCKS)(self._decode)

    def _text(self, row: int) -> str:
        return self.block(row // self.rows_per_block)[row % self.rows_per_block]

    def take(self, rows) -> list[str]:
        """The texts of ``rows`` (an int array), each block they fall in decoded once."""
        numbers, places = np.divmod(self._rows(rows), self.rows_per_block)
        blocks = {number: self.block(number) for number in np.unique(numbers).tolist()}
        return [blocks[number][place] for number, place in zip(numbers.tolist(), places.tolist())]

    def __iter__(self):
        for number in range(len(self._block_ends)):
            yield from self._decode(number)     # a full scan never evicts a query's blocks

    def _decode(self, number: int) -> list[str]:
        start, end = self._span(number)
        data = self._data[start:end]
        wanted = min(self.rows_per_block, self.count - number * self.rows_per_block)
        try:
            if zlib.crc32(data) != int(self._crcs[number]):
                raise ValueError("checksum mismatch")
            raw = inflate(data, inflate_limit(self.largest, len(data)), f"index file {self.blob} block {number}")
            texts = json.loads(raw.decode("utf-8"))
            if not isinstance(texts, list) or len(texts) != wanted or not all(isinstance(t, str) for t in texts):
                raise ValueError(f"expected a list of {wanted} texts")
        except (ValueError, zlib.error, RecursionError) as exc:
            raise self._corrupt(number, str(exc)) from None
        return texts

    def check_sample(self, blocks: np.ndarray) -> None:
        """Decode the given blocks (checks their crc32 and length) without caching them."""
        for number in blocks:
            self._decode(int(number))


class RawTexts(_BlockedTexts):
    """A read-only sequence of texts sliced from a memory-mapped ``NAME.utf8`` by their end offsets.

    A block is verified (crc32 of its bytes and row offsets, offsets inside the block and in order,
    bytes valid UTF-8) the first time any of its rows is read in this process; after that a row is
    one slice and one decode.  ``row_ends`` is ``NAME.ends.npy``, already checked for shape, dtype
    and its sampled digest by the loader.
    """

    def __init__(self, blob: Path, row_ends: np.ndarray, table: np.ndarray, rows_per_block: int):
        super().__init__(blob, table, len(row_ends), rows_per_block)
        self._row_ends = np.asarray(row_ends)    # a plain view: memmap's subclass hooks cost per call
        self._verified = np.zeros(len(table), dtype=bool)

    def _text(self, row: int) -> str:
        number = row // self.rows_per_block
        if not self._verified[number]:
            self._verify(number)
        start = int(self._row_ends[row - 1]) if row else 0
        return self._data[start:int(self._row_ends[row])].decode("utf-8")

    def take(self, rows) -> list[str]:
        """The texts of ``rows`` (an int array): offsets looked up in one numpy pass, then one slice
        and decode per row."""
        rows = self._rows(rows)
        numbers = rows // self.rows_per_block
        if not self._verified[numbers].all():
            self.check_sample(np.unique(numbers))
        ends = self._row_ends[rows]
        starts = self._row_ends[rows - 1]
        starts[rows == 0] = 0
        data = self._data
        return [data[start:end].decode("utf-8") for start, end in zip(starts.tolist(), ends.tolist())]

    def __iter__(self):
        for first in range(0, self.count, SCAN_ROWS):
            yield from self.take(np.arange(first, min(first + SCAN_ROWS, self.count)))

    def check_sample(self, blocks: np.ndarray) -> None:
        """Verify those of the given blocks not verified yet (a sample at load, then the blocks each
        read touches)."""
        for number in np.asarray(blocks).tolist():
            if not self._verified[number]:
                self._verify(number)

    def _verify(self, number: int) -> None:
        start, end = self._span(number)
        first = number * self.rows_per_block
        row_ends = self._row_ends[first:first + self.rows_per_block]
        offsets = [int(self._row_ends[first - 1]) if first else 0] + row_ends.tolist()   # its rows' starts and ends
        data = self._data[start:end]
        if offsets[0] != start or offsets[-1] != end or offsets != sorted(offsets):
            raise self._corrupt(number, f"row offsets in {self.blob.with_suffix('.ends.npy').name} "
                                        f"out of order or outside the block")
        if raw_block_crc(data, row_ends) != int(self._crcs[number]):
            raise self._corrupt(number, f"checksum mismatch of its bytes or of its row offsets in "
                                        f"{self.blob.with_suffix('.ends.npy').name}")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._corrupt(number, f"not valid UTF-8: {exc.reason} at byte {start + exc.start}") from None
        self._verified[number] = True


# --- records as columns --------------------------------------------------------------------------

def record_columns(records: Sequence[GalleryRecord]) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """(typed columns, place names, detail texts) of ``records``, in row order.

    Columns: ``image_ids`` (UTF-8 bytes, fixed width), ``place_codes`` (int32 into the place
    names, first-appearance order), ``platforms`` (uint8 into :data:`PLATFORMS`) and ``geo``
    (float64 lat, lon, alt, heading; NaN for null).  A detail text is the JSON object of the rest
    of a record: its path and extra keys.
    """
    places: dict[str, int] = {}
    columns = {
        "image_ids": np.array([r.image_id.encode("utf-8") for r in records], dtype=np.bytes_),
        "place_codes": np.array([places.setdefault(r.place_id, len(places)) for r in records], dtype=np.int32),
        "platforms": np.array([PLATFORMS.index(r.platform) for r in records], dtype=np.uint8),
        "geo": np.array([[_nan_for_none(getattr(r, name)) for name in GEO_FIELDS] for r in records],
                        dtype=np.float64).reshape(-1, len(GEO_FIELDS)),
    }
    details = [json.dumps(dict(r.extras, path=r.path), ensure_ascii=False) for r in records]
    return columns, list(places), details


def _nan_for_none(value: float | None) -> float:
    return np.nan if value is None else value


class IndexRecords(Sequence[GalleryRecord]):
    """The records of a loaded index, rebuilt row by row from its columns and detail blocks."""

    def __init__(self, columns: dict[str, np.ndarray], places: list[str], details: BlockTexts, where: str):
        self.columns, self.places, self.details, self.where = columns, places, details, where

    def __len__(self) -> int:
        return len(self.details)

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = int(row)
        if row < 0:
            row += len(self)
        return self._record(row, self.details[row])

    def __iter__(self):
        for row, detail in enumerate(self.details):
            yield self._record(row, detail)

    def image_id(self, row: int) -> str:
        try:
            return self.columns["image_ids"][row].decode("utf-8")
        except UnicodeDecodeError:
            raise CGRSInputError(f"index file {Path(self.where).with_name('image_ids.npy')} is corrupt: row {row} "
                                 f"is not UTF-8; rebuild it with cgrs-index") from None

    def _record(self, row: int, detail: str) -> GalleryRecord:
        where = f"{self.where} row {row}"
        try:
            fields = json.loads(detail)
        except (ValueError, RecursionError):
            fields = None
        if not isinstance(fields, dict):
            raise CGRSInputError(f"{where}: corrupt index record")
        geo = self.columns["geo"][row]
        fields.update(image_id=self.image_id(row), place_id=self.places[int(self.columns["place_codes"][row])],
                      platform=PLATFORMS[int(self.columns["platforms"][row])],
                      **{name: None if np.isnan(value) else float(value) for name, value in zip(GEO_FIELDS, geo)})
        return parse_record(fields, where)
