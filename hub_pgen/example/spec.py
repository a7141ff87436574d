"""The example's shape (:class:`ExampleSpec`) and the constants of its story.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

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
