"""JSON and JSON Lines files (manifests, query sets, index files): read with file:line in every error.

Every parse goes through :func:`parse_json`, so hostile input (a 100,000-deep ``[[[[...``, which makes
the json module raise ``RecursionError``) is reported like any other malformed line, not as a crash.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Iterator

from .errors import CGRSInputError


def parse_json(text: str, where: str, position: bool = False) -> object:
    """``json.loads`` with any failure turned into one :class:`CGRSInputError` naming ``where``
    (and the line and column of a syntax error when ``position``).

    Also refused: an integer of more digits than Python converts (4,300: ``json`` raises a bare
    ``ValueError``), and a string holding a lone surrogate (a ``\\ud800`` escape, which ``json``
    accepts but no UTF-8 file, column or log can hold)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        at = f":{exc.lineno}:{exc.colno}" if position else ""
        raise CGRSInputError(f"{where}{at}: not valid JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise CGRSInputError(f"{where}: not valid JSON (nested too deeply)") from exc
    except ValueError as exc:
        raise CGRSInputError(f"{where}: holds an integer of more than {MAX_DIGITS} digits") from exc
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        check_utf8(value, where)
    return value


MAX_DIGITS = getattr(sys, "get_int_max_str_digits", lambda: 4300)() or 4300
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def check_utf8(value: object, where: str) -> None:
    """Refuse any string (key or value, at any depth) of ``value`` that UTF-8 cannot hold."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, str):
            check_text(item, where)


def check_text(text: str, where: str) -> str:
    """``text``, refused when UTF-8 cannot hold it (a lone surrogate: a JSON escape, or a name or
    argument that was not UTF-8 and was decoded with ``surrogateescape``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CGRSInputError(f"{where}: text {text[:40]!r} is not valid UTF-8 (a lone surrogate "
                             f"{text[exc.start]!r} at character {exc.start})") from None
    return text


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
