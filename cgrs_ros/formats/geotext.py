"""GeoText-1652 annotations (University-1652 images + text) as a gallery and a query set.

An annotation file is a JSON list of items::

    {"image_id": "0839/image-43.jpeg", "image": "train/0839/image-43.jpeg",
     "caption": "In the center of the image is ...",          # test JSON: a list of strings
     "sentences": ["The object in the center ...", ...],       # spatial-relation phrases
     "bboxes": [[cx, cy, w, h], ...]}                          # normalised, one per sentence

- The building (``place_id``) is ``image_id[:4]``; all images of a building are positives.
- The train JSON has one item per caption, so an image appears in several items: they become one
  gallery record (same ``image`` required) and one query per caption.
- A ``null`` sentence or bbox (the GeoText loader's "no box") is kept as ``null``.
- A box value outside [0, 1] by at most :data:`BBOX_NOISE` (float noise such as ``1.0000001``,
  which the official loader accepts) is clamped into [0, 1] with one warning per file; anything
  further out is refused.
- GeoText has no GPS: ``lat``/``lon``/``alt``/``heading`` are ``null``.

Platform rule (University-1652 naming), first match wins:

1. path components of ``image``, innermost first, split on ``_``/``-``/``.``: a part ``satellite``
   -> satellite, ``drone`` -> drone, ``street`` or ``google`` -> ground (so ``satellite/0839/0839.jpg``,
   ``test/query_street/...``, ``0001/street_view.jpg`` are all recognised);
2. file name stem equal to the building id (``0839/0839.jpg``, University-1652's satellite naming)
   -> satellite;
3. otherwise drone (GeoText's ``image-NN.jpeg``).

Record ``extras``: ``caption`` (always a list of strings), ``sentences`` and ``bboxes`` (the pairs of
all items of the image, concatenated in file order, exact repeats dropped).  Note that these are the
ground-truth texts of the benchmark: do not index them as gallery descriptions when evaluating.
"""
from __future__ import annotations

import logging
import math
import os
import posixpath
import re
from pathlib import Path, PurePosixPath

from ..errors import CGRSInputError
from ..gallery import GEO_FIELDS, Gallery, GalleryRecord
from ..jsonl import parse_json, read_text
from ..queries import Query, validate_query_text

_PLACE_RE = re.compile(r"\d{4}")
BBOX_NOISE = 1e-4   # how far outside [0, 1] a box value may be and still count as float noise
_log = logging.getLogger(__name__)
_PLATFORM_WORDS = {"satellite": "satellite", "drone": "drone", "street": "ground", "google": "ground"}


def geotext_platform(image: str, place_id: str) -> str:
    """The platform of a University-1652 / GeoText image path (rule in the module docstring)."""
    parts = PurePosixPath(image.replace("\\", "/")).parts
    for part in reversed(parts):
        for word in re.split(r"[_\-.]", part.lower()):
            if word in _PLATFORM_WORDS:
                return _PLATFORM_WORDS[word]
    if parts and PurePosixPath(parts[-1]).stem == place_id:
        return "satellite"
    return "drone"


def load_geotext(json_path: str | os.PathLike,
                 image_root: str | os.PathLike | None = None) -> tuple[Gallery, list[Query]]:
    """Gallery (one record per image) and queries (one per caption) of a GeoText-1652 JSON file.

    ``image_root`` is the folder the items' ``image`` paths are relative to.  Default: the JSON's
    folder, or its ``images/`` sub-folder when the first item's image is there and not beside the
    JSON (the official GeoText-1652 layout: ``train.json`` next to ``images/train/...``).  Query ids
    are ``f"{image_id}#{n}"``, n counting that image's captions from 0.
    """
    json_path = Path(json_path)
    items = _read_json_list(json_path)
    root = Path(image_root if image_root is not None else _default_image_root(json_path, items)).resolve()
    images: dict[str, dict] = {}   # image_id -> merged annotation, in first-seen order
    queries: list[Query] = []
    clamped: list[str] = []   # where a box value was float noise outside [0, 1]
    for index, item in enumerate(items):
        where = f"{json_path}: item {index}"
        if not isinstance(item, dict):
            raise CGRSInputError(f"{where}: expected a JSON object, got {type(item).__name__}")
        image_id = item.get("image_id")
        if not isinstance(image_id, str) or not image_id.strip():
            raise CGRSInputError(f"{where}: field 'image_id' is missing or not a non-empty string")
        if not _PLACE_RE.fullmatch(image_id[:4]):
            raise CGRSInputError(f"{where}: field 'image_id' is {image_id!r}; its first 4 characters "
                                 "must be the building id (4 digits, e.g. '0839/image-43.jpeg')")
        image = item.get("image")
        if not isinstance(image, str) or not image.strip():
            raise CGRSInputError(f"{where}: field 'image' is missing or not a non-empty string "
                                 f"(got {type(image).__name__})")
        image = image.replace("\\", "/")
        captions = _captions(item, where)
        sentences, bboxes = _sentences_and_boxes(item, where, clamped)

        merged = images.get(image_id)
        if merged is None:
            _check_inside(image, root, where)
            merged = images[image_id] = {"image": image, "item": index, "caption": [],
                                         "pairs": []}
        elif merged["image"] != image:
            raise CGRSInputError(
                f"{where}: field 'image' is {image!r}, but item {merged['item']} gives image_id "
                f"{image_id!r} the path {merged['image']!r}")
        for text in captions:
            n = len(merged["caption"])
            merged["caption"].append(text)
            queries.append(Query(f"{image_id}#{n}", text, image_id[:4]))
        for pair in zip(sentences, bboxes):
            if pair not in merged["pairs"]:
                merged["pairs"].append(pair)

    records = []
    for image_id, merged in images.items():
        place_id = image_id[:4]
        records.append(GalleryRecord(
            image_id, merged["image"], place_id,
            geotext_platform(merged["image"], place_id),
            **{name: None for name in GEO_FIELDS},
            extras={"caption": merged["caption"],
                    "sentences": [s for s, _ in merged["pairs"]],
                    "bboxes": [b if b is None else list(b) for _, b in merged["pairs"]]}))
    if not records:
        raise CGRSInputError(f"{json_path}: the annotation list is empty")
    if clamped:
        _log.warning("%s: %d bbox value(s) outside [0, 1] by at most %g clamped (first at %s)",
                     json_path, len(clamped), BBOX_NOISE, clamped[0])
    return Gallery(records, root, source=str(json_path)), queries


