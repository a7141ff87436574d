"""Video frames at given times, from mp4 files that hold many episodes back to back (PyAV).

A :class:`VideoCursor` keeps one file of one camera open and decodes *forward* to each requested
time, so the frames a plan needs from one file cost one forward pass over it — never one
open + seek per frame. When the next wanted frame is far ahead it seeks to the keyframe before it
instead of decoding everything between ("far" = more than twice the keyframe interval seen so
far, at least ``MIN_SEEK_S``; ``SEEK_AFTER_S`` until two keyframes were seen); when a seek turns out not to skip anything (a file with
sparse keyframes) the cursor stops seeking forward and just decodes on. A request earlier than the
current position (rare: plan order is file order) seeks back.

Times are seconds in the file (``from_timestamp`` of the episode + the frame's timestamp). The frame
returned is the decoded frame nearest that time; one more than half a frame period away is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub_pgen.errors import FrameError

logger = logging.getLogger(__name__)

SEEK_AFTER_S = 0.5  # before the keyframe interval is known: seek when the target is this far ahead
MIN_SEEK_S = 0.1  # never seek for a smaller gap (a seek costs about a few decoded frames)


class VideoCursor:
    """Decode frames of one video file in increasing time order, reusing one open container."""

    def __init__(self, path: Path, fps: float, *, seek_after_s: float = SEEK_AFTER_S, threads: int | None = None) -> None:
        """``threads``: decoder threads; None lets FFmpeg choose (best for long forward runs), 1 is
        best when most frames are reached by a seek (no frame-threading pipeline to refill)."""
        self.path = Path(path)
        self.threads = threads
        self.fps = float(fps)
        self.tolerance = 0.5 / self.fps + 1e-4
        self.seek_after_s = seek_after_s
        self._container: Any = None
        self._stream: Any = None
        self._frames: Iterator[Any] | None = None
        self._prev: Any = None  # last frame decoded before the current one
        self._cur: Any = None  # last frame decoded
        self._seek_forward = True
        self._last_key: float | None = None
        self._key_gap: float | None = None  # longest keyframe interval seen (s)
        self.decoded = 0  # frames decoded (for benchmarks and tests)
        self.seeks = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def _open(self) -> None:
        import av

        try:
            self._container = av.open(str(self.path))
        except FileNotFoundError as e:
            raise FrameError(f"video file {self.path} does not exist", path=self.path,
                             hint="the dataset is incomplete: download it again") from e
        except (av.error.FFmpegError, OSError) as e:
            raise FrameError(f"cannot open video {self.path}: {e}", path=self.path,
                             hint="the file is damaged or not a video: download it again") from e
        if not self._container.streams.video:
            self.close()
            raise FrameError(f"{self.path} has no video stream", path=self.path)
        self._stream = self._container.streams.video[0]
        if self.threads is None:
            self._stream.thread_type = "AUTO"
        else:
            self._stream.codec_context.thread_count = self.threads
        self._restart()

    def _restart(self) -> None:
        self._frames = self._container.decode(self._stream)
        self._prev = self._cur = self._last_key = None

    @property
    def is_open(self) -> bool:
        return self._container is not None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._stream = self._frames = self._prev = self._cur = None

    def __enter__(self) -> VideoCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decoding --------------------------------------------------------------------------------

    def _next(self) -> Any:
        assert self._frames is not None
        import av

        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.error.FFmpegError as e:
            raise FrameError(f"decoding {self.path} failed: {e}", path=self.path,
                             hint="the video is damaged: download the dataset again") from e
        self._prev, self._cur = self._cur, frame
        self.decoded += 1
        if frame.key_frame:
            if self._last_key is not None and frame.time > self._last_key:
                self._key_gap = max(self._key_gap or 0.0, frame.time - self._last_key)
            self._last_key = frame.time
        return frame

    def _far(self, gap: float) -> bool:
        if self._key_gap is None:
            return gap > self.seek_after_s
        return gap > max(MIN_SEEK_S, 2 * self._key_gap)

    def _seek(self, t: float) -> None:
        import av

        assert self._stream is not None
        offset = int(max(t, 0.0) / float(self._stream.time_base))
        try:
            self._container.seek(offset, stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError as e:
            raise FrameError(f"seeking in {self.path} failed: {e}", path=self.path) from e
        self.seeks += 1
        self._restart()

    def frame_at(self, t: float) -> Any:
        """The ``av.VideoFrame`` nearest time ``t`` (seconds in the file)."""
        if self._container is None:
            self._open()
        pos = self._cur.time if self._cur is not None else None
        if pos is not None and t < pos - self.tolerance:
            if self._prev is not None and abs(self._prev.time - t) <= self.tolerance:
                return self._prev
            self._seek(t)  # backwards: rare (plan order is file order)
        elif self._seek_forward and self._far(t - (pos if pos is not None else 0.0)):
            self._seek(t)
            first = self._next()
            if first is not None and pos is not None and first.time <= pos:
                self._seek_forward = False  # keyframes too sparse: seeking re-decodes what we passed
                logger.debug("%s: keyframes sparser than %.1f s; decoding forward only", self.path, t - pos)
        while self._cur is None or self._cur.time < t - self.tolerance:
            if self._next() is None:
                break
        best = self._cur
        if self._prev is not None and best is not None and abs(self._prev.time - t) < abs(best.time - t):
            best = self._prev
        if best is None or abs(best.time - t) > self.tolerance:
            last = f"{best.time:.4f} s" if best is not None else "nothing"
            raise FrameError(
                f"{self.path} has no frame at {t:.4f} s (nearest decoded: {last})", path=self.path,
                hint="episodes metadata (videos/*/from_timestamp) and the video file disagree; "
                     "the dataset may be truncated",
            )
        return best

    def image_at(self, t: float) -> Any:
        """The frame nearest ``t`` as an RGB PIL image."""
        return frame_to_image(self.frame_at(t))


def frame_to_image(frame: Any) -> Any:
    """RGB PIL image of an ``av.VideoFrame``. Via numpy: ~10x faster than ``frame.to_image()`` at
    640x480 with PyAV 15 (same pixels; see docs/benchmarks.md)."""
    from PIL import Image

    return Image.fromarray(frame.to_ndarray(format="rgb24"))
