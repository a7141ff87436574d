"""The thumbnails a shard makes for the merged review page, so that ``hub-pgen merge`` decodes no video.

A sharded job's page is drawn by the merge, and its cards show the frames the model saw. Decoding them
there cost the merge PyAV (~19 MiB of its libraries, mapped on import, and its decoders) and a pass
over the cards' videos, where every shard has the frames at hand or the videos on disk (issue 23). So
each shard keeps the thumbnails of its samples that the merged page will likely show
(:func:`~hub_pgen.review.thumbs.likely_shown` over the job's whole plan): those its generation decoded
(:class:`~hub_pgen.review.thumbs.ThumbKeeper`), and the others decoded at its end, from the same videos
the same way. It writes them to ``meta/hub_pgen_thumbs.jsonl``; the merge's page takes them
(:class:`FromShards`) and decodes only the cards no shard made (a failure moves the spread a little).

The file is a cache: a merge that cannot use one (missing: a shard made with ``--no-review``, or by
an earlier hub-pgen; damaged or edited out of its bounds) says so and decodes those frames itself, so
the page is the same bytes either way. A shard's thumbnail is trusted as its dialogues are: the merge
cannot tell a picture of another frame from the right one without decoding it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hub_pgen import fsio, layout
from hub_pgen.data import Sample
from hub_pgen.errors import UnsafePathError
from hub_pgen.plan.table import locator
from hub_pgen.review.thumbs import Thumb, ThumbKeeper, decode_thumbs

logger = logging.getLogger(__name__)

MAX_THUMB_BYTES = 64 << 10  # one thumbnail (192 px: a few KiB as WebP, ~10 as JPEG)
MAX_LABEL_CHARS = 1024
MAX_IMAGES = 64  # a sample's cameras
MAX_LINE_BYTES = MAX_IMAGES * (MAX_THUMB_BYTES * 4 // 3 + 8 * MAX_LABEL_CHARS) + 16 * MAX_LABEL_CHARS
MAX_FILE_BYTES = 64 << 20  # a shard keeps at most the page's cards (~8 KiB a card as base64)
MAX_TOTAL_BYTES = 128 << 20  # every shard's pictures a merge takes (a real job's: ~6 MB for 1,000 cards, 2 cameras)
MIMES = {"image/webp": (b"RIFF", 8, b"WEBP"), "image/jpeg": (b"\xff\xd8\xff", 0, b"")}  # the magic of each


class Bad(ValueError):
    """A line of a thumbnails file that no shard writes."""


def write(staging: Path, keeper: Any, samples: Sequence[Sample], *, decode: bool, source: Any,
          base_dir: Path | None, max_pixels: int | None) -> int:
    """A shard's thumbnails file in ``staging``: the ones ``keeper`` kept, and (``decode``: its videos
    are on disk) the others of ``keeper.wanted`` decoded now, in plan order; a sample whose frame could
    not be decoded is left out (the merge tries again, and says why). Returns how many samples it holds."""
    made = keeper.made()
    where = locator(samples)
    wanted = sorted((p, sid) for sid in keeper.wanted if (p := where(sid)) is not None)
    todo = [samples[p] for p, sid in wanted if sid not in made]
    if todo and decode:
        made.update(decode_thumbs(todo, source=source, base_dir=base_dir, max_pixels=max_pixels))
    lines = [_line(sid, made[sid]) for _, sid in wanted  # (a sample without images has nothing to show)
             if made.get(sid) and all(t.data is not None for t in made[sid])]
    with fsio.create(staging / layout.SHARD_THUMBS_PATH) as fh:
        fh.writelines(lines)
    return len(lines)


def _line(sample_id: str, thumbs: list[Thumb]) -> bytes:
    return fsio.jsonl_line({"sample_id": sample_id, "thumbs": [
        {"label": t.label, "mime": t.mime, "data": base64.b64encode(t.data or b"").decode("ascii")} for t in thumbs]})


class FromShards(ThumbKeeper):
    """The thumbnails the shards of a merge made, as a :class:`~hub_pgen.review.thumbs.ThumbKeeper`
    that keeps none of its own (a merge decodes nothing for generation): :meth:`made` reads them when
    the page is drawn, not before."""

    def __init__(self, folders: Iterable[Path]) -> None:
        super().__init__(())
        self.folders = [Path(f) for f in folders]

    def made(self) -> dict[str, list[Thumb]]:
        """Every shard's pictures, together within the page's cards and :data:`MAX_TOTAL_BYTES` (a shard's
        whole file or none of it)."""
        from hub_pgen.review import model

        out: dict[str, list[Thumb]] = {}
        size = 0
        for folder in self.folders:
            path = folder / layout.SHARD_THUMBS_PATH
            try:
                got = read(path)
                more = sum(len(t.data or b"") for ts in got.values() for t in ts)
                if len(out) + len(got) > model.DEFAULT_MAX_CARDS or size + more > MAX_TOTAL_BYTES:
                    raise Bad(f"with the other shards' more than the page's {model.DEFAULT_MAX_CARDS} cards or "
                              f"{MAX_TOTAL_BYTES:,} bytes")
            except FileNotFoundError:
                logger.info("shard %s has no %s (made with --no-review, or by an earlier hub-pgen): the page "
                            "decodes its cards' frames", folder, layout.SHARD_THUMBS_PATH)
                continue
            except (OSError, Bad, UnsafePathError) as e:
                logger.warning("%s is not a thumbnails file hub-pgen writes (%s): the page decodes that shard's "
                               "cards' frames itself, and is the same", path, e)
                continue
            out.update(got)
            size += more
        return out


def read(path: Path) -> dict[str, list[Thumb]]:
    """A shard's thumbnails file, strictly (every bound, type and image magic checked), whole or
    :class:`Bad`: sample id → its thumbnails."""
    from hub_pgen.review import model

    out: dict[str, list[Thumb]] = {}
    for n, line in _lines(path):
        # a line's shape before it is parsed: an object, a list, an object a picture (a line of nested
        # brackets would cost a parser ~30x its bytes, or its recursion limit)
        if line.count(b"{") > MAX_IMAGES + 1 or line.count(b"[") > 1:
            raise Bad(f"line {n} is not an object of sample_id and thumbs")
        try:
            sid, thumbs = _checked(json.loads(line))
        except (ValueError, TypeError, RecursionError, UnicodeDecodeError) as e:
            raise Bad(f"line {n}: {e}") from None
        if sid in out:
            raise Bad(f"line {n}: sample {sid[:60]!r} twice")
        out[sid] = thumbs
        if len(out) > model.DEFAULT_MAX_CARDS:
            raise Bad(f"more than {model.DEFAULT_MAX_CARDS} samples (the page's cards)")
    return out


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The file's lines, each at most :data:`MAX_LINE_BYTES`, all together at most :data:`MAX_FILE_BYTES`
    (however long the file grows while it is read)."""
    with open(fsio.open_read(path), "rb") as fh:  # never through a link, a regular file only
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise Bad(f"{size:,} bytes, more than {MAX_FILE_BYTES:,}")
        n = read = 0
        while line := fh.readline(MAX_LINE_BYTES + 1):
            n += 1
            read += len(line)
            if len(line) > MAX_LINE_BYTES or read > MAX_FILE_BYTES:
                raise Bad(f"line {n} is longer than {MAX_LINE_BYTES:,} bytes" if len(line) > MAX_LINE_BYTES
                          else f"more than {MAX_FILE_BYTES:,} bytes")
            if not line.endswith(b"\n"):
                raise Bad(f"line {n} is not whole")
            yield n, line


