"""The index's rows as typed columns, and its texts in compressed blocks read only when asked for.

Why: parsed into Python objects at load, a million gallery records (with the world's descriptions,
sentences and boxes) took 34 s and 4.3 GB of RAM, four times the vectors, while a query needs the
records of a few dozen rows.  So what every query or grouping reads for all rows is a typed column
(place codes, coordinates, image ids; a few tens of bytes per row, memory-mapped), and everything
else of a record (its path and extra keys) and its caption are texts kept in zlib-compressed blocks
of a few dozen rows, decoded when a row of the block is asked for (JSON lines of one place repeat
their keys and descriptions: a block compresses 5-10x).

Text block files, a pair per text column (``NAME.z`` and ``NAME.blocks.npy``):

    NAME.z             concatenated zlib streams, one per block: the UTF-8 JSON list of its texts
    NAME.blocks.npy    int64 (B, 2): end offset of each block in NAME.z, and the crc32 of its bytes

Every block is checked against its crc32 when decoded, so a corrupt block is refused (with the
file and block named) whenever it is read, not only when a load-time sample hits it.
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

DECODED_BLOCKS = 256          # decoded blocks kept per text column (a query touches a few dozen)


def encode_text_blocks(texts: Sequence[str], rows_per_block: int) -> tuple[bytes, np.ndarray]:
    """(NAME.z bytes, NAME.blocks table) for ``texts``."""
    parts, table, end = [], [], 0
    for start in range(0, len(texts), rows_per_block):
        block = zlib.compress(json.dumps(list(texts[start:start + rows_per_block]),
                                         ensure_ascii=False).encode("utf-8"), 9)
        parts.append(block)
        end += len(block)
        table.append((end, zlib.crc32(block)))
    return b"".join(parts), np.array(table, dtype=np.int64).reshape(-1, 2)


class BlockTexts(Sequence[str]):
    """A read-only sequence of texts decoded block by block from a memory-mapped ``NAME.z``."""

    def __init__(self, blob: Path, table: np.ndarray, count: int, rows_per_block: int):
        self.blob, self.count, self.rows_per_block = blob, count, rows_per_block
        self._ends = np.asarray(table[:, 0])
        self._crcs = np.asarray(table[:, 1])
        expected_blocks = -(-count // rows_per_block)
        if len(table) != expected_blocks:
            raise CGRSInputError(f"index file {blob.with_suffix('.blocks.npy')} lists {len(table)} blocks, "
                                 f"{count} rows need {expected_blocks}; rebuild it with cgrs-index")
        try:
            with open(blob, "rb") as handle:
                size = handle.seek(0, 2)
                self._data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        except (OSError, ValueError) as exc:
            raise CGRSInputError(f"index file {blob} is missing or unreadable: {exc}") from exc
        if size != (int(self._ends[-1]) if len(self._ends) else 0):
            raise CGRSInputError(f"index file {blob} is truncated or padded: {size} bytes, its block table says "
                                 f"{int(self._ends[-1]) if len(self._ends) else 0}; rebuild it with cgrs-index")
        self.block = lru_cache(maxsize=DECODED_BLOCKS)(self._decode)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(self.count))]
        row = int(row)
        if row < 0:
            row += self.count
        if not 0 <= row < self.count:
            raise IndexError(f"row {row} of {self.count}")
        return self.block(row // self.rows_per_block)[row % self.rows_per_block]

    def __iter__(self):
        for number in range(len(self._ends)):
            yield from self._decode(number)     # a full scan never evicts a query's blocks

    def _decode(self, number: int) -> list[str]:
        start = int(self._ends[number - 1]) if number else 0
        data = self._data[start:int(self._ends[number])]
        wanted = min(self.rows_per_block, self.count - number * self.rows_per_block)
        try:
            if zlib.crc32(data) != int(self._crcs[number]):
                raise ValueError("checksum mismatch")
            texts = json.loads(zlib.decompress(data).decode("utf-8"))
            if not isinstance(texts, list) or len(texts) != wanted or not all(isinstance(t, str) for t in texts):
                raise ValueError(f"expected a list of {wanted} texts")
        except (ValueError, zlib.error, RecursionError) as exc:
            raise CGRSInputError(f"index file {self.blob} is corrupt at block {number} ({exc}); "
                                 f"rebuild it with cgrs-index") from None
        return texts

    def check_sample(self, blocks: np.ndarray) -> None:
        """Decode the given blocks (checks their crc32 and length) without caching them."""
        for number in blocks:
            self._decode(int(number))


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
        return self.columns["image_ids"][row].decode("utf-8")

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
