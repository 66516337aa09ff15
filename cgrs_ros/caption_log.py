"""Captions made at query time, kept in an append-only log so that a restart never makes them again.

Captioning is the expensive stage (a vision-language model call per image).  An index built with
``index.captions: none``, or queried in ``online`` mode, captions candidates when a query first
needs them; each of those captions is appended to ``caption_log.jsonl`` in the index generation it
was made for (``data-NNNN/``), one JSON line per caption (keys sorted, ASCII)::

    {"caption": "...", "image_id": "p0007_drone_02", "key": "9f2c...", "row": 1234, "sum": "1a2b3c4d"}

- ``row`` and ``image_id`` name the generation's row; both must agree with the index, so a log
  beside another generation is never misread;
- ``key`` is :func:`cgrs_ros.fingerprint.caption_key`, what the caption's text depends on (the
  captioner and how it saw the image): lines of another captioner are ignored, never served;
- ``sum`` is the crc32 of the line's other fields, so a line damaged anywhere is recognised.

Crash safety: a batch of captions is written by one ``write`` to the file opened for appending,
then ``fsync``-ed, under an exclusive ``flock`` (a node and a ``cgrs-query`` may share an index).
A kill or power cut mid-write leaves at most a torn last line: a reader skips any line that does
not parse or check, with a warning, never an error; a writer that finds the file not ending in a
newline starts a new line first, so a torn piece never swallows the next good line.  Nothing is
rewritten in place.

Generations: the log lives in its ``data-NNNN/`` folder and goes away with it.  A rebuild carries
the logged captions of the rows it keeps into the next generation's log, or folds them into the
caption column when it captions every image (:func:`cgrs_ros.index.build_index`).  Captions logged
while a rebuild runs, after it read the log, are made once more later.

Writing is best effort: a read-only or full index folder costs the persistence (one warning; the
captions stay in the engine's memory), never a query.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import zlib
from pathlib import Path
from typing import Callable, Iterable

from .gallery import fsync_dir

LOG_NAME = "caption_log.jsonl"
_log = logging.getLogger(__name__)


def log_lines(entries: Iterable[tuple[int, str, str]], key: str) -> bytes:
    """The log lines of ``entries`` (row, image id, caption), made under ``key``."""
    lines = []
    for row, image_id, caption in entries:
        fields = {"caption": caption, "image_id": image_id, "key": key, "row": int(row)}
        fields["sum"] = _checksum(fields)
        lines.append(json.dumps(fields, sort_keys=True) + "\n")
    return "".join(lines).encode("ascii")


def _checksum(fields: dict) -> str:
    return f"{zlib.crc32(json.dumps(fields, sort_keys=True).encode('ascii')):08x}"


def read_log(file: Path, key: str, image_id: Callable[[int], str], count: int) -> dict[int, str]:
    """Captions by row from the log ``file`` (none when there is no log) of an index of ``count``
    rows whose row ``r`` has the id ``image_id(r)``.  Damaged lines (torn, corrupt, naming no row
    of this index) are skipped with one warning; lines of another ``key`` are skipped too."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        _log.warning("cannot read the caption log %s (%s): its captions will be made again",
                     file, exc.strerror or exc)
        return {}
    captions, damaged, stale = {}, [], 0
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            fields = json.loads(line)
            if not isinstance(fields, dict) or fields.pop("sum", None) != _checksum(fields):
                raise ValueError("checksum mismatch")
            if fields["key"] != key:
                stale += 1
                continue
            row = fields["row"]
            if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < count \
                    or fields["image_id"] != image_id(row) or not isinstance(fields["caption"], str):
                raise ValueError("names no row of this index")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            damaged.append(f"line {number}: {exc}")
            continue
        captions[row] = fields["caption"]
    if damaged:
        _log.warning("caption log %s: skipped %d damaged or torn line(s) (%s); read %d caption(s)",
                     file, len(damaged), damaged[0], len(captions))
    if stale:
        _log.info("caption log %s: skipped %d caption(s) of another captioner", file, stale)
    return captions


class CaptionLog:
    """Appends captions to one generation's log (see the module docstring); thread-safe.

    ``file`` None keeps nothing (an index assembled in memory has no folder)."""

    def __init__(self, file: Path | None, key: str):
        self.file, self.key = file, key
        self._lock = threading.Lock()
        self._writable = file is not None

    def read(self, image_id: Callable[[int], str], count: int) -> dict[int, str]:
        return read_log(self.file, self.key, image_id, count) if self.file is not None else {}

    def append(self, entries: list[tuple[int, str, str]]) -> None:
        """Append ``entries`` (row, image id, caption) durably; after a failure, warn once and stop."""
        data = log_lines(entries, self.key)
        with self._lock:
            if not (self._writable and data):
                return
            try:
                _append(self.file, data)
            except OSError as exc:
                self._writable = False
                _log.warning("cannot write the caption log %s (%s): captions made now are kept in memory "
                             "only and will be made again after a restart", self.file, exc.strerror or exc)


def _append(file: Path, data: bytes) -> None:
    fd = os.open(file, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)   # released by the close
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data          # end a torn last line first
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if not size:
        fsync_dir(file.parent)           # a new file's name is on disk too
