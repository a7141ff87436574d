"""The example's frames: made to be checked after a lossy round trip (:func:`read_frame_id`), and
their encoding into the videos.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from hub_pgen.example.spec import (
    _BIT_ROWS,
    _BOX,
    _BRICK,
    _CHECK_BITS,
    _CODEC_OPTIONS,
    _ENCODERS,
    _EPISODE_BITS,
    _FRAME_BITS,
    _GRID_COLS,
    _GRID_ROWS,
    _PALETTE,
    _PIX_FMT,
    ExampleSpec,
    episode_lengths,
)

logger = logging.getLogger(__name__)



def _cell_edges(size: int, n: int) -> list[int]:
    """Even pixel edges: yuv420p keeps one colour sample per 2x2 block, so no block straddles two cells."""
    return [2 * (i * size // (2 * n)) for i in range(n)] + [size]


def _frame_bits(episode_index: int, frame_index: int) -> list[int]:
    """12 episode bits, 16 frame bits (MSB first), then a check nibble: the XOR of all nibbles with
    0b1010, so one flipped cell, or an all-black frame, never passes as a valid id."""
    check = 0b1010
    for value, nbits in ((episode_index, _EPISODE_BITS), (frame_index, _FRAME_BITS)):
        for shift in range(0, nbits, 4):
            check ^= (value >> shift) & 0xF
    bits = []
    for value, nbits in ((episode_index, _EPISODE_BITS), (frame_index, _FRAME_BITS), (check, _CHECK_BITS)):
        bits += [(value >> (nbits - 1 - i)) & 1 for i in range(nbits)]
    return bits


def _camera_colour(spec: ExampleSpec, camera: str) -> tuple[int, int, int]:
    names = (*spec.cameras, *spec.image_features)
    if camera not in names:
        raise ValueError(f"{camera!r} is not a camera of this spec (cameras: {names})")
    return _PALETTE[names.index(camera) % len(_PALETTE)]


def expected_frame(spec: ExampleSpec, camera: str, episode_index: int, frame_index: int) -> np.ndarray:
    """The exact (H, W, 3) uint8 image encoded for this camera, episode and frame."""
    length = episode_lengths(spec)[episode_index]
    h, w = spec.height, spec.width
    img = np.empty((h, w, 3), np.uint8)
    img[:] = _camera_colour(spec, camera)
    xs, ys = _cell_edges(w, _GRID_COLS), _cell_edges(h, _GRID_ROWS)
    for i, bit in enumerate(_frame_bits(episode_index, frame_index)):
        r, c = divmod(i, _GRID_COLS)
        img[ys[r]:ys[r + 1], xs[c]:xs[c + 1]] = 255 if bit else 0
    # the scene: a box at the right, a brick sliding towards it over the episode
    top, bottom = ys[_BIT_ROWS], h
    size = (bottom - top) // 4 * 2
    y0 = top + (bottom - top - size) // 4 * 2
    img[y0:y0 + size, w - size - 2:w - 2] = _BOX
    x0 = 2 * round((w - 2 * size - 4) / 2 * frame_index / max(1, length - 1))
    img[y0:y0 + size, x0:x0 + size] = _BRICK
    return img


def read_frame_id(image: Any) -> tuple[int, int]:
    """``(episode_index, frame_index)`` from a decoded frame: (H, W, 3) or (3, H, W), uint8 or float
    in [0, 1] (what lerobot returns), any size. Raises ValueError when the check bits disagree."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim != 3:
        raise ValueError(f"expected an (H, W, C) or (C, H, W) image, got shape {arr.shape}")
    luma = arr.astype(np.float64).mean(axis=-1)
    if np.issubdtype(arr.dtype, np.floating) and luma.max() <= 1.0:
        luma = luma * 255.0
    h, w = luma.shape
    xs, ys = _cell_edges(w, _GRID_COLS), _cell_edges(h, _GRID_ROWS)
    bits = []
    for i in range(_GRID_COLS * _BIT_ROWS):
        r, c = divmod(i, _GRID_COLS)
        dy, dx = (ys[r + 1] - ys[r]) // 4, (xs[c + 1] - xs[c]) // 4
        cell = luma[ys[r] + dy:ys[r + 1] - dy or None, xs[c] + dx:xs[c + 1] - dx or None]
        bits.append(int(cell.mean() >= 128))
    value = int("".join(map(str, bits)), 2)
    frame = (value >> _CHECK_BITS) & (2**_FRAME_BITS - 1)
    episode = value >> (_CHECK_BITS + _FRAME_BITS)
    if _frame_bits(episode, frame) != bits:
        raise ValueError(f"frame id check failed (read episode {episode}, frame {frame}): not an example frame "
                         "or too damaged to read")
    return episode, frame




@contextmanager
def keep_scheduling() -> Iterator[None]:
    """The calling thread's CPU scheduling policy and priority as they were, whatever runs inside.

    PyAV's SVT-AV1 (3.0, bundled in its wheels) switches the thread that first encodes to SCHED_FIFO at
    priority 99 when it runs as root, and leaves it so; every process started afterwards inherits it.
    A real-time process whose threads spin (torch's OpenMP workers) then holds its cores and never
    yields: with as many spinning threads as cores the machine stalls (seen: ``hub-pgen demo --backend
    transformers`` as root on 2 cores hung for good in its model's first call). Lowering one's own
    policy needs no privilege."""
    if not hasattr(os, "sched_getscheduler"):  # not Linux: nothing to keep
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            logger.debug("the video encoder changed this thread's scheduling policy; put back")
            os.sched_setscheduler(0, policy, param)


def _encode_video(path: Path, spec: ExampleSpec, frames: Iterator[np.ndarray], keyframes: set[int]) -> None:
    """One mp4 of episodes back to back: frame i has pts i at time base 1/fps, so an episode's frame
    at ``ts`` is found at ``from_timestamp + ts``; each episode starts on a keyframe."""
    import av

    # SVT-AV1 prints a ~15-line banner per encoder to stderr unless told otherwise (1 = errors only)
    os.environ.setdefault("SVT_LOG", "1")
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(spec.fps, 1)
    with keep_scheduling(), av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream(_ENCODERS[spec.codec], rate=rate,
                                options={"g": str(spec.gop), **_CODEC_OPTIONS[spec.codec]})
        # a video encoder's stream (av's stub types add_stream by the codec names it lists; libsvtav1 is not one)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, _PIX_FMT
        stream.codec_context.time_base = 1 / rate
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            if i in keyframes:
                frame.pict_type = av.video.frame.PictureType.I
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
