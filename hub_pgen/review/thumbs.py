"""Thumbnails of the frames each shown sample gave the model, decoded from the output's own videos
with the frames stage (the same cursor and the same timestamps the run used)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hub_pgen.data import JournalRecord
from hub_pgen.errors import FrameError
from hub_pgen.frames import iter_sample_images
from hub_pgen.review.model import Review, sample_of

THUMB_SIDE = 192  # px, the longer side
THUMB_QUALITY = 60  # WebP: ~3 KB for a photo-like 640x480 frame (docs/benchmarks.md)


@dataclass(frozen=True)
class Thumb:
    label: str  # the record's image reference, e.g. observation.images.up@1.2000s
    data: bytes | None  # WebP bytes, or None when the frame could not be decoded
    mime: str = "image/webp"
    error: str | None = None


def shrink(image: Any, side: int) -> Any:
    """``image`` (PIL) with its longer side at most ``side`` px, aspect kept. BOX (area averaging) is a
    sound filter for shrinking, and 3x faster than ``thumbnail()``'s bicubic (docs/benchmarks.md)."""
    from PIL import Image

    scale = min(1.0, side / max(image.size))
    if scale >= 1:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BOX)


def encode(image: Any, side: int = THUMB_SIDE, quality: int = THUMB_QUALITY) -> tuple[bytes, str]:
    """A small copy of a PIL image, as (bytes, media type): WebP, or JPEG where Pillow lacks WebP.
    WebP method 2 costs half of method 4 for 4 % more bytes (docs/benchmarks.md)."""
    from PIL import features

    im = shrink(image, side)
    buf = io.BytesIO()
    if features.check("webp"):
        im.save(buf, format="WEBP", quality=quality, method=2)
        return buf.getvalue(), "image/webp"
    im.convert("RGB").save(buf, format="JPEG", quality=quality + 10)
    return buf.getvalue(), "image/jpeg"


def thumbnails(review: Review, records: Sequence[JournalRecord] | None = None) -> dict[str, list[Thumb]]:
    """sample id → one :class:`Thumb` per image of the sample, for the shown records (in plan order)."""
    wanted = [r for r in (records if records is not None else review.records) if r.sample_id in review.shown]
    samples = [sample_of(r) for r in wanted if r.images]
    out: dict[str, list[Thumb]] = {r.sample_id: [] for r in wanted}
    for sample, images in iter_sample_images(samples, source=review.source, base_dir=review.root):
        labels = [ref.label() for ref in sample.images]
        if isinstance(images, FrameError):
            out[sample.sample_id] = [Thumb(label, None, error=str(images)) for label in labels]
            continue
        thumbs = []
        for label, im in zip(labels, images):
            data, mime = encode(im)
            thumbs.append(Thumb(label, data, mime))
        out[sample.sample_id] = thumbs
    return out
