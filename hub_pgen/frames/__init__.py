"""Frames stage: the images each planned sample shows the model.

:func:`iter_sample_images` streams ``(sample, images)`` in sample order. Video frames come from one
:class:`~hub_pgen.frames.video.VideoCursor` per (camera, file) that decodes forward through the file,
so the frames a plan needs from a file cost at most one pass over it (see ``docs/benchmarks.md``);
only the cameras the samples name are opened. Image features come from the data parquet by global
row; JSONL samples' image paths are opened with PIL. Whatever goes wrong for one sample (a missing
file, a damaged video, no frame at that time) is yielded as that sample's :class:`FrameError`, and
the stream goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hub_pgen.data import ImageRef, Sample, SourceDataset
from hub_pgen.errors import FrameError
from hub_pgen.frames.images import ParquetImages, fit_pixels, open_image_file
from hub_pgen.frames.video import VideoCursor

__all__ = ["FrameSource", "VideoCursor", "iter_sample_images"]


class FrameSource:
    """Resolves :class:`ImageRef` s to RGB PIL images, keeping one open video per camera."""

    def __init__(self, source: SourceDataset | None, *, base_dir: Path | None = None,
                 max_pixels: int | None = None) -> None:
        self.source = source
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
        return [fit_pixels(self._image(sample, ref), self.max_pixels) for ref in sample.images]

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
            return self._video_frame(ref.camera, span.path, span.from_timestamp + ref.timestamp).to_image()
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
            cursor = self._cursors[camera] = VideoCursor(path, self.source.fps)
        try:
            return cursor.frame_at(t)
        except FrameError as e:
            if cursor._container is None:  # could not even open: every later frame of it fails the same
                self._broken[(camera, rel_path)] = e
            raise


def iter_sample_images(
    samples: Iterable[Sample], *, source: SourceDataset | None, base_dir: Path | None = None,
    max_pixels: int | None = None,
) -> Iterator[tuple[Sample, list[Any] | FrameError]]:
    """``(sample, [PIL.Image, ...])`` per sample, in order, or ``(sample, FrameError)`` when its
    images cannot be produced. Videos stay open between samples and are closed at the end."""
    with FrameSource(source, base_dir=base_dir, max_pixels=max_pixels) as frames:
        for sample in samples:
            try:
                yield sample, frames.images(sample)
            except FrameError as e:
                yield sample, e