def _checked(obj: Any) -> tuple[str, list[Thumb]]:
    if not isinstance(obj, dict) or set(obj) != {"sample_id", "thumbs"}:
        raise Bad("not an object of sample_id and thumbs")
    sid, items = obj["sample_id"], obj["thumbs"]
    if not isinstance(sid, str) or not sid or len(sid) > MAX_LABEL_CHARS:
        raise Bad("sample_id is not a sample id")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_IMAGES:
        raise Bad(f"thumbs of {sid[:60]!r}: not a list of 1 to {MAX_IMAGES}")
    thumbs = []
    for t in items:
        if not isinstance(t, dict) or set(t) != {"label", "mime", "data"}:
            raise Bad(f"a thumb of {sid[:60]!r} is not an object of label, mime and data")
        label, mime, data = t["label"], t["mime"], t["data"]
        if not isinstance(label, str) or len(label) > MAX_LABEL_CHARS or not isinstance(mime, str) or \
                mime not in MIMES or not isinstance(data, str):
            raise Bad(f"a thumb of {sid[:60]!r}: a label of at most {MAX_LABEL_CHARS} characters, a mime of "
                      f"{sorted(MIMES)} and base64 data")
        if len(data) > MAX_THUMB_BYTES * 4 // 3 + 4:
            raise Bad(f"a thumb of {sid[:60]!r} is larger than {MAX_THUMB_BYTES:,} bytes")
        try:
            blob = base64.b64decode(data, validate=True)
        except binascii.Error as e:
            raise Bad(f"a thumb of {sid[:60]!r}: {e}") from None
        head, at, tag = MIMES[mime]
        if not blob.startswith(head) or blob[at:at + len(tag)] != tag:
            raise Bad(f"a thumb of {sid[:60]!r} is not {mime}")
        thumbs.append(Thumb(label, blob, mime))
    return sid, thumbs
