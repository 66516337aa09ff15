"""JSON Lines files (manifests, query sets, index records): read with file:line in every error."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from .errors import CGRSInputError


def read_jsonl(path: Path, what: str) -> Iterator[tuple[str, object]]:
    """Yield ``("file:line", parsed object)`` for each non-blank line; ``what`` names the file kind."""
    try:
        # split on newlines only: JSON may legally hold U+2028 and friends that splitlines() breaks on
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as exc:
        raise CGRSInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CGRSInputError(f"{what} {path} is not UTF-8 text: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as exc:
            raise CGRSInputError(f"{where}: not valid JSON ({exc.msg})") from exc
