"""Small but real LeRobot v3.0 datasets, built from nothing, for tests, ``hub-pgen demo`` and benchmarks.

Every file is the one lerobot 0.6.1 writes itself (checked against ``LeRobotDataset.create`` output
and loaded with ``LeRobotDataset`` in ``tests/test_example.py``), so nothing downstream tests against
a fake: ``meta/info.json``, ``meta/tasks.parquet``, ``meta/episodes/chunk-000/file-000.parquet``
(with every ``stats/<feature>/<stat>`` column), ``meta/stats.json``, ``data/chunk-000/file-NNN.parquet``
and ``videos/<camera>/chunk-000/file-NNN.mp4`` holding ``episodes_per_file`` episodes back to back,
plus ``meta/skills.json`` (SPEC) telling a pick-and-place story.

Frames are made to be checked after a lossy round trip. The image is an 8 x 6 grid of cells: the
top four rows are 32 black/white cells carrying the episode index (12 bits), the frame index
(16 bits) and a 4-bit check, so :func:`read_frame_id` recovers ``(episode, frame)`` exactly from
any decoded (even resized) frame; the bottom two rows are the camera's own background colour with
a pink "brick" sliding towards a dark "box" over the episode. :func:`expected_frame` returns the
exact pixels that were encoded.

Nothing here imports lerobot: the runtime must not need it. lerobot's formulas are re-stated
instead (stats: ``compute_stats.get_feature_stats`` / ``aggregate_stats``; data parquet schema:
``datasets`` features of ``get_hf_features_from_features``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hub_pgen import layout
from hub_pgen.errors import OutputExistsError
from hub_pgen.fsio import umask as _umask

logger = logging.getLogger(__name__)

TASKS = (
    "Pick up the pink lego brick and place it in the transparent box",
    "Put the pink brick into the transparent box, then move the arm back",
)
COARSE_DESCRIPTION = TASKS[0]
SKILL_NAMES = ("move towards brick", "pick up brick", "move to box", "release into box", "retract")
JOINT_NAMES = ("shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos",
               "gripper.pos")
DEFAULT_CAMERAS = ("observation.images.up", "observation.images.side")

# Encoder settings. Quality is high on purpose (tests compare decoded pixels); GOP 2 is lerobot's
# default. One thread keeps the bytes identical on every machine (x264's output depends on it).
_ENCODERS = {"av1": "libsvtav1", "h264": "libx264"}
_CODEC_OPTIONS = {
    "av1": {"crf": "10", "preset": "8", "svtav1-params": "lp=1"},  # preset 12 smears some P frames at 640x480
    "h264": {"crf": "10", "preset": "medium", "threads": "1"},
}
_PIX_FMT = "yuv420p"

# Frame layout (fractions of the image, so a resized frame still reads back).
_GRID_COLS, _GRID_ROWS, _BIT_ROWS = 8, 6, 4
_EPISODE_BITS, _FRAME_BITS, _CHECK_BITS = 12, 16, 4
_PALETTE = ((70, 110, 170), (80, 150, 90), (170, 120, 60), (140, 80, 150), (60, 140, 150), (150, 150, 70))
_BRICK = (235, 90, 170)
_BOX = (40, 40, 40)

_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
_QUANTILE_BINS = 5000  # lerobot's RunningQuantileStats default
_STAT_ORDER = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")


@dataclass(frozen=True)
class ExampleSpec:
    """What to build. Defaults: 6 episodes of 40-60 frames, 2 AV1 cameras at 64x48, 2 data/video
    files (4 + 2 episodes), every skills.json edge case (see :func:`example_skills`)."""

    n_episodes: int = 6
    # int: every episode this long; tuple: each episode's length, cycled if shorter than n_episodes
    frames_per_episode: int | tuple[int, ...] = (45, 60, 50, 40, 55, 48)
    fps: int = 30
    cameras: tuple[str, ...] = DEFAULT_CAMERAS  # video features
    image_features: tuple[str, ...] = ()  # dtype "image": PNG bytes inside the data parquet
    codec: Literal["av1", "h264"] = "av1"
    width: int = 64
    height: int = 48
    episodes_per_file: int = 4  # data parquet files and video files each hold this many episodes
    tasks_index_name: str | None = "task"  # None: tasks.parquet index unnamed (``__index_level_0__``)
    skills: Literal["edge_cases", "regular", "none"] = "edge_cases"  # "none": no meta/skills.json
    seed: int = 0
    robot_type: str = "so101_follower"
    gop: int = 2  # keyframe interval; every episode also starts on a keyframe, as lerobot's files do

    def __post_init__(self) -> None:
        if not 1 <= self.n_episodes < 2**_EPISODE_BITS:
            raise ValueError(f"n_episodes must be in 1..{2**_EPISODE_BITS - 1}, got {self.n_episodes}")
        lengths = (self.frames_per_episode,) if isinstance(self.frames_per_episode, int) else self.frames_per_episode
        min_len = 2 * len(SKILL_NAMES) if self.skills != "none" else 2
        if not lengths or any(not isinstance(n, int) or not min_len <= n < 2**_FRAME_BITS for n in lengths):
            raise ValueError(f"frames_per_episode must be ints in {min_len}..{2**_FRAME_BITS - 1} "
                             f"(skills={self.skills!r}), got {self.frames_per_episode!r}")
        if self.codec not in _ENCODERS:
            raise ValueError(f"codec must be one of {sorted(_ENCODERS)}, got {self.codec!r}")
        if self.width < 64 or self.height < 48 or self.width % 2 or self.height % 2:
            raise ValueError(f"frames must be even-sized and at least 64x48, got {self.width}x{self.height}")
        names = (*self.cameras, *self.image_features)
        if len(set(names)) != len(names) or not all(n.startswith("observation.images.") for n in names):
            raise ValueError(f"camera names must be distinct 'observation.images.*' keys, got {names}")
        if self.fps <= 0 or self.episodes_per_file <= 0 or self.gop <= 0:
            raise ValueError(f"fps, episodes_per_file and gop must be positive, got "
                             f"{self.fps}, {self.episodes_per_file}, {self.gop}")
        if self.skills not in ("edge_cases", "regular", "none"):
            raise ValueError(f"skills must be 'edge_cases', 'regular' or 'none', got {self.skills!r}")


def svla_like_spec(n_episodes: int = 50, frames: int = 240, *, width: int = 96, height: int = 72,
                   codec: Literal["av1", "h264"] = "av1") -> ExampleSpec:
    """Shaped like lerobot/svla_so101_pickplace (30 fps, cameras up + side, ~``frames`` frames an
    episode, clean skills) but tiny in pixels: what benchmarks measure hub-pgen's overhead on.
    Lengths vary by up to +-15 frames, from a fixed seed; 25 episodes a file."""
    rng = np.random.default_rng(1234)
    spread = min(15, max(0, frames - 2 * len(SKILL_NAMES)))
    lengths = tuple(int(n) for n in rng.integers(frames - spread, frames + spread + 1, size=n_episodes))
    return ExampleSpec(n_episodes=n_episodes, frames_per_episode=lengths, fps=30, cameras=DEFAULT_CAMERAS,
                       codec=codec, width=width, height=height, episodes_per_file=25, skills="regular")


def episode_lengths(spec: ExampleSpec) -> list[int]:
    lengths = (spec.frames_per_episode,) if isinstance(spec.frames_per_episode, int) else spec.frames_per_episode
    return [int(lengths[e % len(lengths)]) for e in range(spec.n_episodes)]


def episode_task(episode_index: int) -> str:
    """Every third episode (1, 4, 7, ...) has the second task, so any 2+ episodes show both."""
    return TASKS[1] if episode_index % 3 == 1 else TASKS[0]


# --- frames -------------------------------------------------------------------------------------


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


# --- skills -------------------------------------------------------------------------------------


def _boundaries(spec: ExampleSpec, episode_index: int, length: int, n_skills: int) -> list[int]:
    """First frame of each skill, plus ``length``: near even fractions, jittered per episode
    (seeded), at least two frames a skill."""
    rng = np.random.default_rng([spec.seed, episode_index, 7])
    base = np.array([0.0, 0.2, 0.45, 0.65, 0.85, 1.0][: n_skills] + [1.0])
    fracs = base + np.concatenate([[0.0], rng.uniform(-0.03, 0.03, n_skills - 1), [0.0]])
    b = [int(round(f * length)) for f in fracs]
    b[0], b[-1] = 0, length
    for i in range(1, n_skills):
        b[i] = max(b[i], b[i - 1] + 2)
    for i in range(n_skills - 1, 0, -1):
        b[i] = min(b[i], b[i + 1] - 2)
    return b


def _t(frame_boundary: float, fps: int) -> float:
    """Skill boundaries fall half-way between two frames, so no frame is within rounding of one."""
    return round(max(0.0, frame_boundary - 0.5) / fps, 4)


def _episode_skills(spec: ExampleSpec, e: int, length: int, case: str) -> dict[str, Any]:
    n_skills = 4 if case == "regular" and e % 4 == 3 else len(SKILL_NAMES)
    b = _boundaries(spec, e, length, n_skills)
    skills: list[dict[str, Any]] = [
        {"name": SKILL_NAMES[i], "start": _t(b[i], spec.fps), "end": _t(b[i + 1], spec.fps)} for i in range(n_skills)]
    skills[0]["start"] = 0.0
    skills[-1]["end"] = round(length / spec.fps, 4)
    if case == "gap":  # "pick up brick" stops early: its last frames belong to no skill
        gap = max(1, (b[2] - b[1]) // 3)
        skills[1]["end"] = _t(b[2] - gap, spec.fps)
    elif case == "past_end":
        skills[-1]["end"] = round(length / spec.fps + 0.5, 4)
    elif case == "rounding_overlap":  # starts 0.4 ms before the previous skill ends
        skills[2]["start"] = round(skills[1]["end"] - 0.0004, 4)
    entry: dict[str, Any] = {"episode_index": e, "description": episode_task(e), "skills": skills}
    if case == "no_description":
        del entry["description"]
    return entry


_EDGE_CASES = ("regular", "gap", "past_end", "rounding_overlap", "no_description")


def example_skills(spec: ExampleSpec, lengths: Sequence[int]) -> dict[str, Any]:
    """The ``meta/skills.json`` content (``{}`` for ``skills="none"``, where none is written).

    ``"regular"``: every episode, contiguous skills, 5 of them (4 — no "retract" — when
    ``episode % 4 == 3``), boundaries half-way between frames. ``"edge_cases"``: episode ``e``
    gets case ``e % 5`` of

    0. regular (5 contiguous skills);
    1. a gap: "pick up brick" ends a third of its length early, so those frames have no skill;
    2. the last skill ends 0.5 s past the episode's end;
    3. "move to box" starts 0.4 ms (< 1e-3 s) before "pick up brick" ends — a rounding overlap
       that holds no frame;
    4. no ``description`` key: the episode falls back to ``coarse_description`` (and its own task
       is the *other* task string, so a fallback to the task would show);

    and the last episode (when there are 2+) is absent from the file. With the default 6 episodes
    each case occurs exactly once.
    """
    if spec.skills == "none":
        return {}
    episodes: dict[str, Any] = {}
    for e, length in enumerate(lengths):
        if spec.skills == "edge_cases":
            if e == len(lengths) - 1 and len(lengths) > 1:
                continue
            case = _EDGE_CASES[e % len(_EDGE_CASES)]
        else:
            case = "regular"
        episodes[str(e)] = _episode_skills(spec, e, length, case)
    return {
        "coarse_description": COARSE_DESCRIPTION,
        "skill_to_task_index": {name: i for i, name in enumerate(SKILL_NAMES)},
        "episodes": episodes,
    }


# --- data ---------------------------------------------------------------------------------------


def _trajectory(spec: ExampleSpec, e: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(state, action) float32 (length, 6): smooth joint motions, the gripper closing mid-episode;
    the action leads the state by one frame, as teleoperation does."""
    rng = np.random.default_rng([spec.seed, e, 1])
    t = np.linspace(0.0, 1.0, length + 1)[:, None]
    amp = rng.uniform(10.0, 40.0, 6)
    phase = rng.uniform(0, 2 * np.pi, 6)
    offset = rng.uniform(-20.0, 20.0, 6)
    path = offset + amp * np.sin(2 * np.pi * t * np.array([0.5, 0.7, 0.6, 0.9, 0.4, 0.0]) + phase)
    path[:, 5] = np.where((t[:, 0] > 0.3) & (t[:, 0] < 0.75), 5.0, 35.0)  # gripper: open, closed, open
    path += rng.normal(0.0, 0.05, path.shape)
    return path[:-1].astype(np.float32), path[1:].astype(np.float32)


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _features(spec: ExampleSpec) -> dict[str, dict[str, Any]]:
    """info.json features, in the order lerobot writes them (user features, then its defaults)."""
    video_info = {
        "video.height": spec.height, "video.width": spec.width, "video.codec": spec.codec,
        "video.pix_fmt": _PIX_FMT, "video.is_depth_map": False, "video.fps": spec.fps,
        "video.channels": 3, "has_audio": False,
    }
    image_shape = {"shape": [spec.height, spec.width, 3], "names": ["height", "width", "channels"]}
    features: dict[str, dict[str, Any]] = {
        "action": {"dtype": "float32", "shape": [6], "names": list(JOINT_NAMES)},
        "observation.state": {"dtype": "float32", "shape": [6], "names": list(JOINT_NAMES)},
    }
    for cam in spec.cameras:
        features[cam] = {"dtype": "video", **image_shape, "info": dict(video_info)}
    for cam in spec.image_features:
        features[cam] = {"dtype": "image", **image_shape}
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        features[name] = {"dtype": "float32" if name == "timestamp" else "int64", "shape": [1], "names": None}
    return features


