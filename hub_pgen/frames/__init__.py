"""Frames stage: the images each planned sample shows the model.

:func:`iter_sample_images` streams ``(sample, images)`` in sample order. Video frames come from one
:class:`~hub_pgen.frames.video.VideoCursor` per (camera, file) that decodes forward through the file,
so the frames a plan needs from a file cost at most one pass over it (see ``docs/benchmarks.md``);
only the cameras the samples name are opened. Cameras decode in parallel, one thread each, a few
samples ahead of the consumer. Image features come from the data parquet by global
row; JSONL samples' image paths are opened with PIL. Whatever goes wrong for one sample (a missing
file, a damaged video, no frame at that time) is yielded as that sample's :class:`FrameError`, and
the stream goes on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hub_pgen.data import ImageRef, Sample, SourceDataset
from hub_pgen.errors import FrameError
from hub_pgen.frames.images import ParquetImages, fit_pixels, open_image_file
from hub_pgen.frames.video import VideoCursor, frame_to_image
from hub_pgen.plan.table import episode_set

__all__ = ["FrameSource", "VideoCursor", "is_sparse", "iter_sample_images"]


class FrameSource:
    """Resolves :class:`ImageRef` s to RGB PIL images, keeping one open video per camera."""

    def __init__(self, source: SourceDataset | None, *, base_dir: Path | None = None,
                 max_pixels: int | None = None, sparse: bool = True) -> None:
        """``sparse``: most wanted frames are far apart (one per skill segment, say), so videos are
        decoded single-threaded, which makes each seek cheap; False suits plans that need most frames."""
        self.source = source
        self.sparse = sparse
        self.base_dir = base_dir
        self.max_pixels = max_pixels
        self._cursors: dict[str, VideoCursor] = {}  # camera -> cursor on its current file
        self._broken: dict[tuple[str, str], FrameError] = {}  # (camera, file) that failed to open
        self._parquet = ParquetImages(source.root) if source is not None else None
        self.decoded = 0
        self.seeks = 0

    def close(self) -> None:
        for cursor in self._cursors.values():
            self._retire(cursor)
        self._cursors.clear()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retire(self, cursor: VideoCursor) -> None:
        self.decoded += cursor.decoded
        self.seeks += cursor.seeks
        cursor.close()

    def images(self, sample: Sample) -> list[Any]:
        """All of ``sample``'s images, in order (raises the first FrameError)."""
        return [self.image(sample, ref) for ref in sample.images]

    def image(self, sample: Sample, ref: ImageRef) -> Any:
        return fit_pixels(self._image(sample, ref), self.max_pixels)

    def _image(self, sample: Sample, ref: ImageRef) -> Any:
        if ref.path is not None:
            return open_image_file(ref.path, self.base_dir)
        if self.source is None or sample.episode_index is None or ref.camera is None:
            raise FrameError(f"sample {sample.sample_id}: image {ref.label()} has no dataset to come from")
        episode = self.source.episodes[sample.episode_index]
        if ref.timestamp is not None:
            span = episode.videos.get(ref.camera)
            if span is None:
                raise FrameError(f"episode {episode.index} has no video for {ref.camera} in its metadata")
            return frame_to_image(self._video_frame(ref.camera, span.path, span.from_timestamp + ref.timestamp))
        if ref.row is None:
            raise FrameError(f"sample {sample.sample_id}: image ref {ref} names neither a time nor a row")
        assert self._parquet is not None
        cams = tuple(r.camera for r in sample.images if r.row is not None and r.camera is not None)
        return self._parquet.image(episode.data_path, cams, ref.camera, ref.row)

    def _video_frame(self, camera: str, rel_path: str, t: float) -> Any:
        assert self.source is not None
        broken = self._broken.get((camera, rel_path))
        if broken is not None:
            raise broken
        cursor = self._cursors.get(camera)
        path = self.source.root / rel_path
        if cursor is None or cursor.path != path:
            if cursor is not None:
                self._retire(cursor)
            cursor = self._cursors[camera] = VideoCursor(path, self.source.fps, threads=1 if self.sparse else None)
        try:
            return cursor.frame_at(t)
        except FrameError as e:
            if not cursor.is_open:  # could not even open: every later frame of it fails the same
                self._broken[(camera, rel_path)] = e
            raise


