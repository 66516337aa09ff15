"""The gallery index: image embeddings, captions and caption embeddings, computed once per gallery.

Captioning is the expensive stage (0.4-2 s per 20 images on an H100, far more on a Jetson; most
of a build's time), so by default (``index.captions: all``) the index captions every
gallery image once, at build time, and queries rerank against cached captions.  With
``index.captions: none`` a build runs the retriever alone and stores no captions (an empty caption
column, zero-width caption vectors, ``"captions": "none"`` in ``index.json``, and a fingerprint of
the retriever only); queries caption their candidates when first needed, and keep those captions
in the generation's append-only caption log (:mod:`cgrs_ros.caption_log`).

Folder layout (everything a query needs; ``.npy`` files are memory-mapped, nothing is pickled)::

    index.json                 the commit point: what made the index (fingerprint), counts, the gallery
                               root, the name of the data folder and checksums of every file in it
    data-NNNN/                 one complete generation of the index, never modified once written
                               (except its caption log, which only grows):
      image_embeddings.npy       float16 (N, D) L2-normalised CLIP image vectors
      caption_embeddings.npy     float16 (N, E) L2-normalised text vectors of the captions
      image_ids.npy              (N,) UTF-8 image ids, fixed width
      place_codes.npy            int32 (N,) row -> place, into places.json (first-appearance order)
      platforms.npy              uint8 (N,) row -> drone | satellite | ground
      geo.npy                    float64 (N, 4) lat, lon, alt, heading of each row; NaN for null
      places.json                the place ids
      captions.utf8, .ends.npy,  the captions: their UTF-8 bytes, each row's end offset, and a crc32
        .blocks.npy              per block of 64 rows, checked when first read (cgrs_ros.columns);
                                 uncompressed so a query reads its ~1,000 candidate captions in ~1 ms
      details.z, .blocks.npy     each record's path and extra keys, in zlib blocks of 8 rows read on
                                 demand (32 in format 3; a goal's ten matches decode ten blocks)
      search-*                   the coarse-search structure the index was built for, if it has one
      clauses.*                  for a clause matcher: every caption read into relations and its
                                 clauses encoded, so a query encodes only its own (cgrs_ros.clause_table)
      skipped.json               images that could not be read, with the reason
      sources.json.zlib          the file state (path, size, mtime, view) each row was made from
                                 (zlib-compressed JSON: read by rebuilds only)
      caption_log.jsonl          captions made at query time, one checked JSON line each (not in the
                                 checksums: it grows; each line carries its own crc32)
    .build/                    work of a build in progress: finished chunks, the next generation
    .lock                      held by the build that owns the folder

Why columns and float16 (format 3): at a million rows the parsed records of format 2 took 4.3 GB of
RAM and 34 s to load; now a load maps the columns and reads a few block tables, and a query decodes
the captions and records of the rows it returns.  float16 halves the vectors (the rendered world's
recall is unchanged: ``bench/scale_benchmark.py`` measures it against float32).

Why raw captions (format 4): a cached query reads ~1,000 candidate captions, and decoding their
zlib blocks was a large share of its time; uncompressed they cost ~170 B/image more.  A format-3
index (captions in zlib blocks of 16 rows, like the details) still loads, and a rerun of cgrs-index
rewrites it as format 4 without encoding or captioning any image again.

Why this shape: a build must never lose a working index, whatever kills it.  A build writes the
next generation beside the live one and switches by atomically replacing ``index.json``; only
then is the old generation deleted.  So at every instant ``index.json`` names a complete, checked
generation (or there is none yet), and anything else in the folder is leftover work that the next
build reuses or removes.  Work is reused per image, keyed by its file state: a killed build resumes
from its finished chunks, and a rebuild of a grown or edited gallery encodes only the images that
are new or whose file changed (the rest is copied from the live index).  A rebuild of an unchanged
gallery with the same models is a no-op.  The captions a query logged are reused the same way: a
rebuild keeps them for the rows it keeps (in the next generation's log, or in its caption column
when it captions every image, which then captions only the images that have none).
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import stat
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from . import clause_table
from .caption_log import LOG_NAME, log_lines, read_log
from .clause_table import ClauseTable
from .columns import (BlockTexts, IndexRecords, RawTexts, encode_raw_texts, encode_text_blocks, inflate, inflate_limit,
                      record_columns)
from .config import INDEX_CAPTIONS, EngineConfig, IndexSettings
from .errors import CGRSInputError
from .fingerprint import caption_key, fingerprint_differences, index_fingerprint
from .gallery import (GEO_FIELDS, PLATFORMS, Gallery, GalleryRecord, fsync_dir, resolve_inside, write_atomic,
                      write_text_atomic)
from .jsonl import decode_text, parse_json, read_bytes, read_json, read_text
from .rectify import should_rectify, views_for_captioner
from .search import build_search_files

INDEX_FORMAT = 4
# Formats this version loads.  Format 3 differs only in its captions (zlib blocks, read by
# BlockTexts): a million-image index built before format 4 must not need captioning again.
READ_FORMATS = (3, INDEX_FORMAT)
META = "index.json"
BUILD = ".build"
LOCK = ".lock"
LOCK_MARK = b"cgrs-index build lock\n"     # the content of a .lock a build took: proof the folder is ours
FORMAT_1_MARK = "replaces-format-1"     # in .build: the folder's own files are a format-1 index's
_GENERATION = re.compile(r"data-[0-9]{4,}")
_TEMPORARY = re.compile(r"\..+\.tmp-[0-9]+-[0-9]+")
_HELD_LOCKS: dict[str, int] = {}        # index folder -> the fd of the lock this process holds on it
DATA_PREFIX = "data-"
VECTOR_DTYPE = np.float16
# (file stem, dtype, columns or the index.json field holding their number); vectors are also
# checked to be finite unit rows
ARRAYS = (("image_embeddings", VECTOR_DTYPE, "image_dim"), ("caption_embeddings", VECTOR_DTYPE, "caption_dim"))
COLUMNS = (("place_codes", np.int32, None), ("platforms", np.uint8, None), ("geo", np.float64, len(GEO_FIELDS)))
# rows per block of each text column (index.json's text_block_rows): a zlib block of details trades
# decode cost for ratio (the world's records, ~900 B each: 8 rows 130 B/row and 66 us a block, 32 rows
# 87 B/row and 210 us; a goal's ten matches decode ten blocks); a raw block of captions only shares
# one crc32, verified once per process
TEXT_COLUMNS = {"captions": 64, "details": 8}
SOURCES = "sources.json.zlib"
# generation_files' entry of inflated sizes, which index.json keeps (field "inflated"): each zlib
# stream of a generation is read bounded by it (details.z: its largest block)
INFLATED = "inflated"
# Files of a format-1 index (written straight into the folder); removed once a newer index replaces it.
_FORMAT_1_FILES = ("image_embeddings.npy", "caption_embeddings.npy", "records.jsonl", "skipped.json", ".partial")
# Rows whose bytes are checksummed and whose finiteness and norm are checked on every load: a fixed,
# evenly spread sample, so opening a 1M-row index costs a few hundred row reads, not a 3 GB scan.
SAMPLE_ROWS = 256
LOAD_ATTEMPTS = 5           # generations a load tries while rebuilds commit one after another under it
NORM_TOLERANCE = 1e-2     # float16 storage and fp16 encoders give norms within ~1e-3 of 1
IMAGE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


@dataclass
class GalleryIndex:
    """A loaded index; arrays are read-only memory maps.

    ``records`` and ``captions`` are sequences decoded on access (:mod:`cgrs_ros.columns`);
    ``place_codes`` (int per row, into ``place_names``) and ``coordinates`` ((N, 2) lat, lon, NaN
    where not geo-tagged) are what groupings read for every row, ``platform_codes`` (into
    :data:`~cgrs_ros.gallery.PLATFORMS`) and ``headings`` (NaN for none) what the rerank reads to
    know which captions state compass sides.  An index assembled in memory from lists gets them
    computed from its records.
    """

    path: Path
    meta: dict
    records: Sequence[GalleryRecord]
    captions: Sequence[str]
    image_embeddings: np.ndarray
    caption_embeddings: np.ndarray
    gallery_root: Path
    skipped: list[dict]
    place_codes: np.ndarray | None = None
    place_names: list[str] | None = None
    coordinates: np.ndarray | None = None
    platform_codes: np.ndarray | None = None
    headings: np.ndarray | None = None
    # the captions read into relations at build time, for a clause matcher (None: read at query time)
    clause_table: ClauseTable | None = None
    # record path -> checked full path: resolving walks every folder of the path (a stat each),
    # which was a tenth of a cached query's time for its ten matches
    _resolved: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    # name -> the open file of each generation file read after the load (see load_index)
    _open: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if any(column is None for column in (self.place_codes, self.coordinates, self.platform_codes, self.headings)):
            columns, self.place_names, _ = record_columns(self.records)
            self.place_codes, self.coordinates = columns["place_codes"], columns["geo"][:, :2]
            self.platform_codes, self.headings = columns["platforms"], columns["geo"][:, 3]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def data_dir(self) -> Path:
        """The generation the arrays and records were read from (the folder itself for an index
        assembled in memory)."""
        return self.path / self.meta.get("data", ".")

    @property
    def has_captions(self) -> bool:
        """False for an index built with ``index.captions: none`` (its caption column is empty)."""
        return self.meta.get("captions", "all") != "none"

    @property
    def caption_log_file(self) -> Path | None:
        """Where queries log the captions they make (None for an index assembled in memory)."""
        return self.data_dir / LOG_NAME if "data" in self.meta else None

    def place_ids(self, rows=None) -> np.ndarray:
        """The place id of each of ``rows`` (all rows when None), as a string array."""
        codes = self.place_codes if rows is None else self.place_codes[np.asarray(rows, dtype=np.int64)]
        return np.asarray(self.place_names, dtype=object)[codes]

    def read_file(self, name: str) -> bytes:
        """A file of the generation, checked against its sha256 in ``index.json``."""
        file = self.data_dir / name
        handle = self._open.get(name)
        if handle is not None:      # opened at load: still the generation loaded, even once replaced
            data = os.pread(handle.fileno(), os.fstat(handle.fileno()).st_size, 0)
        else:
            data = read_bytes(file, "index file")
        if _sha256(data) != self.meta["checksums"].get(name):
            raise CGRSInputError(f"index file {file} does not match the checksum in {META}; rebuild it with cgrs-index")
        return data

    def inflated(self, name: str) -> bytes:
        """A zlib file of the generation, checked and inflated, refused when it inflates past the
        size ``index.json`` records for it."""
        data = self.read_file(name)
        return inflate(data, inflate_limit(self.meta.get(INFLATED, {}).get(name), len(data)),
                       f"index file {self.data_dir / name}")

    def caption_texts(self, rows) -> list[str]:
        """The captions of ``rows`` (an int array): one vectorised read from an index on disk (a
        cached query reads ~1,000 candidates' captions), row by row from one assembled in memory."""
        take = getattr(self.captions, "take", None)
        return take(rows) if take is not None else [self.captions[row] for row in rows]

    def image_id(self, row: int) -> str:
        """The image id of ``row``, read from its column when the index has one (no record decoded)."""
        return self.records.image_id(row) if isinstance(self.records, IndexRecords) else self.records[row].image_id

    def image_path(self, row: int) -> Path:
        return self.record_path(self.records[row])

    def record_path(self, record: GalleryRecord) -> Path:
        """The image file of one of this index's records (refused if it leaves the gallery folder)."""
        path = self._resolved.get(record.path)
        if path is None:
            if len(self._resolved) >= 65_536:
                self._resolved.clear()
            path = self._resolved[record.path] = resolve_inside(self.gallery_root, record,
                                                                 str(self.data_dir / "details.z"))
        return path


# --- images ------------------------------------------------------------------------------------

def load_image(path: Path, max_side: int = IndexSettings.max_image_side) -> Image.Image:
    """Decode an image as RGB, upright, with its longest side at most ``max_side``.

    - Only regular files are opened (a FIFO at an image path would block ``open`` forever; it is
      opened non-blocking and refused).
    - JPEGs decode directly at a reduced scale and everything is downscaled at once, so memory
      holds one full-resolution decode at most, never a batch of them.
    - EXIF orientation is applied (phone photos are stored sideways with a rotate tag).
    - 16-bit greyscale keeps its high byte (``convert("RGB")`` would clip it to white).
    A truncated file fails here, not later in a batch.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(f"{path} is not a regular file ({_file_kind(mode)})")
        with Image.open(handle) as image:
            image.draft("RGB", (max_side, max_side))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            small = _eight_bit(image)
            small.thumbnail((max_side, max_side))
            return small.convert("RGB")


def _eight_bit(image: Image.Image) -> Image.Image:
    if image.mode not in _SIXTEEN_BIT_MODES:
        return image
    pixels = np.array(image)
    np.clip(pixels, 0, 65535, out=pixels)
    return Image.fromarray((pixels >> 8).astype(np.uint8), mode="L")


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a plain file"


def image_source(gallery: Gallery, record: GalleryRecord, settings: IndexSettings) -> str:
    """What an image's index entry depends on besides the models: ``file:`` + path, size, mtime and
    the view (decode size, north-up turn), or ``skip:`` + why it cannot be read.  Equal sources mean
    a finished result can be reused; a replaced or touched file gets a new one."""
    try:
        info = os.stat(gallery.resolve(record))
    except FileNotFoundError:
        return "skip:file not found"
    except OSError as exc:
        return f"skip:cannot read: {exc.strerror or exc}"
    if not stat.S_ISREG(info.st_mode):
        return f"skip:not a regular file ({_file_kind(info.st_mode)})"
    turn = record.heading if should_rectify(record, settings.rectify, settings.horizontal_platforms) else "-"
    return f"file:{record.path}|{info.st_size}|{info.st_mtime_ns}|{settings.max_image_side}|{turn}"


# --- checksums ---------------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sample_rows(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, max(n - 1, 0), min(n, SAMPLE_ROWS)).round().astype(np.int64))


def _array_digest(array: np.ndarray) -> str:
    """sha256 of the shape, dtype and the sampled rows (see :data:`SAMPLE_ROWS`)."""
    head = f"{array.dtype.str}{array.shape}".encode()
    return _sha256(head + np.ascontiguousarray(array[_sample_rows(len(array))]).tobytes())


def _check_vectors(array: np.ndarray, file: Path) -> None:
    """Sampled rows finite and unit-norm (an all-NaN file would silently match nothing)."""
    rows = _sample_rows(len(array))
    sample = np.asarray(array[rows], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(sample).all(axis=1))
    if bad.size:
        raise CGRSInputError(f"index file {file} is corrupt: row {rows[bad[0]]} holds "
                             f"NaN or infinite values; rebuild it with cgrs-index")
    norms = np.linalg.norm(sample, axis=1)
    # zero-width caption vectors (a cross-encoder index stores none) have nothing to normalise
    off = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE) if array.shape[1] else np.zeros(0, np.int64)
    if off.size:
        raise CGRSInputError(f"index file {file} is corrupt: row {rows[off[0]]} has norm "
                             f"{norms[off[0]]:.4g}, not 1; rebuild it with cgrs-index")


# --- loading -----------------------------------------------------------------------------------

def read_meta(path: Path) -> dict:
    """``index.json`` of the index folder ``path``, checked field by field."""
    meta_path = path / META
    if not meta_path.is_file():
        hint = " (an unfinished build: rerun cgrs-index to resume)" if (path / BUILD).is_dir() else ""
        raise CGRSInputError(f"{path} is not a cgrs index: {META} is missing{hint}")
    meta = read_json(meta_path, "index file")
    if not isinstance(meta, dict):
        raise CGRSInputError(f"{meta_path} is corrupt: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") not in READ_FORMATS:
        raise CGRSInputError(f"{meta_path}: index format {meta.get('format')!r}, this version reads "
                             f"{' and '.join(map(str, READ_FORMATS))}; "
                             f"rerun cgrs-index to rebuild it (the old index stays in place until the new one is complete)")
    for name, kind in (("count", int), ("skipped", int), ("image_dim", int), ("caption_dim", int),
                       ("data", str), ("gallery_root", str), ("fingerprint", dict), ("checksums", dict)):
        value = meta.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise CGRSInputError(f"{meta_path} is corrupt: field '{name}' is missing or not a {kind.__name__}")
    rows = meta.get("text_block_rows")
    if not isinstance(rows, dict) or any(isinstance(rows.get(n), bool) or not isinstance(rows.get(n), int)
                                         or rows[n] < 1 for n in TEXT_COLUMNS):
        raise CGRSInputError(f"{meta_path} is corrupt: field 'text_block_rows' is missing or not positive integers")
    if not meta["data"].startswith(DATA_PREFIX) or Path(meta["data"]).name != meta["data"]:
        raise CGRSInputError(f"{meta_path} is corrupt: field 'data' is {meta['data']!r}")
    inflated = meta.setdefault(INFLATED, {})        # indexes made before it: bounded by inflate_limit
    if not isinstance(inflated, dict):
        raise CGRSInputError(f"{meta_path} is corrupt: field '{INFLATED}' is not a mapping")
    if meta.setdefault("captions", "all") not in INDEX_CAPTIONS:   # indexes made before the setting: all
        raise CGRSInputError(f"{meta_path} is corrupt: field 'captions' is {meta['captions']!r}, "
                             f"not one of {INDEX_CAPTIONS}")
    return meta


def load_index(path: str | Path, config: EngineConfig | None = None) -> GalleryIndex:
    """Open a complete index; refuse an unfinished one, a corrupt one, or one made by other models.

    Every file is checked against ``index.json``: small files (place names, block tables, skipped
    list) by a full sha256, arrays and columns by shape, dtype and a sampled checksum, vectors by
    sampled rows being finite unit vectors, text blocks by a sample decoded against their crc32
    (and every other block when it is first read).  Nothing is read whole: a load maps files.
    An index without captions is checked against the config's retriever only: any captioner may
    caption its candidates (each logged caption records which one made it).
    """
    path = Path(path)
    meta = read_meta(path)
    for attempt in range(LOAD_ATTEMPTS):
        try:
            return _load_generation(path, meta, config)
        except CGRSInputError:
            # a rebuild committed between reading index.json and opening the generation it named,
            # and removed that one: the generation index.json names now is whole (the commit is its
            # rename).  Tried again only while index.json names a new one each time.
            try:
                now = read_meta(path)
            except CGRSInputError:
                now = meta
            if now["data"] == meta["data"] or attempt == LOAD_ATTEMPTS - 1:
                raise
            meta = now


def _load_generation(path: Path, meta: dict, config: EngineConfig | None) -> GalleryIndex:
    """The generation ``meta`` names, checked; the files read after the load (search structure,
    sources, clause texts) are opened now and kept open, so a rebuild that removes the generation
    later changes nothing for this reader."""
    if config is not None:
        _check_fingerprint(path, meta["fingerprint"], config, meta["captions"])
    data, sums, count = path / meta["data"], meta["checksums"], meta["count"]
    kept = _open_files(data, [name for name in sums if not name.endswith(".npy")])
    arrays = {}
    for name, dtype, width in ARRAYS + COLUMNS + (("image_ids", np.bytes_, None),):
        shape = (count,) if width is None else (count, meta[width] if isinstance(width, str) else width)
        arrays[name] = _load_array(data / f"{name}.npy", shape, dtype, sums, vectors=(name, dtype, width) in ARRAYS)
    places = parse_json(_checked_text(data / "places.json", sums), f"index file {data / 'places.json'}")
    if not isinstance(places, list) or not all(isinstance(p, str) for p in places):
        raise CGRSInputError(f"index file {data / 'places.json'} is corrupt: expected a JSON list of place ids")
    for name, limit in (("place_codes", len(places)), ("platforms", len(PLATFORMS))):
        column = np.asarray(arrays[name])
        if count and (int(column.min()) < 0 or int(column.max()) >= limit):
            raise CGRSInputError(f"index file {data / name}.npy is corrupt: codes outside [0, {limit}); "
                                 f"rebuild it with cgrs-index")
    details = _load_block_texts(data, "details", count, meta, sums)
    captions = (_load_block_texts(data, "captions", count, meta, sums) if meta["format"] == 3   # built before format 4
                else _load_raw_texts(data, "captions", count, meta, sums))
    skipped_path = data / "skipped.json"
    skipped = parse_json(_checked_text(skipped_path, sums), f"index file {skipped_path}")
    if not isinstance(skipped, list):
        raise CGRSInputError(f"index file {skipped_path} is corrupt: expected a JSON list")
    # plain ndarray views of the maps (no copy): a memmap's subclass hooks cost per item a query reads
    columns = {name: np.asarray(arrays[name]) for name in ("image_ids", "place_codes", "platforms", "geo")}
    records = IndexRecords(columns, places, details, str(data / "details.z"))
    table = _load_clause_table(data, meta, sums) if "clause_table" in meta else None
    index = GalleryIndex(path, meta, records, captions, arrays["image_embeddings"],
                         arrays["caption_embeddings"], Path(meta["gallery_root"]), skipped,
                         place_codes=columns["place_codes"], place_names=places,
                         coordinates=columns["geo"][:, :2], platform_codes=columns["platforms"],
                         headings=columns["geo"][:, 3], clause_table=table)
    index._open = kept
    return index


def _open_files(data: Path, names: list[str]) -> dict:
    """name -> open file of the generation ``data``, opened before anything is read from it."""
    kept = {}
    for name in names:
        try:
            kept[name] = open(data / name, "rb")
        except OSError as exc:
            for handle in kept.values():
                handle.close()
            state = "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read: {exc.strerror or exc}"
            raise CGRSInputError(f"index file {data / name} {state}; rebuild the index with cgrs-index") from None
    return kept


def _load_clause_table(data: Path, meta: dict, sums: dict) -> ClauseTable:
    """The clause table ``index.json`` describes, its arrays checked like the others."""
    entry = meta["clause_table"]
    sizes = ("clauses", "relations", "dim")
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), dict) or any(
            isinstance(entry.get(n), bool) or not isinstance(entry.get(n), int) or entry[n] < 0 for n in sizes):
        raise CGRSInputError(f"{data.parent / META} is corrupt: field 'clause_table' needs a 'key' mapping and "
                             f"non-negative integers {', '.join(sizes)}")
    shapes = {"vectors": (entry["clauses"], entry["dim"]), "ids": (entry["relations"],),
              "sides": (entry["relations"],), "ends": (meta["count"],)}
    arrays = {name: np.asarray(_load_array(data / f"clauses.{name}.npy", shapes[name], dtype, sums,
                                           vectors=name == "vectors"))
              for name, dtype in clause_table.ARRAYS.items()}
    if meta["count"] and int(arrays["ends"][-1]) != entry["relations"]:
        raise CGRSInputError(f"index file {data / 'clauses.ends.npy'} is corrupt: its last end is "
                             f"{int(arrays['ends'][-1])}, not the {entry['relations']} relations; rebuild it with cgrs-index")
    return ClauseTable(entry["key"], **arrays)


def _load_array(file: Path, shape: tuple, dtype, sums: dict, vectors: bool) -> np.ndarray:
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise CGRSInputError(f"index file {file} is missing; rebuild the index with cgrs-index") from None
    except (OSError, ValueError, EOFError) as exc:
        raise CGRSInputError(f"index file {file} is corrupt: {exc}; rebuild it with cgrs-index") from exc
    right_type = array.dtype.kind == "S" if dtype is np.bytes_ else array.dtype == dtype
    if array.shape != shape or not right_type:
        raise CGRSInputError(f"index file {file} has shape {array.shape} ({array.dtype}), "
                             f"expected {shape} ({np.dtype(dtype).name})")
    if vectors:
        _check_vectors(array, file)
    if _array_digest(array) != sums.get(file.name):
        raise CGRSInputError(f"index file {file} does not match the checksum in {META}; rebuild it with cgrs-index")
    return array


def _load_block_texts(data: Path, name: str, count: int, meta: dict, sums: dict) -> BlockTexts:
    """A text column in zlib blocks: its block table checked by sha256, a sample of its blocks by crc32."""
    table = _load_block_table(data / f"{name}.blocks.npy", sums)
    texts = BlockTexts(data / f"{name}.z", table, count, meta["text_block_rows"][name],
                       meta[INFLATED].get(f"{name}.z"))
    texts.check_sample(_sample_rows(len(table)))
    return texts


def _load_raw_texts(data: Path, name: str, count: int, meta: dict, sums: dict) -> RawTexts:
    """An uncompressed text column: its row offsets checked as an array, its block table by sha256,
    a sample of its blocks by crc32."""
    ends = _load_array(data / f"{name}.ends.npy", (count,), np.int64, sums, vectors=False)
    table = _load_block_table(data / f"{name}.blocks.npy", sums)
    texts = RawTexts(data / f"{name}.utf8", ends, table, meta["text_block_rows"][name])
    texts.check_sample(_sample_rows(len(table)))
    return texts


def _load_block_table(table_file: Path, sums: dict) -> np.ndarray:
    raw = read_bytes(table_file, "index file")
    if _sha256(raw) != sums.get(table_file.name):
        raise CGRSInputError(f"index file {table_file} does not match the checksum in {META}; "
                             f"rebuild it with cgrs-index")
    try:
        table = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CGRSInputError(f"index file {table_file} is corrupt: {exc}") from exc
    if table.dtype != np.int64 or table.ndim != 2 or table.shape[1] != 2:
        raise CGRSInputError(f"index file {table_file} is corrupt: expected an int64 (blocks, 2) table")
    return table


def _checked_text(file: Path, sums: dict) -> str:
    data = read_bytes(file, "index file")
    if _sha256(data) != sums.get(file.name):
        raise CGRSInputError(f"index file {file} does not match the checksum in {META}; rebuild it with cgrs-index")
    return decode_text(data, file, "index file")


def _check_fingerprint(path: Path, built: dict, config: EngineConfig, captions: str) -> None:
    wanted = index_fingerprint(config, captions)
    for kind, options in built.items():
        for key, value in (options.items() if isinstance(options, dict) else ()):
            mine = wanted.get(kind, {}).get(key)
            # the index was built from a local file or folder the config's path no longer reaches:
            # the index is fine, the config is not (rebuilding would only fail, or use other weights)
            if isinstance(value, str) and value.startswith(("file:", "dir:")) and isinstance(mine, str) \
                    and not mine.startswith(("file:", "dir:")):
                raise CGRSInputError(f"engine config {config.source or ''}: {kind}.{key} is {mine!r}, which does "
                                     f"not exist (the index {path} was built from {value.split(':')[1]!r}); fix the path")
    diffs = fingerprint_differences(built, wanted)
    if diffs:
        raise CGRSInputError(f"index {path} was built with other models than the config "
                             f"{config.source or ''} asks for; rebuild it with cgrs-index or use the "
                             f"config it was built with. Differences: " + "; ".join(diffs))


# --- building ----------------------------------------------------------------------------------

class _Results:
    """Finished work by (image id, file state it was made from): its vectors and caption (a row of
    some pair of arrays; the caption None for a row made without one) or why the image was skipped;
    and ``logged``, the captions the live index's caption log holds.  Results for an older state of
    a file stay in but never match the current one."""

    def __init__(self):
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.found: dict[tuple[str, str], tuple] = {}
        self.logged: dict[tuple[str, str], str] = {}
        self.last_chunk = -1

    def get(self, image_id: str, source: str, captioned: bool):
        """(part, row, caption), (None, None, reason) for a skip, or None when not done yet (for a
        ``captioned`` build, a row made without a caption is not done)."""
        found = self.found.get((image_id, source))
        if captioned and found is not None and found[0] is not None and found[2] is None:
            return None
        return found

    def add_rows(self, image_array, caption_array, ids, sources, captions) -> None:
        self.parts.append((image_array, caption_array))
        part = len(self.parts) - 1
        for row, (image_id, source, caption) in enumerate(zip(ids, sources, captions)):
            self.found[image_id, source] = (part, row, caption)

    def add_skip(self, image_id: str, source: str, reason: str) -> None:
        self.found[image_id, source] = (None, None, reason)

    def add_index(self, index: GalleryIndex, key: str) -> None:
        """Rows, skips and logged captions (made under ``key``) of the live index, when its sources
        file is intact."""
        file = index.data_dir / SOURCES
        try:
            sources = parse_json(index.inflated(SOURCES).decode("utf-8"), str(file))
            rows, skipped = sources["rows"], sources["skipped"]
            ids = [index.image_id(row) for row in range(len(index))]
        except (CGRSInputError, KeyError, TypeError, zlib.error, UnicodeDecodeError):
            return  # nothing reused from it; it is replaced as a whole
        captions = index.captions if index.has_captions else [None] * len(ids)
        self.add_rows(index.image_embeddings, index.caption_embeddings, ids, rows, captions)
        for entry, source in zip(index.skipped, skipped):
            self.add_skip(entry["image_id"], source, entry["reason"])
        for row, caption in read_log(index.caption_log_file, key, index.image_id, len(index)).items():
            self.logged[ids[row], rows[row]] = caption

    def add_chunks(self, folder: Path, fingerprint: dict) -> None:
        """Chunks an interrupted build finished with the same models; a half-written one is ignored."""
        for file in sorted(folder.glob("chunk_[0-9][0-9][0-9][0-9][0-9].json")):
            self.last_chunk = max(self.last_chunk, int(file.name[6:11]))
            self.add_chunk(file, fingerprint)

    def add_chunk(self, file: Path, fingerprint: dict) -> bool:
        """The chunk whose JSON is ``file``; False (nothing added) when it is half-written or was
        made by other models."""
        try:
            chunk = parse_json(file.read_text(encoding="utf-8"), str(file))
            arrays = [np.load(file.with_suffix(s), mmap_mode="r", allow_pickle=False)
                      for s in (".image.npy", ".caption.npy")]
            if chunk["fingerprint"] != fingerprint or any(len(a) != len(chunk["items"]) for a in arrays):
                return False
            ids, sources, captions = zip(*chunk["items"]) if chunk["items"] else ((), (), ())
        except (OSError, ValueError, EOFError, KeyError, TypeError):
            return False
        self.add_rows(*arrays, ids, sources, captions)
        for image_id, source, reason in chunk["skipped"]:
            self.add_skip(image_id, source, reason)
        return True


def build_index(gallery: Gallery, config: EngineConfig, out_dir: str | Path, models=None,
                progress: bool = True, encoder=None) -> dict:
    """Make ``out_dir`` a complete index of ``gallery``; returns ``index.json``'s content plus
    ``encoded`` (images decoded and run through the models now), ``reused`` and ``up_to_date``.

    The live index in ``out_dir`` (if any) is replaced only by a complete new one; an index of the
    same gallery and models is left alone; results of the live index and of an interrupted build
    are reused for every image whose file is unchanged.  ``models`` (a
    :class:`~cgrs_ros.models.ModelSet`) may be passed to reuse loaded models; otherwise they are
    loaded from ``config`` when there is anything to encode, and released at the end.

    ``encoder`` replaces how the work is encoded (by default here, chunk after chunk): called as
    ``encoder(gallery, work, config, fingerprint, chunks, results, progress)``, it must write the
    chunks of ``work`` into ``chunks`` and add them to ``results``
    (:class:`cgrs_ros.distributed.RayEncoder` spreads them over a Ray cluster).  Everything
    else (what is reused, the lock, the commit) is the same.
    """
    from .models.device import apply_threads

    out_dir = Path(out_dir)
    settings, fingerprint = config.index, index_fingerprint(config)
    captioned = settings.captions == "all"
    apply_threads(config.threads)
    with _build_lock(out_dir):
        sources = [image_source(gallery, record, settings) for record in gallery.records]
        digest = _sha256(json.dumps([INDEX_FORMAT, fingerprint, settings.search, clause_table_key(config), str(gallery.root),
                                     [[r.to_json(), s] for r, s in zip(gallery.records, sources)]],
                                    sort_keys=True, ensure_ascii=False).encode())
        try:
            live = load_index(out_dir, config)
        except CGRSInputError:
            live = None
        if live is not None and live.meta.get("source_digest") == digest:
            _tidy(out_dir, live.meta["data"], committed=True)
            return dict(live.meta, encoded=0, reused=live.meta["count"], up_to_date=True)
        live_name = _live_data_name(out_dir)
        _tidy(out_dir, live_name, committed=False)
        _mark_format_1(out_dir)
        results = _Results()
        if live is not None:
            results.add_index(live, caption_key(config))
        chunks = out_dir / BUILD / "chunks"
        results.add_chunks(chunks, fingerprint)
        # (record, source, its logged caption or None): a captioned build captions only those without
        work = [(record, source, results.logged.get((record.image_id, source)) if captioned else None)
                for record, source in zip(gallery.records, sources)
                if source.startswith("file:") and results.get(record.image_id, source, captioned) is None]
        with clause_matcher(config) as matcher:     # loaded before hours of encoding: a missing model fails now
            if work:
                chunks.mkdir(parents=True, exist_ok=True)
                if encoder is None:
                    _encode(gallery, work, config, fingerprint, models, chunks, results, progress)
                else:
                    encoder(gallery, work, config, fingerprint, chunks, results, progress)
            meta = _finalise(gallery, config, out_dir, sources, results, digest, live_name,
                             ClauseInputs(matcher, live, progress is True))   # (a factory: no tqdm bar)
    return dict(meta, encoded=len(work), reused=len(gallery) - len(work), up_to_date=False)


@contextmanager
def _build_lock(out_dir: Path):
    """Hold ``out_dir/.lock`` for the whole build: a second build into the same folder is refused.

    The folder must be provably ours before anything in it is changed: an ``index.json`` of a cgrs
    index, or a ``.lock`` carrying our mark (written as soon as the lock is held, so a killed first
    build is resumed).  Otherwise it must be empty but for an empty ``.lock``: a build removes what no
    index refers to, and must never take a user's own ``data-2024/`` for a stale generation.  None of
    the names a build creates, removes or renames may be a symbolic link: it never writes or deletes
    through one (the lock is opened with ``O_NOFOLLOW``, every removal checks ``lstat``).

    The lock's open file is handed to the worker processes of a ``--workers`` build
    (:func:`held_build_lock`), so the folder stays locked while any of them lives."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CGRSInputError(f"index folder {out_dir} is a file, not a folder")
    if out_dir.is_dir():
        _refuse_links(out_dir)
        if not _ours(out_dir) and any(entry.name != LOCK or not _empty_file(entry) for entry in os.scandir(out_dir)):
            raise CGRSInputError(f"index folder {out_dir} holds other files and no cgrs index; choose a new or empty "
                                 f"folder (an unfinished build of an older cgrs-index: remove its {BUILD} and rerun)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(out_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link_error(out_dir, LOCK) from None
        raise CGRSInputError(f"cannot write the index folder {out_dir}: {exc.strerror or exc}") from exc
    key = str(out_dir.resolve())
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CGRSInputError(f"index folder {out_dir}: {LOCK} is {_file_kind(os.fstat(fd).st_mode)}, not a "
                                 f"file; remove it and rerun")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CGRSInputError(f"index folder {out_dir} is being built by another process (or by the worker "
                                 f"processes of a build that was killed); wait for it to finish or choose another "
                                 f"output folder") from None
        if os.pread(fd, len(LOCK_MARK) + 1, 0) != LOCK_MARK:
            os.ftruncate(fd, 0)
            os.pwrite(fd, LOCK_MARK, 0)
            os.fsync(fd)
        _HELD_LOCKS[key] = fd
        yield
    finally:
        _HELD_LOCKS.pop(key, None)
        os.close(fd)


def held_build_lock(out_dir: Path) -> int | None:
    """The file descriptor of the lock this process holds on the index folder ``out_dir`` (None when
    it holds none): worker processes given a duplicate of it keep the folder locked while they live."""
    return _HELD_LOCKS.get(str(Path(out_dir).resolve()))


def _ours(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds an ``index.json`` of a cgrs index or a ``.lock`` with our mark."""
    lock = out_dir / LOCK
    if _kind(lock) == "file":
        try:
            with open(lock, "rb") as handle:
                if handle.read(len(LOCK_MARK) + 1) == LOCK_MARK:
                    return True
        except OSError:
            pass
    if _kind(out_dir / META) != "file":
        return False
    try:
        meta = parse_json(read_text(out_dir / META, "index file"), META)
    except CGRSInputError:
        return False
    return isinstance(meta, dict) and isinstance(meta.get("format"), int) and "count" in meta


def _empty_file(entry: os.DirEntry) -> bool:
    return entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size == 0


def _kind(path: Path) -> str:
    """missing | link | dir | file | other, never following a link."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    return ("link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode)
            else "file" if stat.S_ISREG(mode) else "other")


def _link_error(out_dir: Path, name: str) -> CGRSInputError:
    try:
        target = os.readlink(out_dir / name)
    except OSError:
        target = "?"
    return CGRSInputError(f"index folder {out_dir}: {name} is a symbolic link (to {target}); cgrs-index never "
                          f"writes or deletes through a link: remove it and rerun")


def _refuse_links(out_dir: Path) -> None:
    """Refuse a folder where a name the build creates, removes or renames is a symbolic link."""
    names = [LOCK, META, BUILD, f"{BUILD}/chunks", f"{BUILD}/data", f"{BUILD}/{FORMAT_1_MARK}"]
    names += [entry.name for entry in os.scandir(out_dir) if _GENERATION.fullmatch(entry.name) or _TEMPORARY.fullmatch(entry.name)]
    for name in names:
        if _kind(out_dir / name) == "link":
            raise _link_error(out_dir, name)


def _remove(path: Path) -> None:
    """Remove ``path`` (a folder with all it holds), never following a link: a link is refused."""
    kind = _kind(path)
    if kind == "link":
        raise _link_error(path.parent, path.name)
    if kind == "dir":
        shutil.rmtree(path)     # removes links inside it, never what they point to
    elif kind != "missing":
        path.unlink()


def _live_data_name(out_dir: Path) -> str | None:
    """The data folder ``index.json`` names, even when the index is unusable: never delete that one."""
    try:
        name = json.loads((out_dir / META).read_text(encoding="utf-8")).get("data")
    except (OSError, ValueError, RecursionError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def _tidy(out_dir: Path, live_name: str | None, committed: bool) -> None:
    """Remove what no index refers to, and only names a build makes: other generations
    (``data-NNNN`` folders) and temporary files; once ``live_name`` is committed, also the files of a
    format-1 index it replaced (marked so at the start of the build) and the build's work.  Links are
    left alone (a build refuses to start with one in place of its names)."""
    for entry in os.scandir(out_dir):
        if _GENERATION.fullmatch(entry.name) and entry.name != live_name and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        elif _TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
    if committed:
        build = out_dir / BUILD
        if _kind(build) != "dir":
            return
        if _kind(build / FORMAT_1_MARK) == "file":
            for name in _FORMAT_1_FILES:
                if _kind(out_dir / name) != "link":
                    _remove(out_dir / name)
        shutil.rmtree(build)


def _mark_format_1(out_dir: Path) -> None:
    """Mark in the build's work that the folder holds a format-1 index, whose files (kept in the
    folder itself) are removed once the new index is committed."""
    try:
        old = json.loads((out_dir / META).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return
    if isinstance(old, dict) and old.get("format") == 1:
        write_atomic(out_dir / BUILD / FORMAT_1_MARK, lambda handle: None)


def _encode(gallery, work, config, fingerprint, models, chunks: Path, results: _Results, progress) -> None:
    """Encode ``work`` (record, source, caption) in chunks of ``index.chunk_size``, each saved
    atomically.  A build without captions loads the retriever alone."""
    own_models = models is None
    models = models or load_build_models(config)
    try:
        with progress_bar(gallery, work, progress) as bar:
            for stem, part in chunk_plan(work, config.index.chunk_size, chunks, results):
                _encode_chunk(gallery, part, models, config.index, fingerprint, stem, results, bar)
    finally:
        if own_models:
            models.close()


def load_build_models(config: EngineConfig):
    """The models a build runs: the retriever; for a captioned build the captioner, and the text
    model only where it stores caption vectors (a cross-encoder compares texts at query time, and a
    clause matcher's table is made once, from all captions, where the build commits: loading it here
    would only delay the start of the build and of each of its worker processes).

    A build encodes no query text, so the retriever's text side stays on torch: exporting and checking
    its ONNX text encoder only delayed each worker's start (bench/build_benchmark.py: 14.9 s, then
    12.3 s without it).  The text runtime changes no image vector and is not in the index fingerprint."""
    import inspect

    from .models import REGISTRIES, load_models

    retriever = REGISTRIES["retriever"].factory(config.model_spec("retriever").get("name"))
    if "text_runtime" in inspect.signature(retriever).parameters:
        config = replace(config, retriever={**config.retriever, "text_runtime": "torch"})
    kinds = ["retriever"]
    if config.index.captions == "all":
        kinds.append("captioner")
        matcher = REGISTRIES["text_similarity"].factory(config.model_spec("text_similarity").get("name"))
        if getattr(matcher, "embeds_captions", True):
            kinds.append("text_similarity")
    return load_models(config, tuple(kinds))


def chunk_plan(work: list, size: int, chunks: Path, results: _Results) -> list[tuple[Path, list]]:
    """(chunk file stem, its slice of ``work``): numbered on from the chunks already finished."""
    return [(chunks / f"chunk_{number:05d}", work[start:start + size])
            for number, start in enumerate(range(0, len(work), size), start=results.last_chunk + 1)]


def progress_bar(gallery: Gallery, work: list, progress) -> tqdm:
    """A bar over the gallery's images, starting at those already done (its rate and ETA are of this run).

    ``progress`` may also be a tqdm-like bar factory (called with total, initial, unit, desc), e.g. the
    ROS node's :class:`cgrs_ros.ros.log_bridge.ProgressLines`, which reports as log lines."""
    if callable(progress):
        return progress(total=len(gallery), initial=len(gallery) - len(work), unit="img", desc="indexing")
    return tqdm(total=len(gallery), initial=len(gallery) - len(work), unit="img", desc="indexing",
                disable=not progress, dynamic_ncols=True)


def _encode_chunk(gallery, work, models, settings: IndexSettings, fingerprint, stem: Path,
                  results: _Results, bar) -> None:
    """Decode, encode and caption one chunk batch by batch (the batch being encoded and the
    ``loader_threads`` batches being decoded are the only downscaled images in memory); write its
    arrays, then its JSON, which marks the chunk finished."""
    items, skipped, image_parts = [], [], []
    for batch, images, kept, unreadable in _decoded_batches(gallery, work, settings):
        skipped.extend(unreadable)
        if images:
            image_parts.append(models.retriever.encode_images(images))
            captions = _batch_captions(models.captioner, images, kept, settings)
            items.extend([r.image_id, s, c] for (r, s, _), c in zip(kept, captions))
        bar.update(len(batch))
    image_array = (np.concatenate(image_parts) if image_parts
                   else np.zeros((0, models.retriever.embedding_dim), np.float32))
    matcher = models.text_similarity    # None or 0-wide where it stores no caption vectors (load_build_models)
    width = matcher.embedding_dim if matcher is not None and settings.captions == "all" else 0
    caption_array = (matcher.encode([c for _, _, c in items]) if items and width and matcher.embeds_captions
                     else np.zeros((len(items), width), np.float32))
    image_array, caption_array = (np.asarray(a, dtype=np.float32) for a in (image_array, caption_array))
    _save_npy(stem.with_suffix(".image.npy"), image_array)
    _save_npy(stem.with_suffix(".caption.npy"), caption_array)
    write_text_atomic(stem.with_suffix(".json"), json.dumps(
        {"fingerprint": fingerprint, "items": items, "skipped": skipped}, ensure_ascii=False))
    ids, sources, captions = zip(*items) if items else ((), (), ())
    results.add_rows(image_array, caption_array, ids, sources, captions)
    for image_id, source, reason in skipped:
        results.add_skip(image_id, source, reason)


def _decoded_batches(gallery, work, settings: IndexSettings):
    """``work`` in batches of ``batch_size``: (batch, images, kept, skipped), each batch decoded in a
    background thread while the caller runs the models on the one before.

    Decoding and downscaling a photo costs as much as a small model's forward pass on it; PIL
    releases the GIL while it decodes, so on a 2-core machine the two overlap.  With
    ``loader_threads`` 0 the batches are decoded inline.
    """
    batches = [work[start:start + settings.batch_size] for start in range(0, len(work), settings.batch_size)]
    if settings.loader_threads == 0:
        for batch in batches:
            yield (batch, *_decode_batch(gallery, batch, settings))
        return
    with ThreadPoolExecutor(settings.loader_threads, thread_name_prefix="cgrs-decode") as pool:
        ahead = deque(pool.submit(_decode_batch, gallery, batch, settings)
                      for batch in batches[:settings.loader_threads])
        for number, batch in enumerate(batches):
            decoded = ahead.popleft().result()
            following = number + settings.loader_threads
            if following < len(batches):
                ahead.append(pool.submit(_decode_batch, gallery, batches[following], settings))
            yield (batch, *decoded)


def _decode_batch(gallery, batch, settings: IndexSettings) -> tuple[list, list, list]:
    """(images, the (record, source, caption) decoded, [image_id, source, reason] of the unreadable)."""
    images, kept, skipped = [], [], []
    for record, source, caption in batch:
        try:
            images.append(load_image(gallery.resolve(record), settings.max_image_side))
            kept.append((record, source, caption))
        except IMAGE_ERRORS as exc:
            skipped.append([record.image_id, source, str(exc)])
    return images, kept, skipped


def _batch_captions(captioner, images, kept, settings: IndexSettings) -> list[str | None]:
    """The captions of one batch of ``kept`` (record, source, caption): a caption it comes with
    (logged by a query) is kept, the others are made now; None for all when the index has none."""
    if settings.captions == "none":
        return [None] * len(kept)
    captions = [caption for _, _, caption in kept]
    todo = [n for n, caption in enumerate(captions) if caption is None]
    if todo:
        made = captioner.caption(views_for_captioner([images[n] for n in todo], [kept[n][0] for n in todo],
                                                     settings.rectify, settings.horizontal_platforms))
        for n, caption in zip(todo, made):
            captions[n] = caption
    return captions


def _save_npy(path: Path, array: np.ndarray) -> None:
    write_atomic(path, lambda handle: np.save(handle, array, allow_pickle=False))


def _finalise(gallery, config, out_dir: Path, sources, results: _Results, digest: str,
              live_name: str | None, clauses: "ClauseInputs") -> dict:
    """Assemble the next generation in ``.build/data``, move it beside the live one, and commit it
    by replacing ``index.json``; then remove the old generation and the build's work.

    The next generation's caption log starts with the logged captions of the rows it keeps, and,
    in an index without captions, with the captions its rows came with (from one with captions)."""
    captioned = config.index.captions == "all"
    rows, skipped, skipped_sources = [], [], []
    for record, source in zip(gallery.records, sources):
        found = results.get(record.image_id, source, captioned) if source.startswith("file:") else None
        if found is None or found[0] is None:
            reason = found[2] if found else source[len("skip:"):]
            skipped.append({"image_id": record.image_id, "path": record.path, "reason": reason})
            skipped_sources.append(source)
        else:
            rows.append((record, source) + found)
    if not rows:
        raise CGRSInputError(f"{gallery.source}: no gallery image could be read ({len(skipped)} skipped: "
                             f"{skipped[0]['path']}: {skipped[0]['reason']}, ...)")
    where = [(part, row) for _, _, part, row, _ in rows]
    files = {SOURCES: zlib.compress(json.dumps({"rows": [s for _, s, _, _, _ in rows], "skipped": skipped_sources},
                                               ensure_ascii=False).encode("utf-8"))}
    logged = []
    for n, (record, source, _, _, made) in enumerate(rows):
        caption = results.logged.get((record.image_id, source), None if captioned else made)
        if caption is not None:
            logged.append((n, record.image_id, caption))
    if logged:
        files[LOG_NAME] = log_lines(logged, caption_key(config))
    captions = [c for _, _, _, _, c in rows] if captioned else [""] * len(rows)
    caption_vectors = _gather(results, where, 1) if captioned else np.zeros((len(rows), 0), VECTOR_DTYPE)
    return _commit(out_dir, config, [r for r, _, _, _, _ in rows], captions, _gather(results, where, 0),
                   caption_vectors, skipped, live_name, files,
                   {"gallery_root": str(gallery.root), "gallery_source": gallery.source, "source_digest": digest},
                   clauses)


def write_index(out_dir: str | Path, config: EngineConfig, records: Sequence[GalleryRecord], captions: Sequence[str],
                image_vectors: np.ndarray, caption_vectors: np.ndarray, gallery_root: str | Path) -> dict:
    """Commit an index of the given rows (vectors already computed) into ``out_dir``, as a build
    would; returns ``index.json``'s content.  How ``bench/scale_benchmark.py`` makes indexes of a
    million rows without running the image models (a clause matcher still reads the captions into
    its table).  It keeps no sources, so a later build encodes every image."""
    out_dir = Path(out_dir)
    with _build_lock(out_dir):
        live_name = _live_data_name(out_dir)
        _tidy(out_dir, live_name, committed=False)
        _mark_format_1(out_dir)
        with clause_matcher(config) as matcher:
            return _commit(out_dir, config, records, captions, image_vectors, caption_vectors, [], live_name, {},
                           {"gallery_root": str(gallery_root), "gallery_source": ""}, ClauseInputs(matcher))


def _commit(out_dir: Path, config: EngineConfig, records, captions, image_vectors, caption_vectors,
            skipped: list[dict], live_name: str | None, extra_files: dict, fields: dict,
            clauses: "ClauseInputs") -> dict:
    files = generation_files(records, captions, image_vectors, caption_vectors, skipped)
    files.update(build_search_files(files["image_embeddings.npy"], config.index.search))
    files.update(extra_files)
    table_files, table_entry = _clause_table_files(captions, clauses)
    files.update(table_files)
    inflated = dict(files.pop(INFLATED, {}))
    for name in (SOURCES, clause_table.TEXTS):      # the builder's own bytes: their size, for the readers' bound
        if name in files:
            inflated[name] = len(zlib.decompress(files[name]))
    stage = out_dir / BUILD / "data"
    _remove(stage)
    stage.mkdir(parents=True)
    checksums = _write_files(stage, files)     # each file fsynced before it is renamed into the stage
    fsync_dir(stage)    # the stage's entries on disk before the folder is renamed: else a power cut could keep
    name = f"{DATA_PREFIX}{_generation(live_name) + 1:04d}"   # the rename and lose the files it names
    os.replace(stage, out_dir / name)
    fsync_dir(out_dir)  # the data folder is in place on disk before index.json can name it
    meta = {"format": INDEX_FORMAT, "fingerprint": index_fingerprint(config), "captions": config.index.captions,
            "count": len(records), "skipped": len(skipped), **fields,
            "image_dim": int(files["image_embeddings.npy"].shape[1]),
            "caption_dim": int(files["caption_embeddings.npy"].shape[1]), "text_block_rows": dict(TEXT_COLUMNS),
            "search": config.index.search, "engine": config.to_dict(), "data": name, "checksums": checksums,
            "inflated": inflated,
            **({"clause_table": table_entry} if table_entry is not None else {})}
    write_text_atomic(out_dir / META, json.dumps(meta, indent=1, ensure_ascii=False) + "\n")  # the commit
    fsync_dir(out_dir)
    _tidy(out_dir, name, committed=True)
    return meta


def clause_table_key(config: EngineConfig) -> dict | None:
    """The key of the clause table an index built from ``config`` holds; None when it holds none
    (an index without captions, or a matcher that does not read captions into clauses)."""
    from .models.text_similarity import TEXT_SIMILARITIES

    table_key = getattr(TEXT_SIMILARITIES.factory(config.text_similarity["name"]), "table_key", None)
    return table_key(config.text_similarity) if table_key is not None and config.index.captions == "all" else None


@contextmanager
def clause_matcher(config: EngineConfig):
    """The clause matcher that makes the clause table of an index built from ``config``, on torch
    (exact vectors, never int8; batches of clauses gain little from ONNX Runtime, which would first
    export and check the model), closed on leaving; None when the index holds no table."""
    from .models.text_similarity import TEXT_SIMILARITIES

    if clause_table_key(config) is None:
        yield None
        return
    matcher = TEXT_SIMILARITIES.build({**config.model_spec("text_similarity"), "text_runtime": "torch"})
    try:
        yield matcher
    finally:
        matcher.close()


@dataclass(frozen=True)
class ClauseInputs:
    """What the commit makes the clause table with: the matcher (None: no table), the live index
    whose table's clause vectors are reused, and whether to show progress."""

    matcher: object = None
    live: GalleryIndex | None = None
    progress: bool = False


def _clause_table_files(captions: Sequence[str], clauses: ClauseInputs) -> tuple[dict, dict | None]:
    """The clause table's files and ``index.json`` entry (:mod:`cgrs_ros.clause_table`), or nothing
    when the index holds none.  Clauses the live index's table already encoded under the same key
    are not encoded again."""
    matcher, live = clauses.matcher, clauses.live
    if matcher is None:
        return {}, None
    known = {}
    if live is not None and live.clause_table is not None and live.clause_table.key == matcher.clause_key:
        try:
            live.inflated(clause_table.TEXTS)        # refused unless within its recorded size
            known = clause_table.known_vectors(live.clause_table, live.read_file(clause_table.TEXTS))
        except (CGRSInputError, ValueError, zlib.error, UnicodeDecodeError):
            known = {}      # unreadable: every clause is encoded again
    table, texts = matcher.clause_table(list(captions), known, clauses.progress)
    entry = {"key": table.key, "clauses": len(texts), "relations": len(table.ids), "dim": int(table.vectors.shape[1])}
    return table.files(texts), entry


def generation_files(records: Sequence[GalleryRecord], captions: Sequence[str], image_vectors: np.ndarray,
                     caption_vectors: np.ndarray, skipped: list[dict]) -> dict:
    """File name -> content (an array for ``.npy`` files, else bytes) of one generation's rows:
    vectors as float16, records as typed columns plus compressed detail blocks, captions as raw
    UTF-8.  :data:`SOURCES` (what each row was made from) is the builder's to add."""
    columns, places, details = record_columns(records)
    files = {"image_embeddings.npy": np.asarray(image_vectors, dtype=VECTOR_DTYPE),
             "caption_embeddings.npy": np.asarray(caption_vectors, dtype=VECTOR_DTYPE),
             **{f"{name}.npy": column for name, column in columns.items()},
             "places.json": json.dumps(places, ensure_ascii=False).encode("utf-8"),
             "skipped.json": (json.dumps(skipped, indent=1, ensure_ascii=False) + "\n").encode("utf-8")}
    blob, ends, table = encode_raw_texts(list(captions), TEXT_COLUMNS["captions"])
    files.update({"captions.utf8": blob, "captions.ends.npy": ends, "captions.blocks.npy": _npy_bytes(table)})
    blob, table, largest = encode_text_blocks(details, TEXT_COLUMNS["details"])
    files.update({"details.z": blob, "details.blocks.npy": _npy_bytes(table)})
    files[INFLATED] = {"details.z": largest}
    return files


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write_files(folder: Path, files: dict) -> dict:
    """Write each file atomically; returns the checksums ``index.json`` keeps (sampled for arrays,
    caption offsets included; none for the text blobs ``.z`` and ``.utf8``, whose blocks carry their
    own crc32 in the checksummed block tables, nor for the caption log, which grows and checks each
    line)."""
    checksums = {}
    for name, content in files.items():
        if isinstance(content, np.ndarray):
            _save_npy(folder / name, content)
            checksums[name] = _array_digest(content)
        else:
            write_atomic(folder / name, lambda handle, content=content: handle.write(content))
            if not name.endswith((".z", ".utf8")) and name != LOG_NAME:
                checksums[name] = _sha256(content)
    return checksums


def _gather(results: _Results, where: list[tuple[int, int]], which: int) -> np.ndarray:
    """Rows (part, row) of the image (0) or caption (1) arrays of ``results``, in order."""
    width = results.parts[where[0][0]][which].shape[1]
    out = np.empty((len(where), width), VECTOR_DTYPE)
    parts = np.array([p for p, _ in where])
    rows = np.array([r for _, r in where])
    for part in np.unique(parts):
        mine = np.flatnonzero(parts == part)
        out[mine] = results.parts[part][which][rows[mine]]
    return out


def _generation(name: str | None) -> int:
    try:
        return int(name[len(DATA_PREFIX):]) if name else 0
    except ValueError:
        return 0