def _data_schema(features: dict[str, dict[str, Any]]) -> pa.Schema:
    """The data parquet schema ``datasets`` gives lerobot's features, with the same ``huggingface``
    metadata (what ``Dataset.from_parquet`` and the Hub viewer read back)."""
    fields: list[pa.Field] = []
    hf: dict[str, dict[str, Any]] = {}
    for key, ft in features.items():
        if ft["dtype"] == "video":
            continue
        if ft["dtype"] == "image":
            fields.append(pa.field(key, pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
            hf[key] = {"_type": "Image"}
        elif ft["shape"] == [1]:
            fields.append(pa.field(key, pa.from_numpy_dtype(np.dtype(ft["dtype"]))))
            hf[key] = {"dtype": ft["dtype"], "_type": "Value"}
        else:
            fields.append(pa.field(key, pa.list_(pa.from_numpy_dtype(np.dtype(ft["dtype"])), ft["shape"][0])))
            hf[key] = {"feature": {"dtype": ft["dtype"], "_type": "Value"}, "length": ft["shape"][0], "_type": "List"}
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": hf}})})


# --- stats (lerobot's compute_stats, re-stated) -------------------------------------------------


def _hist_quantile(hist: np.ndarray, edges: np.ndarray, target: float) -> float:
    cumsum = np.cumsum(hist)
    idx = int(np.searchsorted(cumsum, target))
    if idx == 0:
        return float(edges[0])
    if idx >= len(cumsum):
        return float(edges[-1])
    before = cumsum[idx - 1]
    in_bin = cumsum[idx] - before
    if in_bin == 0:
        return float(edges[idx])
    return float(edges[idx] + (target - before) / in_bin * (edges[idx + 1] - edges[idx]))


def _column_stats(values: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    """One dimension's min/max/mean/std/quantiles from distinct values and how often each occurs:
    ``RunningQuantileStats`` on a single batch (histogram quantiles, 5000 bins)."""
    n = counts.sum()
    present = values[counts > 0]
    lo, hi = float(present.min()), float(present.max())
    mean = float((values * counts).sum() / n)
    mean_sq = float((values**2 * counts).sum() / n)
    edges = np.linspace(lo - 1e-10, hi + 1e-10, _QUANTILE_BINS + 1)
    hist, _ = np.histogram(values, bins=edges, weights=counts)
    out = {"min": lo, "max": hi, "mean": mean, "std": float(np.sqrt(max(0.0, mean_sq - mean**2)))}
    for q in _QUANTILES:
        out[f"q{int(q * 100):02d}"] = _hist_quantile(hist, edges, q * n)
    return out


def _vector_stats(data: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of an (n,) or (n, d) numeric feature: shape (1,) or (d,) each, count (n,)."""
    cols = data.reshape(len(data), -1).astype(np.float64)
    per_col = [_column_stats(cols[:, j], np.ones(len(cols))) for j in range(cols.shape[1])]
    stats = {k: np.array([c[k] for c in per_col]) for k in per_col[0]}
    stats["count"] = np.array([len(data)])
    return stats


def _sample_indices(length: int) -> list[int]:
    """lerobot samples at most ~100 frames of an episode for image stats (``sample_indices``)."""
    num = max(min(100, length), min(int(length**0.75), 10_000))
    return np.round(np.linspace(0, length - 1, num)).astype(int).tolist()


def _image_stats(frames: Iterator[np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Per-channel stats of uint8 frames in [0, 1], shape (3, 1, 1); count = frames sampled."""
    hist = np.zeros((3, 256), np.int64)
    for img in frames:
        for c in range(3):
            hist[c] += np.bincount(img[..., c].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64)
    per_ch = [_column_stats(values, hist[c].astype(np.float64)) for c in range(3)]
    stats = {k: np.array([c[k] for c in per_ch]).reshape(3, 1, 1) / 255.0 for k in per_ch[0]}
    stats["count"] = np.array([n])
    return stats


def _aggregate(stats_list: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """lerobot's ``aggregate_feature_stats``: count-weighted means, pooled variance and quantiles."""
    means = np.stack([s["mean"] for s in stats_list])
    variances = np.stack([s["std"] ** 2 for s in stats_list])
    counts = np.stack([s["count"] for s in stats_list])
    total = counts.sum(axis=0)
    while counts.ndim < means.ndim:
        counts = np.expand_dims(counts, -1)
    mean = (means * counts).sum(axis=0) / total
    var = ((variances + (means - mean) ** 2) * counts).sum(axis=0) / total
    out = {"min": np.min(np.stack([s["min"] for s in stats_list]), axis=0),
           "max": np.max(np.stack([s["max"] for s in stats_list]), axis=0),
           "mean": mean, "std": np.sqrt(var), "count": total}
    for q in _STAT_ORDER[5:]:
        out[q] = (np.stack([s[q] for s in stats_list]) * counts).sum(axis=0) / total
    return out


def _tolist(stats: dict[str, np.ndarray]) -> dict[str, list]:
    return {k: stats[k].tolist() for k in _STAT_ORDER}


# --- video --------------------------------------------------------------------------------------


def _encode_video(path: Path, spec: ExampleSpec, frames: Iterator[np.ndarray], keyframes: set[int]) -> None:
    """One mp4 of episodes back to back: frame i has pts i at time base 1/fps, so an episode's frame
    at ``ts`` is found at ``from_timestamp + ts``; each episode starts on a keyframe."""
    import av

    # SVT-AV1 prints a ~15-line banner per encoder to stderr unless told otherwise (1 = errors only)
    os.environ.setdefault("SVT_LOG", "1")
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(spec.fps, 1)
    with av.open(str(path), "w", format="mp4") as out:
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


# --- writing ------------------------------------------------------------------------------------


def _write_json(path: Path, obj: Any, indent: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_tasks(root: Path, spec: ExampleSpec, tasks: list[str]) -> None:
    index = pd.Index(tasks, name=spec.tasks_index_name)
    df = pd.DataFrame({"task_index": np.arange(len(tasks), dtype=np.int64)}, index=index)
    path = root / layout.TASKS_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path)


def _file_groups(spec: ExampleSpec) -> list[list[int]]:
    eps = list(range(spec.n_episodes))
    return [eps[i:i + spec.episodes_per_file] for i in range(0, len(eps), spec.episodes_per_file)]


def _write_files(root: Path, spec: ExampleSpec, lengths: list[int], tasks: list[str]) -> list[dict[str, Any]]:
    """Data parquet and videos, file by file; returns the episodes-metadata rows (stats included)."""
    features = _features(spec)
    schema = _data_schema(features)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
    rows: list[dict[str, Any]] = []
    for file_index, group in enumerate(_file_groups(spec)):
        data_path = root / layout.DEFAULT_DATA_PATH.format(chunk_index=0, file_index=file_index)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        offset = 0  # frames of this file before the episode
        with pq.ParquetWriter(data_path, schema, compression="snappy", use_dictionary=True) as writer:
            for e in group:
                table, stats = _episode_table(spec, e, lengths[e], int(starts[e]), tasks, schema)
                writer.write_table(table)  # one row group per episode, as lerobot writes
                row: dict[str, Any] = {
                    "episode_index": e, "tasks": [episode_task(e)], "length": lengths[e],
                    "data/chunk_index": 0, "data/file_index": file_index,
                    "dataset_from_index": int(starts[e]), "dataset_to_index": int(starts[e + 1]),
                }
                for cam in spec.cameras:
                    row |= {f"videos/{cam}/chunk_index": 0, f"videos/{cam}/file_index": file_index,
                            f"videos/{cam}/from_timestamp": offset / spec.fps,
                            f"videos/{cam}/to_timestamp": (offset + lengths[e]) / spec.fps}
                for key in features:
                    for name in _STAT_ORDER:
                        row[f"stats/{key}/{name}"] = stats[key][name].tolist()
                row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
                rows.append(row)
                offset += lengths[e]
        for cam in spec.cameras:
            keyframes = set(np.cumsum([0] + [lengths[e] for e in group[:-1]]).tolist())
            frames = (expected_frame(spec, cam, e, f) for e in group for f in range(lengths[e]))
            _encode_video(root / layout.DEFAULT_VIDEO_PATH.format(video_key=cam, chunk_index=0,
                                                                  file_index=file_index),
                          spec, frames, keyframes)
        logger.debug("wrote data and video file %d (episodes %s)", file_index, group)
    return rows


def _episode_table(spec: ExampleSpec, e: int, length: int, start: int, tasks: list[str],
                   schema: pa.Schema) -> tuple[pa.Table, dict[str, dict[str, np.ndarray]]]:
    state, action = _trajectory(spec, e, length)
    frame_index = np.arange(length, dtype=np.int64)
    columns: dict[str, Any] = {
        "action": action, "observation.state": state,
        "timestamp": (frame_index / spec.fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.full(length, e, np.int64),
        "index": start + frame_index,
        "task_index": np.full(length, tasks.index(episode_task(e)), np.int64),
    }
    stats = {k: _vector_stats(v) for k, v in columns.items()}
    sampled = _sample_indices(length)
    for cam in (*spec.cameras, *spec.image_features):
        stats[cam] = _image_stats((expected_frame(spec, cam, e, f) for f in sampled), len(sampled))
    for cam in spec.image_features:
        columns[cam] = [{"bytes": _png(expected_frame(spec, cam, e, f)), "path": f"frame-{f:06d}.png"}
                        for f in range(length)]
    arrays = []
    for field in schema:
        value = columns[field.name]
        if pa.types.is_fixed_size_list(field.type):
            value = pa.FixedSizeListArray.from_arrays(pa.array(value.ravel(), field.type.value_type),
                                                      field.type.list_size)
        arrays.append(pa.array(value, field.type) if not isinstance(value, pa.Array) else value)
    return pa.Table.from_arrays(arrays, schema=schema), stats


def _write_episodes(root: Path, rows: list[dict[str, Any]]) -> None:
    types: dict[str, pa.DataType] = {}
    for key, value in rows[0].items():
        if key == "tasks":
            types[key] = pa.list_(pa.string())
        elif key.endswith("_timestamp"):
            types[key] = pa.float64()
        elif key.endswith("/count"):
            types[key] = pa.list_(pa.int64())
        elif key.startswith("stats/"):
            depth = 1 + (isinstance(value[0], list)) * 2
            t: pa.DataType = pa.float64()
            for _ in range(depth):
                t = pa.list_(t)
            types[key] = t
        else:
            types[key] = pa.int64()
    table = pa.Table.from_pydict({k: [r[k] for r in rows] for k in types},
                                 schema=pa.schema([(k, t) for k, t in types.items()]))
    path = root / layout.EPISODES_PATH.format(chunk_index=0, file_index=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="snappy")


def _dataset_stats(spec: ExampleSpec, rows: list[dict[str, Any]]) -> dict[str, dict[str, list]]:
    stats = {}
    for key in _features(spec):
        per_ep = [{s: np.asarray(r[f"stats/{key}/{s}"]) for s in _STAT_ORDER} for r in rows]
        stats[key] = _tolist(_aggregate(per_ep))
    return stats


def _info(spec: ExampleSpec, lengths: list[int], n_tasks: int) -> dict[str, Any]:
    """meta/info.json with the keys (and order) lerobot 0.6.1's ``DatasetInfo.to_dict`` writes."""
    return {
        "codebase_version": layout.CODEBASE_VERSION,
        "fps": spec.fps,
        "features": _features(spec),
        "total_episodes": spec.n_episodes,
        "total_frames": int(sum(lengths)),
        "total_tasks": n_tasks,
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "data_path": layout.DEFAULT_DATA_PATH,
        "video_path": layout.DEFAULT_VIDEO_PATH if spec.cameras else None,
        "robot_type": spec.robot_type,
        "splits": {"train": f"0:{spec.n_episodes}"},
    }


def build_example_dataset(root: Path, spec: ExampleSpec = ExampleSpec()) -> Path:
    """Write a complete LeRobot v3.0 dataset at ``root`` (absent or an empty folder) and return it.

    The dataset is built in a sibling folder and moved into place at the end, so ``root`` is
    either complete or untouched. Same spec, same bytes.
    """
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise OutputExistsError(f"{root} exists and is not an empty folder", path=root,
                                hint="give a new path for the example dataset")
    root.parent.mkdir(parents=True, exist_ok=True)
    # a new folder of a random name (never one a link was planted at, as a fixed name could be)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    lengths = episode_lengths(spec)
    tasks = list(dict.fromkeys(episode_task(e) for e in range(spec.n_episodes)))
    try:
        rows = _write_files(staging, spec, lengths, tasks)
        _write_episodes(staging, rows)
        _write_tasks(staging, spec, tasks)
        _write_json(staging / layout.STATS_PATH, _dataset_stats(spec, rows))
        skills = example_skills(spec, lengths)
        if skills:
            _write_json(staging / layout.SKILLS_PATH, skills, indent=2)
        _write_json(staging / layout.INFO_PATH, _info(spec, lengths, len(tasks)))
        if root.exists():
            root.rmdir()
        os.chmod(staging, 0o777 & ~_umask())  # as mkdir makes it (mkdtemp makes it 0700)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("example dataset %s: %d episodes, %d frames, cameras %s (%s)", root, spec.n_episodes,
                sum(lengths), list(spec.cameras) + list(spec.image_features), spec.codec)
    return root
