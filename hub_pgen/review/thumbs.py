"""Thumbnails of the frames each shown sample gave the model.

A run makes them from the frames generation decoded (:class:`ThumbKeeper`, called in the frame lanes),
for the samples the page will likely show; the page decodes only the others — from the output's own
videos, with the frames stage, the same cursor, timestamps and ``--max-pixels`` the run used, so a
thumbnail is the same whichever way it was made. ``hub-pgen report`` decodes them all (a bounded
number: the cards the page shows)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hub_pgen.data import Sample
from hub_pgen.errors import FrameError
from hub_pgen.frames import iter_sample_images
from hub_pgen.review.model import Review, sample_of, spread

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


class ThumbKeeper:
    """Thumbnails of the frames a run decodes for generation, for the samples in ``wanted``
    (:func:`likely_shown`): the review page takes them instead of decoding those frames again.
    :meth:`keep` runs in the frame lanes (several at once)."""

    def __init__(self, wanted: Iterable[str]) -> None:
        self.wanted = frozenset(wanted)
        self._made: dict[str, dict[int, Thumb]] = {}
        self._count: dict[str, int] = {}  # images of each sample
        self._lock = threading.Lock()

    def keep(self, sample: Sample, i: int, image: Any) -> None:
        if sample.sample_id not in self.wanted:
            return
        data, mime = encode(image)
        thumb = Thumb(sample.images[i].label(), data, mime)
        with self._lock:
            self._made.setdefault(sample.sample_id, {})[i] = thumb
            self._count[sample.sample_id] = len(sample.images)

    def made(self) -> dict[str, list[Thumb]]:
        """sample id → its thumbnails, in image order (only samples whose every image was kept)."""
        with self._lock:
            return {sid: [by_i[i] for i in range(self._count[sid])] for sid, by_i in self._made.items()
                    if all(i in by_i for i in range(self._count[sid]))}


def likely_shown(sample_ids: Sequence[str], limit: int | None = None) -> list[str]:
    """The samples the page shows when every one of them is ok (the plan's samples spread evenly, as
    :func:`~hub_pgen.review.tally.pick_positions` does): what a run keeps thumbnails of. Failures, shown
    first, move the spread a little; the page decodes the frames of the cards it does not find made.
    ``limit``: the page's cards (default :data:`~hub_pgen.review.model.DEFAULT_MAX_CARDS`, read when called,
    as the run's tally reads it)."""
    from hub_pgen.review import model

    return spread(sample_ids, model.DEFAULT_MAX_CARDS if limit is None else limit)


def thumbnails(review: Review, made: dict[str, list[Thumb]] | None = None) -> dict[str, list[Thumb]]:
    """sample id → one :class:`Thumb` per image of the sample, for the shown records (in plan order):
    those in ``made`` (a run's :class:`ThumbKeeper`) as they are, the others decoded."""
    wanted = review.cards
    made = made or {}
    out: dict[str, list[Thumb]] = {r.sample_id: [] for r in wanted}
    todo = []
    for r in wanted:
        have = made.get(r.sample_id)
        if have is not None and [t.label for t in have] == list(r.images):
            out[r.sample_id] = list(have)
        elif r.images:
            todo.append(sample_of(r))
    out.update(decode_thumbs(todo, source=review.source, base_dir=review.root, max_pixels=run_max_pixels(review)))
    return out


def decode_thumbs(samples: Sequence[Sample], *, source: Any, base_dir: Any, max_pixels: int | None
                  ) -> dict[str, list[Thumb]]:
    """sample id → one :class:`Thumb` per image of each of ``samples``, decoded by the frames stage (a
    frame that cannot be: a thumb without data, saying why)."""
    out: dict[str, list[Thumb]] = {}
    for sample, images in iter_sample_images(samples, source=source, base_dir=base_dir, max_pixels=max_pixels):
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


def run_max_pixels(review: Review) -> int | None:
    """``--max-pixels`` of the run that wrote the dataset: the frames were that size when the model saw
    them (and when the run kept their thumbnails)."""
    value = (review.provenance.get("parameters") or {}).get("max_pixels")
    return value if isinstance(value, int) and not isinstance(value, bool) and 784 <= value <= 1 << 40 else None
