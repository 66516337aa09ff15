"""JSON and JSON Lines files (manifests, query sets, index files): read with file:line in every error.

Every parse goes through :func:`parse_json`, so hostile input (a 100,000-deep ``[[[[...``, which makes
the json module raise ``RecursionError``) is reported like any other malformed line, not as a crash.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from .errors import CGRSInputError


def parse_json(text: str, where: str) -> object:
    """``json.loads`` with any failure turned into one :class:`CGRSInputError` naming ``where``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CGRSInputError(f"{where}: not valid JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise CGRSInputError(f"{where}: not valid JSON (nested too deeply)") from exc


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; ``what`` names the file kind in the error."""
    return decode_text(read_bytes(path, what), path, what)


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CGRSInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def decode_text(data: bytes, path: Path, what: str) -> str:
    try:
        return data.decode("utf-8-sig")       # a byte-order mark (Windows editors) is not content
    except UnicodeDecodeError as exc:
        raise CGRSInputError(f"{what} {path} is not UTF-8 text: {exc}") from exc


def read_json(path: Path, what: str) -> object:
    """One JSON document (index.json, skipped.json, ...)."""
    return parse_json(read_text(path, what), f"{what} {path}")


def read_jsonl(path: Path, what: str) -> Iterator[tuple[str, object]]:
    """Yield ``("file:line", parsed object)`` for each non-blank line; ``what`` names the file kind."""
    return iter_jsonl(read_text(path, what), path)


def iter_jsonl(text: str, path: Path) -> Iterator[tuple[str, object]]:
    """The lines of JSON Lines ``text`` read from ``path`` (for callers that also checksum the bytes)."""
    # split on newlines only: JSON may legally hold U+2028 and friends that splitlines() breaks on
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            where = f"{path}:{number}"
            yield where, parse_json(line, where)