def _default_image_root(json_path: Path, items: list) -> Path:
    folder = json_path.parent
    first = items[0].get("image") if items and isinstance(items[0], dict) else None
    if (isinstance(first, str) and not (folder / first).exists()
            and (folder / "images" / first).is_file()):
        return folder / "images"
    return folder


def _read_json_list(path: Path) -> list:
    data = parse_json(read_text(path, "GeoText annotations file"), str(path), position=True)
    if not isinstance(data, list):
        raise CGRSInputError(f"{path}: expected a JSON list of items, got {type(data).__name__}")
    return data


def _check_inside(image: str, root: Path, where: str) -> None:
    # lexical check (cheap, per item); Gallery() then resolves symlinks as well
    normal = posixpath.normpath(image)
    if posixpath.isabs(image) or normal == ".." or normal.startswith("../"):
        raise CGRSInputError(
            f"{where}: field 'image' is {image!r}, which leaves the image folder {root}")


def _captions(item: dict, where: str) -> list[str]:
    caption = item.get("caption")
    if isinstance(caption, str):
        return [validate_query_text(caption, f"{where}: field 'caption'")]
    if isinstance(caption, list):
        if not caption:
            raise CGRSInputError(f"{where}: field 'caption' is an empty list")
        return [validate_query_text(text, f"{where}: field 'caption'[{n}]")
                for n, text in enumerate(caption)]
    raise CGRSInputError(f"{where}: field 'caption' must be a string or a list of strings, "
                         f"got {type(caption).__name__}")


def _sentences_and_boxes(item: dict, where: str, clamped: list[str]) -> tuple[list, list]:
    """The item's sentences and boxes; ``clamped`` gets one entry per box value clamped from noise."""
    sentences = item.get("sentences", [])
    bboxes = item.get("bboxes", [])
    if not isinstance(sentences, list):
        raise CGRSInputError(f"{where}: field 'sentences' must be a list, got {type(sentences).__name__}")
    if not isinstance(bboxes, list):
        raise CGRSInputError(f"{where}: field 'bboxes' must be a list, got {type(bboxes).__name__}")
    if len(bboxes) != len(sentences):
        raise CGRSInputError(f"{where}: field 'bboxes' has {len(bboxes)} boxes for "
                             f"{len(sentences)} sentences (one box per sentence)")
    for n, sentence in enumerate(sentences):
        if sentence is not None and not isinstance(sentence, str):
            raise CGRSInputError(f"{where}: field 'sentences'[{n}] must be a string or null, "
                                 f"got {type(sentence).__name__}")
    boxes = []
    for n, box in enumerate(bboxes):
        if box is None:
            boxes.append(None)
            continue
        if not isinstance(box, list) or len(box) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v)
                and -BBOX_NOISE <= v <= 1.0 + BBOX_NOISE for v in box):
            raise CGRSInputError(f"{where}: field 'bboxes'[{n}] is {_short(box)}; expected 4 numbers "
                                 "in [0, 1] (normalised cx, cy, w, h) or null")
        clamped.extend(f"{where}: field 'bboxes'[{n}]" for v in box if not 0.0 <= v <= 1.0)
        boxes.append(tuple(min(1.0, max(0.0, float(v))) for v in box))
    return sentences, boxes


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:       # an integer too large for a float
        return False


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"
