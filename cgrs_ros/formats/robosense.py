"""RoboSense 2025 Track 4 (language-guided drone image retrieval): gallery, queries, submission.

- Gallery: a folder of ``image_<hex>.jpeg`` (flat as released; nested folders are read too, as the
  official tool reads them; the image id is the file name without extension, so it must be unique).
  The public release has no ground truth, so every image is its own target
  (``place_id == image_id``); platform ``drone``; no geo (all ``null``).  Scoring against a
  ground truth: :mod:`cgrs_ros.track4_scoring`.
- Queries: UTF-8 text, one ``q_00001<TAB>text`` per line (blank lines skipped); an id already in
  the submission form ``q1`` is accepted as well.
- Submission (``submission.txt``): one line per query, ``q1 image_a ... image_j``: the query id
  without underscore and leading zeros, then the top-10 image ids (file names without extension),
  separated by single spaces.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import CGRSInputError
from ..gallery import GEO_FIELDS, Gallery, GalleryRecord, write_text_atomic
from ..jsonl import check_text, read_text
from ..queries import Query, validate_query_text

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_QUERY_ID_RE = re.compile(r"q_?([0-9]{1,18})")    # the challenge's are q_00001 ...


def load_track4_gallery(folder: str | os.PathLike) -> Gallery:
    """Every ``*.jpeg|*.jpg|*.png`` under ``folder``, nested folders included (sorted by path;
    hidden files and folders skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CGRSInputError(f"Track 4 gallery folder {folder} does not exist or is not a folder")
    files = sorted((p for p in folder.rglob("*")
                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(folder).parts)),
                   key=lambda p: p.relative_to(folder).parts)
    if not files:
        raise CGRSInputError(
            f"Track 4 gallery folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    records, seen = [], {}
    for file in files:
        path = file.relative_to(folder).as_posix()
        check_text(path, f"Track 4 gallery folder {folder}: file name")
        if file.stem in seen:
            raise CGRSInputError(f"{folder}: {seen[file.stem]} and {path} both give image id "
                                 f"{file.stem!r}; a submission could not tell them apart")
        seen[file.stem] = path
        records.append(GalleryRecord(file.stem, path, file.stem, "drone",
                                     **{name: None for name in GEO_FIELDS}))
    return Gallery(records, folder, source=str(folder))


def load_track4_queries(path: str | os.PathLike) -> list[Query]:
    """Queries of a Track 4 query file; every bad line is refused with ``file:line`` and the reason."""
    path = Path(path)
    lines = read_text(path, "Track 4 query file").splitlines()
    queries: list[Query] = []
    seen: dict[str, int] = {}        # query id -> line
    submitted: dict[str, int] = {}   # submission id ("q1") -> line
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        query_id, tab, text = line.partition("\t")
        if not tab:
            raise CGRSInputError(f"{where}: expected 'q_<digits><TAB><text>', found no TAB "
                                 f"in {line[:60]!r}")
        if not _QUERY_ID_RE.fullmatch(query_id):
            raise CGRSInputError(f"{where}: query id {query_id[:40]!r} is not 'q_<digits>' (or 'q<digits>', at most 18 digits)")
        text = validate_query_text(text, where)
        if query_id in seen:
            raise CGRSInputError(f"{where}: duplicate query id {query_id!r} (first on line "
                                 f"{seen[query_id]})")
        short = submission_query_id(query_id)
        if short in submitted:
            raise CGRSInputError(f"{where}: query id {query_id!r} and the one on line "
                                 f"{submitted[short]} both become {short!r} in a submission")
        seen[query_id] = submitted[short] = number
        queries.append(Query(query_id, text, None))
    if not queries:
        raise CGRSInputError(f"{path}: no queries")
    return queries


def is_track4_query_id(value: object) -> bool:
    """``q_00001`` or ``q1``."""
    return isinstance(value, str) and _QUERY_ID_RE.fullmatch(value) is not None


def submission_query_id(query_id: str) -> str:
    """``"q_00001"`` -> ``"q1"`` (underscore and leading zeros dropped); ``"q1"`` stays ``"q1"``."""
    match = _QUERY_ID_RE.fullmatch(query_id) if isinstance(query_id, str) else None
    if match is None:
        shown = query_id[:40] if isinstance(query_id, str) else query_id
        raise CGRSInputError(f"query id {shown!r} is not a Track 4 id ('q_<digits>' or 'q<digits>')")
    return f"q{match.group(1).lstrip('0') or '0'}"   # as int() would, for ids of any length


def read_track4_submission(path: str | os.PathLike) -> list[tuple[str, list[str]]]:
    """(query id, ranked image ids) per line of a ``submission.txt``, in file order.

    Lenient where the format is (any whitespace between ids, blank lines skipped, any number of
    ids), strict where a score would be wrong: a line without image ids, a query given twice, or
    an id that is not a Track 4 query id is refused with ``file:line``.
    """
    path = Path(path)
    lines = read_text(path, "submission").splitlines()
    rankings, seen = [], {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if not is_track4_query_id(fields[0]):
            raise CGRSInputError(f"{where}: {fields[0][:40]!r} is not a query id ('q1' or 'q_00001')")
        short = submission_query_id(fields[0])
        if short in seen:
            raise CGRSInputError(f"{where}: query {short!r} is ranked again (first on line {seen[short]})")
        if len(fields) == 1:
            raise CGRSInputError(f"{where}: query {short!r} has no ranked image ids")
        seen[short] = number
        rankings.append((short, fields[1:]))
    if not rankings:
        raise CGRSInputError(f"submission {path} holds no rankings")
    return rankings


def write_track4_submission(
        rankings: Mapping[str, list[str]] | Iterable[tuple[str, list[str]]],
        path: str | os.PathLike, top: int = 10) -> Path:
    """Write ``submission.txt`` atomically, queries in the given order, ``top`` image ids each.

    Refused (nothing written): a ranking shorter than ``top``, a repeated image id, an image id that
    is empty, holds whitespace or still has its file extension, a repeated query, no queries.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise CGRSInputError(f"submission: top must be a positive integer, got {top!r}")
    items = list(rankings.items()) if isinstance(rankings, Mapping) else list(rankings)
    if not items:
        raise CGRSInputError("submission: no rankings to write")
    lines, seen = [], {}
    for entry in items:
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise CGRSInputError(f"submission: expected (query_id, image_ids) pairs, got {entry!r}")
        query_id, ranking = entry
        short = submission_query_id(query_id)
        if short in seen:
            raise CGRSInputError(f"submission: query {query_id!r} appears twice "
                                 f"(as {seen[short]!r} too)")
        seen[short] = query_id
        if isinstance(ranking, str) or not isinstance(ranking, (list, tuple)):
            raise CGRSInputError(f"submission: the ranking of query {query_id!r} must be a list of "
                                 f"image ids, got {type(ranking).__name__}")
        if len(ranking) < top:
            raise CGRSInputError(f"submission: query {query_id!r} has {len(ranking)} ranked images; "
                                 f"a submission needs {top}")
        for image_id in ranking:
            if not isinstance(image_id, str) or not image_id or image_id != "".join(image_id.split()):
                raise CGRSInputError(f"submission: query {query_id!r} ranks {image_id!r}, not an "
                                     "image id (a non-empty string without whitespace)")
            if image_id.lower().endswith(IMAGE_SUFFIXES):
                raise CGRSInputError(f"submission: query {query_id!r} ranks {image_id!r}; write image "
                                     "ids without the file extension")
        if len(set(ranking)) != len(ranking):
            repeated = sorted({i for i in ranking if ranking.count(i) > 1})
            raise CGRSInputError(f"submission: query {query_id!r} ranks {', '.join(repeated)} "
                                 "more than once")
        lines.append(" ".join([short, *ranking[:top]]) + "\n")
    return write_text_atomic(Path(path), "".join(lines))