DENSE_GAP_FRAMES = 8  # samples closer than this on average: decode forward with threads


def is_sparse(samples: Sequence[Sample], source: SourceDataset | None) -> bool:
    """Whether the plan's frames are far apart on average (mean gap > ``DENSE_GAP_FRAMES`` frames)."""
    if source is None or not samples:
        return True
    episodes = episode_set(samples)
    frames = sum(source.episodes[e].length for e in episodes if e in source.episodes)
    return frames > DENSE_GAP_FRAMES * len(samples)


def iter_sample_images(
    samples: Iterable[Sample], *, source: SourceDataset | None, base_dir: Path | None = None,
    max_pixels: int | None = None, chunk: int = 16, ahead: int = 2, stats: dict[str, int] | None = None,
    prepare: Callable[[Sample, int, Any], Any] | None = None,
) -> Iterator[tuple[Sample, list[Any] | FrameError]]:
    """``(sample, [PIL.Image, ...])`` per sample, in order, or ``(sample, FrameError)`` when its
    images cannot be produced.

    Each camera is a *lane*: one thread with its own :class:`FrameSource` (so its own open video),
    working through the samples ``chunk`` at a time. Lanes run in parallel, and up to ``ahead``
    chunks are decoded while the caller is busy with earlier ones (the model generating, say).
    ``stats``, if given, receives ``decoded`` and ``seeks`` totals at the end. ``prepare(sample, i,
    image)``, if given, runs in the lane on each decoded image, and what it returns is what is handed
    out (the OpenAI backend's JPEG data URL, made ahead of the HTTP workers; a review thumbnail kept).
    """
    if not isinstance(samples, Sequence):
        samples = list(samples)
    sparse = is_sparse(samples, source)
    lanes: dict[str, FrameSource] = {}
    workers: dict[str, ThreadPoolExecutor] = {}

    def run_lane(name: str, items: list[tuple[int, int, Sample, ImageRef]]) -> dict[tuple[int, int], Any]:
        frames = lanes[name]
        out: dict[tuple[int, int], Any] = {}
        for si, ri, sample, ref in items:
            try:
                image = frames.image(sample, ref)
            except FrameError as e:
                out[(si, ri)] = e
            else:
                out[(si, ri)] = image if prepare is None else prepare(sample, ri, image)
        return out

    def submit(start: int) -> tuple[list[Sample], list[Future[dict[tuple[int, int], Any]]]]:
        # the chunk's samples made once (a plan's table makes a sample each time one is asked for)
        batch = [samples[si] for si in range(start, min(start + chunk, len(samples)))]
        by_lane: dict[str, list[tuple[int, int, Sample, ImageRef]]] = {}
        for si, sample in enumerate(batch):
            for ri, ref in enumerate(sample.images):
                name = ref.camera if ref.path is None and ref.camera else "<files>"
                by_lane.setdefault(name, []).append((si, ri, sample, ref))
        futures = []
        for name, items in by_lane.items():
            if name not in lanes:
                lanes[name] = FrameSource(source, base_dir=base_dir, max_pixels=max_pixels, sparse=sparse)
                workers[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hub-pgen-frames-{name}")
            futures.append(workers[name].submit(run_lane, name, items))
        return batch, futures

    def collect(batch: list[Sample], futures: list[Future[dict[tuple[int, int], Any]]]
                ) -> Iterator[tuple[Sample, list[Any] | FrameError]]:
        results: dict[tuple[int, int], Any] = {}
        for f in futures:
            results.update(f.result())
        for si, sample in enumerate(batch):
            images = [results[(si, ri)] for ri in range(len(sample.images))]
            error = next((im for im in images if isinstance(im, FrameError)), None)
            yield sample, (error if error is not None else images)

    queue: deque[tuple[list[Sample], list[Future[dict[tuple[int, int], Any]]]]] = deque()
    try:
        for start in range(0, len(samples), chunk):
            queue.append(submit(start))
            if len(queue) > ahead:
                yield from collect(*queue.popleft())
        while queue:
            yield from collect(*queue.popleft())
    finally:
        for worker in workers.values():
            worker.shutdown(wait=True, cancel_futures=True)
        for frames in lanes.values():
            frames.close()
        if stats is not None:
            stats["decoded"] = sum(f.decoded for f in lanes.values())
            stats["seeks"] = sum(f.seeks for f in lanes.values())
