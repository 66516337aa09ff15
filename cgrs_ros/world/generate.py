"""Generate a whole world folder: images, manifest, queries, world.json (and optionally GeoText).

Determinism: every random draw comes from a numpy Generator seeded with (seed, purpose, place,
view), so a file depends only on the seed and the options that shape it, PNG encoding is
lossless and deterministic, and nothing records a time or a path; same seed + options give
byte-identical files.  Separate streams per view also mean that, e.g., turning the ground view
off leaves every aerial image unchanged.

Atomicity: everything is written into a hidden sibling folder that replaces ``out_dir`` only at
the end, so a killed run never leaves a manifest that names missing images.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import CGRSInputError
from ..gallery import GalleryRecord, write_manifest, write_text_atomic
from ..queries import write_queries
from .captions import describe
from ..geo import DEMO_DATUM as DEFAULT_DATUM, Datum, enu_to_geodetic
from .geotext_export import export_geotext
from .ground import ground_camera, ground_view
from .layout import Place, build_places
from .query_text import make_queries, make_relation_queries
from .scene import paint_scene
from .views import View, drone_cameras, drone_view, satellite_view

GENERATOR_VERSION = "1.0.0"
_SCENE, _POSES, _VIEW, _CAPTION, _QUERIES, _RELATIONS = 2, 3, 4, 5, 6, 7     # random stream purposes
RELATION_QUERIES = "relation_queries.jsonl"   # two neighbour-side facts that fit exactly one place
_GROUND_VIEW = 1000                                          # view code of the ground image


@dataclass(frozen=True)
class WorldSpec:
    """What a world is made of; ``seed`` alone decides its content."""

    seed: int
    n_places: int
    views_drone: int = 8
    ground: bool = True
    size: int = 128
    queries_per_place: int = 3
    datum: Datum = DEFAULT_DATUM

    def __post_init__(self):
        if not 1 <= self.n_places <= 9999:
            raise CGRSInputError(f"places must be 1..9999 (ids have 4 digits), got {self.n_places}")
        if not 0 <= self.views_drone <= 99:
            raise CGRSInputError(f"drone views must be 0..99 per place, got {self.views_drone}")
        if not 32 <= self.size <= 1024:
            raise CGRSInputError(f"image size must be 32..1024 pixels, got {self.size}")
        if self.queries_per_place < 1:
            raise CGRSInputError(f"queries per place must be at least 1, got {self.queries_per_place}")
        if self.seed < 0:
            raise CGRSInputError(f"seed must be a non-negative integer, got {self.seed}")

    @property
    def images_per_place(self) -> int:
        return 1 + self.views_drone + int(self.ground)


def generate_world(out_dir, seed: int, n_places: int, views_drone: int = 8, ground: bool = True,
                   size: int = 128, queries_per_place: int = 3, geotext: bool = False,
                   progress: bool = True) -> Path:
    """Write a world into ``out_dir`` (replacing an earlier world there) and return ``out_dir``."""
    spec = WorldSpec(seed, n_places, views_drone, ground, size, queries_per_place)
    out = Path(out_dir)
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "images").mkdir(parents=True)
        places = build_places(spec.seed, spec.n_places, spec.datum)
        records = []
        with tqdm(total=spec.n_places * spec.images_per_place, unit="img", desc=f"world seed={seed}",
                  disable=not progress) as bar:
            for place in places:
                for view in render_place(place, spec):
                    record = _record(place, view, spec)
                    _write_png(tmp / record.path, view.image)
                    records.append(record)
                    bar.update()
        queries = make_queries(places, spec.queries_per_place, _rng(spec.seed, _QUERIES))
        relation_queries = make_relation_queries(places, _rng(spec.seed, _RELATIONS))
        write_manifest(records, tmp / "manifest.jsonl")
        write_queries([q for q, _, _ in queries], tmp / "queries.jsonl")
        write_queries([q for q, _, _ in relation_queries], tmp / RELATION_QUERIES)
        write_text_atomic(tmp / "world.json", _world_json(spec, geotext, places, queries + relation_queries))
        if geotext:
            export_geotext(records, tmp)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def render_place(place: Place, spec: WorldSpec) -> Iterator[View]:
    """All views of one place: satellite, drones, then the ground view."""
    seed, i = spec.seed, place.index
    scene = paint_scene(place, spec.size, _rng(seed, _SCENE, i))
    yield satellite_view(scene, spec.size, _rng(seed, _VIEW, i, 0))
    for k, camera in enumerate(drone_cameras(place, spec.views_drone, spec.size, _rng(seed, _POSES, i)), start=1):
        yield drone_view(scene, camera, k, _rng(seed, _VIEW, i, k))
    if spec.ground:
        camera = ground_camera(place, spec.size, _rng(seed, _POSES, i, _GROUND_VIEW))
        yield ground_view(scene, camera, _rng(seed, _VIEW, i, _GROUND_VIEW))


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


def _record(place: Place, view: View, spec: WorldSpec) -> GalleryRecord:
    """Manifest record: the camera's WGS-84 position, ``alt`` = place ground + height above it."""
    camera = view.camera
    lat, lon, _ = enu_to_geodetic(place.east + camera.east, place.north + camera.north, 0.0, spec.datum)
    code = {"satellite": 0, "drone": view.number, "ground": _GROUND_VIEW}[view.platform]
    descriptions, sentences, bboxes = describe(place, view, _rng(spec.seed, _CAPTION, place.index, code))
    image_id = view.image_id(place)
    return GalleryRecord(
        image_id=image_id, path=f"images/{image_id}.png", place_id=place.place_id, platform=view.platform,
        lat=round(lat, 8), lon=round(lon, 8), alt=round(place.ground_height + view.alt_agl, 2),
        heading=round(camera.heading, 2),
        extras={"descriptions": descriptions, "sentences": sentences, "bboxes": bboxes,
                "tilt": round(camera.tilt, 2), "place_lat": round(place.lat, 8), "place_lon": round(place.lon, 8),
                "ground_alt": round(place.ground_height, 2)})


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {path.name}")
    path.write_bytes(data.tobytes())


