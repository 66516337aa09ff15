"""The gallery: geo-tagged images of places, and the manifest file that describes them.

Manifest format (``manifest.jsonl``, JSON Lines, UTF-8, one object per image)::

    {"image_id": "p0007_drone_02", "path": "images/p0007_drone_02.png", "place_id": "p0007",
     "platform": "drone", "lat": 47.3712, "lon": 8.5421, "alt": 120.0, "heading": 45.0,
     "descriptions": ["..."], ...any other keys...}

- ``image_id``   unique string; what rankings and submissions report.
- ``path``       image file, relative to the manifest's folder (absolute paths and ``..`` that leave
                 the gallery folder are refused: an index must never read outside its gallery).
- ``place_id``   the target the image shows (a building, a site); all images of one place are
                 positives for a query about it (place-level recall, as in GeoText-1652).
- ``platform``   ``drone`` | ``satellite`` | ``ground``.
- ``lat``, ``lon`` WGS-84 degrees; ``alt`` metres above the ellipsoid; ``heading`` degrees clockwise
                 from north (the camera's yaw).  Each key must be present; its value must be a number,
                 or ``null`` for "not geo-tagged" (GeoText-1652 has no GPS).  A record with null
                 coordinates can be retrieved but never becomes a navigation target.
- any other key is kept in ``extras`` and written back unchanged.  Optional keys read by the navigation
  targets (:mod:`cgrs_ros.targets`): ``place_lat``/``place_lon`` (the place's own WGS-84 position),
  ``ground_alt`` (its ground's height above the ellipsoid, m) and ``tilt`` (camera degrees from nadir:
  0 straight down, 90 horizontal).  The procedural world writes all four on every view.
"""
from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from .errors import CGRSInputError
from .geo import ALTITUDE_RANGE_M, LATITUDE_RANGE, LONGITUDE_RANGE
from .jsonl import read_jsonl

PLATFORMS = ("drone", "satellite", "ground")
GEO_FIELDS = ("lat", "lon", "alt", "heading")
_CORE_FIELDS = ("image_id", "path", "place_id", "platform") + GEO_FIELDS
_GEO_RANGES = {"lat": LATITUDE_RANGE, "lon": LONGITUDE_RANGE, "alt": ALTITUDE_RANGE_M,
               "heading": (-360.0, 360.0)}


@dataclass(frozen=True)
class GalleryRecord:
    """One gallery image and where it was taken."""

    image_id: str
    path: str
    place_id: str
    platform: str
    lat: float | None
    lon: float | None
    alt: float | None
    heading: float | None
    extras: dict = field(default_factory=dict, compare=False)

    @property
    def has_geo(self) -> bool:
        """True when the record can be turned into a navigation target."""
        return self.lat is not None and self.lon is not None

    def to_json(self) -> dict:
        row = {name: getattr(self, name) for name in _CORE_FIELDS}
        row.update(self.extras)
        return row


def parse_record(row: object, where: str) -> GalleryRecord:
    """Validate one manifest object; ``where`` names the file and row in every error."""
    if not isinstance(row, dict):
        raise CGRSInputError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for name in ("image_id", "path", "place_id", "platform"):
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            raise CGRSInputError(f"{where}: field '{name}' is missing or not a non-empty string")
    if row["platform"] not in PLATFORMS:
        raise CGRSInputError(
            f"{where}: field 'platform' is {row['platform']!r}; expected one of {', '.join(PLATFORMS)}")
    geo = {}
    for name in GEO_FIELDS:
        if name not in row:
            raise CGRSInputError(f"{where}: field '{name}' is missing (use null if unknown)")
        geo[name] = _parse_coordinate(row[name], name, where)
    if (geo["lat"] is None) != (geo["lon"] is None):
        raise CGRSInputError(f"{where}: 'lat' and 'lon' must both be numbers or both be null")
    extras = {k: v for k, v in row.items() if k not in _CORE_FIELDS}
    return GalleryRecord(row["image_id"], row["path"], row["place_id"], row["platform"],
                         extras=extras, **geo)


def _parse_coordinate(value: object, name: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CGRSInputError(f"{where}: field '{name}' is {value!r}, not a number")
    try:
        value = float(value)
    except OverflowError:  # a JSON integer with hundreds of digits
        raise CGRSInputError(f"{where}: field '{name}' is an integer too large for a coordinate") from None
    low, high = _GEO_RANGES[name]
    if not math.isfinite(value) or not low <= value <= high:
        raise CGRSInputError(f"{where}: field '{name}' = {value} is outside [{low}, {high}]")
    return value


class Gallery:
    """An ordered, validated set of records whose image paths all lie inside ``root``."""

    def __init__(self, records: Iterable[GalleryRecord], root: str | os.PathLike, source: str = "",
                 locations: list[str] | None = None):
        """``locations`` (one per record, e.g. ``file:row``) names the culprit in every error."""
        self.root = Path(root).resolve()
        self.source = source or str(self.root)
        self.records: list[GalleryRecord] = list(records)
        if not self.records:
            raise CGRSInputError(f"{self.source}: the gallery is empty")
        locations = locations or [self.source] * len(self.records)
        seen: set[str] = set()
        for record, where in zip(self.records, locations):
            if record.image_id in seen:
                raise CGRSInputError(f"{where}: duplicate image_id {record.image_id!r}")
            seen.add(record.image_id)
            self.resolve(record, where)  # refuses paths that leave the gallery folder

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[GalleryRecord]:
        return iter(self.records)

    def resolve(self, record: GalleryRecord, where: str = "") -> Path:
        """Absolute image path, refusing anything outside the gallery folder."""
        return resolve_inside(self.root, record, where or self.source)

    @property
    def place_ids(self) -> list[str]:
        return [record.place_id for record in self.records]


def resolve_inside(root: Path, record: GalleryRecord, where: str) -> Path:
    """``root / record.path``, refusing absolute paths and ``..`` (or links) that leave ``root``."""
    candidate = Path(record.path)
    try:
        full = (root / candidate).resolve()
    except (ValueError, OSError, RuntimeError) as exc:  # a NUL byte in the path, a symlink loop
        raise CGRSInputError(f"{where}: image {record.image_id!r} has an unusable path {record.path!r}: {exc}") from exc
    if candidate.is_absolute() or root not in full.parents:
        raise CGRSInputError(f"{where}: image {record.image_id!r} has path {record.path!r}, "
                             f"which leaves the gallery folder {root}")
    return full


def read_manifest(path: str | os.PathLike) -> Gallery:
    """Load and validate a ``manifest.jsonl``; image paths are relative to its folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.jsonl"
    records, locations = [], []
    for where, row in read_jsonl(path, "gallery manifest"):
        records.append(parse_record(row, where))
        locations.append(where)
    return Gallery(records, path.parent, source=str(path), locations=locations)


def write_manifest(records: Iterable[GalleryRecord], path: str | os.PathLike) -> Path:
    """Write records as JSON Lines, atomically (a reader never sees half a manifest)."""
    path = Path(path)
    text = "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records)
    return write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write through a temporary file in the same folder and rename it into place."""
    return write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, flush it to disk and rename it over
    ``path``: a reader (or a rerun after a kill) sees the old file or the new one, never half of one.
    The temporary file is removed when writing fails (a full disk must not leave litter behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        # O_NOFOLLOW: a link planted at the temporary name is refused, never written through
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (a power cut must not undo it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
