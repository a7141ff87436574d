"""Contact sheets: an episode's frames, sampled, timestamped and packed into a few grid images.

The model that labels an episode's skills sees the whole episode at once this way: lerobot's own
annotation pipeline does the same (``lerobot/annotations/steerable_pipeline/frames.py``), and its
defaults are ours: two frames a second, at most 60 an episode, 5 x 4 tiles 224 px wide a sheet.
Each tile shows its time in seconds (``12.50s``) on a black badge, the time the model answers with.
A 4:3 camera makes 1120 x 672 px sheets: 960 image tokens each for Qwen2/2.5-VL (28 px per token),
so a 10 s episode (20 frames) fits one sheet — about the image tokens of one pgen sample's two
640x480 frames (782) — and 30 s or more take three (2,880); ``scripts/bench_sheets.py`` measures it
with the processor. Episodes longer than 30 s are sampled more sparsely (60 frames spread evenly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

FRAMES_PER_SECOND = 2.0
MAX_FRAMES = 60
COLUMNS, ROWS = 5, 4
TILE_WIDTH = 224
PARAMS = {"frames_per_second": FRAMES_PER_SECOND, "max_frames": MAX_FRAMES, "columns": COLUMNS, "rows": ROWS,
          "tile_width": TILE_WIDTH}  # part of the configuration fingerprint of --skills annotate


def sheet_times(timestamps: np.ndarray) -> list[float]:
    """The frame timestamps to show (the parquet's own values), first and last frame included."""
    n = len(timestamps)
    if n == 0:
        return []
    duration = float(timestamps[-1] - timestamps[0])
    want = min(n, MAX_FRAMES, max(2, int(duration * FRAMES_PER_SECOND) + 1))
    idx = np.unique(np.round(np.linspace(0, n - 1, want)).astype(int))
    return [float(timestamps[i]) for i in idx]


def label(t: float, decimals: int = 2) -> str:
    return f"{t:.{decimals}f}s"


def sheets_needed(frames: int) -> int:
    return math.ceil(frames / (COLUMNS * ROWS)) if frames else 0


def make_sheets(images: Sequence[Any], times: Sequence[float], *, decimals: int = 2) -> list[Any]:
    """``images`` (PIL, one per time) as timestamped tiles packed row by row into sheets."""
    from PIL import Image

    tiles = [_badge(_fit(im), label(t, decimals)) for im, t in zip(images, times)]
    per = COLUMNS * ROWS
    sheets = []
    for start in range(0, len(tiles), per):
        chunk = tiles[start : start + per]
        w = max(t.width for t in chunk)
        h = max(t.height for t in chunk)
        rows = math.ceil(len(chunk) / COLUMNS)
        sheet = Image.new("RGB", (w * COLUMNS, h * rows), color=(0, 0, 0))
        for i, tile in enumerate(chunk):
            sheet.paste(tile, ((i % COLUMNS) * w, (i // COLUMNS) * h))
        sheets.append(sheet)
    return sheets


def _fit(image: Any) -> Any:
    image = image.convert("RGB")
    height = max(1, round(image.height * TILE_WIDTH / image.width))
    return image.resize((TILE_WIDTH, height))


def _badge(tile: Any, text: str) -> Any:
    from PIL import ImageDraw, ImageFont

    size = max(12, tile.height // 8)  # legible after the model's own downscaling
    try:
        font: Any = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one small bitmap font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(tile)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, size // 6)
    draw.rectangle((0, 0, right - left + 2 * pad, bottom - top + 2 * pad), fill=(0, 0, 0))
    draw.text((pad - left, pad - top), text, fill=(255, 255, 255), font=font)
    return tile
