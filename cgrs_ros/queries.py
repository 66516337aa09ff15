"""Language queries with their ground-truth place, for evaluation and batch runs.

``queries.jsonl``: one object per line, ``{"query_id": "q00001", "text": "...", "place_id": "p0007"}``;
``place_id`` may be null when the answer is unknown (then the query can be ranked but not scored).
The RoboSense Track 4 query file (``q_00001<TAB>text``) is read by :mod:`cgrs_ros.formats.robosense`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import CGRSInputError
from .jsonl import check_text, read_jsonl


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str
    place_id: str | None = None

    def to_json(self) -> dict:
        return {"query_id": self.query_id, "text": self.text, "place_id": self.place_id}


def validate_query_text(text: object, where: str = "query") -> str:
    """Strip and check a query; an empty one is refused (it would rank the gallery at random)."""
    if not isinstance(text, str):
        raise CGRSInputError(f"{where}: query text must be a string, got {type(text).__name__}")
    text = " ".join(check_text(text, where).split())
    if not text:
        raise CGRSInputError(f"{where}: the query text is empty")
    return text


def read_queries(path: str | os.PathLike) -> list[Query]:
    path = Path(path)
    queries, seen = [], set()
    for where, row in read_jsonl(path, "query file"):
        if not isinstance(row, dict) or not isinstance(row.get("query_id"), str):
            raise CGRSInputError(f"{where}: expected an object with a string 'query_id'")
        if row["query_id"] in seen:
            raise CGRSInputError(f"{where}: duplicate query_id {row['query_id']!r}")
        seen.add(row["query_id"])
        place = row.get("place_id")
        if place is not None and not isinstance(place, str):
            raise CGRSInputError(f"{where}: 'place_id' must be a string or null")
        queries.append(Query(row["query_id"], validate_query_text(row.get("text"), where), place))
    if not queries:
        raise CGRSInputError(f"{path}: no queries")
    return queries


def write_queries(queries, path: str | os.PathLike) -> Path:
    from .gallery import write_text_atomic
    text = "".join(json.dumps(q.to_json(), ensure_ascii=False) + "\n" for q in queries)
    return write_text_atomic(Path(path), text)
