"""Contact sheet: the top matches as one picture, for people who would rather look than read scores."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_LINES = 5
_LINE_HEIGHT = 14


def _tile(match, thumb: int) -> np.ndarray:
    image = cv2.imread(str(match.image_path), cv2.IMREAD_COLOR)
    tile = np.full((thumb + _TEXT_LINES * _LINE_HEIGHT + 6, thumb, 3), 255, np.uint8)
    if image is None:  # a missing file still gets its tile, marked, so ranks stay readable
        cv2.putText(tile, "image unreadable", (4, thumb // 2), _FONT, 0.4, (0, 0, 200), 1, cv2.LINE_AA)
    else:
        tile[:thumb] = cv2.resize(image, (thumb, thumb), interpolation=cv2.INTER_AREA)
    caption_score = "-" if math.isnan(match.caption_score) else f"{match.caption_score:.2f}"
    lines = [f"#{match.rank} {match.place_id} ({match.platform})",
             f"fused {match.score:.2f}  clip {match.coarse_score:.2f}", f"caption match {caption_score}"]
    lines += textwrap.wrap(match.caption, width=max(10, thumb // 6))[:_TEXT_LINES - len(lines)]
    for i, line in enumerate(lines):
        colour = (0, 0, 0) if i else (150, 40, 0)
        cv2.putText(tile, line, (3, thumb + 12 + i * _LINE_HEIGHT), _FONT, 0.33, colour, 1, cv2.LINE_AA)
    return tile


def render_contact_sheet(matches: Sequence, title: str = "", thumb: int = 160, columns: int = 5) -> np.ndarray:
    """A BGR uint8 image: one tile per match (thumbnail, rank, place, scores, caption) under a title."""
    columns = max(1, min(columns, len(matches) or 1))
    tiles = [_tile(m, thumb) for m in matches] or [np.full((thumb, thumb, 3), 255, np.uint8)]
    tile_h = tiles[0].shape[0]
    rows = math.ceil(len(tiles) / columns)
    header = 24 if title else 0
    sheet = np.full((header + rows * (tile_h + 4), columns * (thumb + 4), 3), 235, np.uint8)
    if title:
        cv2.putText(sheet, title[: columns * thumb // 7], (4, 17), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for i, tile in enumerate(tiles):
        y, x = header + (i // columns) * (tile_h + 4), (i % columns) * (thumb + 4)
        sheet[y:y + tile_h, x:x + thumb] = tile
    return sheet


def write_contact_sheet(matches: Sequence, path: str | Path, title: str = "", **options) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", render_contact_sheet(matches, title, **options))
    if not ok:
        raise OSError(f"could not encode the contact sheet for {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.tobytes())
    tmp.replace(path)
    return path