def _world_json(spec: WorldSpec, geotext: bool, places: list[Place], queries: list) -> str:
    options = {k: v for k, v in asdict(spec).items() if k != "datum"}
    options["geotext"] = geotext
    doc = {
        "generator": "cgrs_ros.world", "version": GENERATOR_VERSION, "seed": spec.seed, "options": options,
        "datum": spec.datum.to_json(),
        "conventions": {
            "frame": "place-local east/north metres; lat/lon WGS-84 degrees",
            "alt": "metres above the WGS-84 ellipsoid = place ground_height_m + camera height above ground "
                   "(drone 30-120 m, ground 1.7 m, satellite a nominal 600 m: an orthophoto has no camera)",
            "heading": "degrees clockwise from north the camera faces; satellite images are north-up (0)",
            "tilt": "degrees from nadir (0 = straight down, 90 = horizontal)",
            "place_lat/place_lon/ground_alt": "the place's own WGS-84 position and its ground's height above "
                                              "the ellipsoid, on every view (navigation targets, cgrs_ros.targets)",
            "footprint": "every image's lat/lon lies within radius_m of its place's lat/lon",
            "directions": "captions and queries use cardinal directions for all views",
        },
        "places": [p.to_json() for p in places],
        "queries": [{"query_id": q.query_id, "place_id": q.place_id, "facts": facts, "matching_places": n}
                    for q, facts, n in queries],
    }
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


def _check_replaceable(out: Path) -> None:
    """Refuse to replace anything but an empty folder or an earlier generated world."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "world.json").is_file())):
        raise CGRSInputError(f"{out} exists and is not a generated world (no world.json); "
                             f"choose another --out or remove it")


def _replace(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)
