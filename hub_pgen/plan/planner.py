"""Turn a dataset and its skills into the samples pgen is asked about.

Two steps, so ``--dry-run`` can count every strategy without generating anything:

1. :func:`segment_dataset` reads each episode's frame timestamps and cuts it into *segments*:
   maximal runs of consecutive frames owned by one skill (SPEC: ``start <= ts < end`` with a 1e-4 s
   allowance for float32 timestamps; the later skill owns an overlap; frames outside every skill
   belong to no segment and keep -1).
2. :func:`sample_segments` places samples inside segments — ``segment``: one at each segment's first
   frame; ``interval``: the first frame and then every S seconds; ``frame``: every frame. A sample
   covers the frames from itself to the next sample of its segment, so it never spans a skill
   boundary. Scenario/response types are then assigned by the seeded stratified schedule.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hub_pgen import layout
from hub_pgen.data import SkillsFile, SourceDataset
from hub_pgen.errors import SourceError, UsageError
from hub_pgen.notices import Notice, Notices
from hub_pgen.plan.table import SampleTable, rows, sample_id
from hub_pgen.plan.taxonomy import type_codes

logger = logging.getLogger(__name__)

Strategy = Literal["segment", "interval", "frame"]
STRATEGIES: tuple[Strategy, ...] = ("segment", "interval", "frame")


@dataclass(frozen=True)
class Segment:
    episode_index: int
    position: int  # index of the skill in the episode's (sorted) skill list
    skill: str
    history: tuple[str, ...]
    task_description: str
    frame_start: int
    frame_end: int  # exclusive
    # of frames frame_start..frame_end-1, as floats: an array('d'), 8 bytes a frame (a tuple of floats was 32)
    timestamps: Sequence[float]
    row_start: int  # global dataset index of frame_start


@dataclass(frozen=True)
class Plan:
    samples: SampleTable  # columns; a Sample each when asked for (hub_pgen.plan.table)
    segments: tuple[Segment, ...]
    episodes: tuple[int, ...]
    cameras: tuple[str, ...]
    strategy: Strategy
    frames_total: int
    frames_in_skills: int
    episodes_without_skills: tuple[int, ...]
    notices: tuple[Notice, ...] = ()  # tolerated input problems, by kind (hub_pgen.notices)
    taken: tuple[str, ...] = ()  # samples not planned: their frame already has a dialogue in the source


MAX_EPISODE_RANGE = 1_000_000  # a range longer than this is a typo, not a dataset


def format_episode_list(values: Sequence[int]) -> str:
    """The inverse of :func:`parse_episode_list`: [0, 1, 2, 5] → ``"0-2,5"`` (short messages for large datasets)."""
    out: list[str] = []
    start = prev = None
    for v in values:
        if start is not None and prev is not None and v == prev + 1:
            prev = v
            continue
        if start is not None:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = v
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ",".join(out) or "(none)"


def parse_episode_list(text: str | None) -> tuple[int, ...] | None:
    """``"0,3-5"`` → (0, 3, 4, 5)."""
    if text is None or not text.strip():
        return None
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            if sep:
                a, b = int(lo), int(hi)
                if b < a or a < 0:
                    raise ValueError
                if b - a >= MAX_EPISODE_RANGE:
                    raise UsageError(f"--episodes: the range {part} names {b - a + 1:,} episodes; a dataset has far "
                                     "fewer", hint="give the episodes you want, e.g. --episodes 0-99 (or leave "
                                                   "--episodes out for all of them)")
                out.update(range(a, b + 1))
            else:
                if int(part) < 0:
                    raise ValueError
                out.add(int(part))
        except UsageError:
            raise
        except ValueError:
            raise UsageError(f"--episodes: {part!r} is not an index or a range like 3-5",
                             hint="give episode indices and ascending ranges, comma-separated: --episodes 0,3-5") from None
    return tuple(sorted(out))


def choose_cameras(
    source: SourceDataset, *, image_keys: Sequence[str] | None = None, num_views: int | None = None
) -> tuple[str, ...]:
    available = source.camera_keys
    if image_keys:
        unknown = [k for k in image_keys if k not in available]
        if unknown:
            raise UsageError(
                f"--image-keys: camera(s) {unknown} do not exist in this dataset; "
                f"available: {', '.join(available) or '(none)'}",
                hint="camera keys are the full feature names in meta/info.json, e.g. observation.images.up",
            )
        cams = tuple(image_keys)
    else:
        cams = available
    if num_views is not None:
        if num_views < 0:
            raise UsageError(f"--num-image-views-per-sample must be >= 0, got {num_views}")
        if num_views > len(cams):
            raise UsageError(
                f"--num-image-views-per-sample {num_views} asks for more cameras than there are: "
                f"{len(cams)} ({', '.join(cams) or 'none'})",
                hint=f"use --num-image-views-per-sample {len(cams)} or less (0 = text only)",
            )
        cams = cams[:num_views]
    return cams


def task_description_for(episode_index: int, skills: SkillsFile, source: SourceDataset, first_task_index: int | None) -> str:
    """SPEC: the episode's description, else the coarse description, else the episode's own task."""
    ep_skills = skills.episodes.get(episode_index)
    if ep_skills is not None and ep_skills.description:
        return ep_skills.description
    if skills.coarse_description:
        return skills.coarse_description
    ep = source.episodes[episode_index]
    if ep.tasks:
        return ep.tasks[0]
    if first_task_index is not None and first_task_index in source.task_indices:
        return source.tasks[source.task_indices.index(first_task_index)]
    return ""


def read_frame_times(source: SourceDataset, episodes: Iterable[int]) -> dict[int, tuple[np.ndarray, int | None]]:
    """Per episode: its frames' timestamps (in frame order) and the task_index of its first frame.
    Reads only four columns of each data file, once per file."""
    wanted = set(episodes)
    by_file: dict[str, list[int]] = {}
    out: dict[int, tuple[np.ndarray, int | None]] = {}
    for e in wanted:
        ep = source.episodes[e]
        if ep.data_path in source.absent_data:
            out[e] = (grid_times(source, e), None)
        else:
            by_file.setdefault(ep.data_path, []).append(e)
    for rel, eps in sorted(by_file.items()):
        path = source.root / rel
        try:
            table = pq.read_table(path, columns=["episode_index", "frame_index", "timestamp", "task_index"])
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(
                f"{path} is not a readable data parquet ({exc})", path=path, hint="the file may be truncated"
            ) from exc
        ep_col = table.column("episode_index").to_numpy()
        fi_col = table.column("frame_index").to_numpy()
        ts_col = table.column("timestamp").to_numpy().astype(np.float64)
        ti_col = table.column("task_index").to_numpy()
        for e in eps:
            mask = ep_col == e
            length = source.episodes[e].length
            frames = fi_col[mask]
            if len(frames) != length or not np.array_equal(np.sort(frames), np.arange(length)):
                raise SourceError(
                    f"{path}: episode {e} has {len(frames)} rows with frame_index "
                    f"{frames.min() if len(frames) else '-'}..{frames.max() if len(frames) else '-'}, "
                    f"but the episodes metadata says length {length}",
                    path=path,
                )
            order = np.argsort(frames, kind="stable")
            ti = ti_col[mask][order]
            out[e] = (ts_col[mask][order], int(ti[0]) if len(ti) else None)
    return out


def grid_times(source: SourceDataset, episode: int) -> np.ndarray:
    """An episode's frame times without its data file: lerobot's grid (``frame_index / fps`` as float32,
    as lerobot writes them), which its meta/episodes stats vouch for (``Episode.on_grid``). Only a shard
    plans other shards' episodes this way (hub_pgen.source.needs); their own frames come from the data."""
    ep = source.episodes[episode]
    if not ep.on_grid:
        raise SourceError(f"episode {episode}: its data file {ep.data_path} is not here and its meta/episodes stats "
                          "do not show its frame times", path=source.root / ep.data_path,
                          hint="report this with the command you ran (hub-pgen fetches such files first)")
    return (np.arange(ep.length, dtype=np.float64) / source.fps).astype(np.float32).astype(np.float64)


def frame_skill_positions(timestamps: np.ndarray, starts: Sequence[float], ends: Sequence[float]) -> np.ndarray:
    """Position of the owning skill for each frame, -1 outside every skill. Later skills win overlaps."""
    owner = np.full(len(timestamps), -1, dtype=np.int64)
    for k, (start, end) in enumerate(zip(starts, ends)):
        inside = (timestamps >= start - layout.TIME_EPS) & (timestamps < end - layout.TIME_EPS)
        owner[inside] = k
    return owner


def segment_dataset(
    source: SourceDataset, skills: SkillsFile, *, episodes: Sequence[int] | None = None,
    notices: Notices | None = None,
) -> tuple[list[Segment], dict[int, int], tuple[int, ...]]:
    """Segments of the chosen episodes, frame counts per episode, and the episodes with no skills."""
    chosen = sorted(source.episodes) if episodes is None else list(episodes)
    unknown = [e for e in chosen if e not in source.episodes]
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (f", … ({len(unknown)} in all)" if len(unknown) > 10 else "")
        raise UsageError(
            f"--episodes: {shown} not in the dataset (it has {len(source.episodes)} episodes, "
            f"{min(source.episodes, default=0)}..{max(source.episodes, default=-1)})",
            hint="episodes are named by their episode_index, within the range above",
        )
    notices = notices if notices is not None else Notices()
    times = read_frame_times(source, chosen)
    segments: list[Segment] = []
    lengths: dict[int, int] = {}
    without: list[int] = []
    for e in chosen:
        ts, first_task = times.pop(e)  # let each episode's times go once its segments hold them
        lengths[e] = len(ts)
        ep_skills = skills.episodes.get(e)
        if ep_skills is None or not ep_skills.skills:
            without.append(e)
            continue
        names = [s.name for s in ep_skills.skills]
        owner = frame_skill_positions(ts, [s.start for s in ep_skills.skills], [s.end for s in ep_skills.skills])
        duration = len(ts) / source.fps
        for s in ep_skills.skills:
            if s.start >= duration - layout.TIME_EPS:
                notices.add("a skill starts after its episode ends (it gets no frames)", e,
                            f"episode {e}: {s.name!r} starts at {s.start:.3f} s, the episode ends at {duration:.3f} s")
            elif s.end > duration + 1.0 / source.fps:
                notices.add("a skill ends past its episode's end (clipped to the last frame)", e,
                            f"episode {e}: {s.name!r} ends at {s.end:.3f} s, the episode at {duration:.3f} s")
        description = task_description_for(e, skills, source, first_task)
        row0 = source.episodes[e].dataset_from_index
        for start, end in _runs(owner):
            k = int(owner[start])
            segments.append(
                Segment(
                    episode_index=e,
                    position=k,
                    skill=names[k],
                    history=tuple(names[:k]),
                    task_description=description,
                    frame_start=start,
                    frame_end=end,
                    timestamps=array("d", ts[start:end].tolist()),
                    row_start=row0 + start,
                )
            )
    return segments, lengths, tuple(without)


def sample_starts(segment: Segment, strategy: Strategy, interval: float | None) -> list[int]:
    """Frame offsets (within the segment) where samples begin."""
    n = segment.frame_end - segment.frame_start
    if strategy == "segment":
        return [0]
    if strategy == "frame":
        return list(range(n))
    if not interval or interval <= 0:
        raise UsageError(f"--sample-interval must be > 0 seconds for --sampling interval, got {interval}")
    starts = [0]
    t0 = segment.timestamps[0]
    next_t = t0 + interval
    for i in range(1, n):
        if segment.timestamps[i] >= next_t - layout.TIME_EPS:
            starts.append(i)
            while segment.timestamps[i] >= next_t - layout.TIME_EPS:
                next_t += interval
    return starts


def sample_segments(
    segments: Sequence[Segment],
    *,
    strategy: Strategy,
    interval: float | None,
    cameras: Sequence[str],
    source: SourceDataset,
    seed: int,
    scenario_mix: dict[str, float] | None = None,
    response_mix: dict[str, float] | None = None,
) -> SampleTable:
    """The samples of ``segments``, in plan order, as columns (hub_pgen.plan.table)."""
    seg_col: list[np.ndarray] = []
    start_col: list[np.ndarray] = []
    end_col: list[np.ndarray] = []
    for k, seg in enumerate(segments):
        starts = np.asarray(sample_starts(seg, strategy, interval), dtype=np.int32)
        ends = np.append(starts[1:], np.int32(seg.frame_end - seg.frame_start))
        seg_col.append(np.full(len(starts), k, dtype=np.int32))
        start_col.append(starts + np.int32(seg.frame_start))
        end_col.append(ends + np.int32(seg.frame_start))
    n = sum(len(c) for c in seg_col)
    sc_names, sc, rt_names, rt = type_codes(n, seed=seed, scenario_mix=scenario_mix, response_mix=response_mix)

    def joined(cols: list[np.ndarray], dtype: Any) -> np.ndarray:
        out = np.concatenate(cols).astype(dtype, copy=False) if cols else np.zeros(0, dtype=dtype)
        cols.clear()  # each segment's piece goes as soon as the column is whole
        return out

    return SampleTable(segments, joined(seg_col, np.int32), joined(start_col, np.int32), joined(end_col, np.int32),
                       sc, rt, scenario_names=sc_names, response_names=rt_names, cameras=cameras,
                       video=frozenset(source.video_keys))


def build_plan(
    source: SourceDataset,
    skills: SkillsFile,
    *,
    strategy: Strategy = "segment",
    interval: float | None = None,
    episodes: Sequence[int] | None = None,
    cameras: Sequence[str] = (),
    seed: int = 0,
    scenario_mix: dict[str, float] | None = None,
    response_mix: dict[str, float] | None = None,
) -> Plan:
    notices = Notices(list(skills.notices))
    segments, lengths, without = segment_dataset(source, skills, episodes=episodes, notices=notices)
    samples = sample_segments(
        segments,
        strategy=strategy,
        interval=interval,
        cameras=cameras,
        source=source,
        seed=seed,
        scenario_mix=scenario_mix,
        response_mix=response_mix,
    )
    # a frame whose source language_events already carry a dialogue (lerobot-annotate's, or an earlier
    # run's) keeps it and gets none generated: two on one frame make lerobot's resolvers ambiguous, and
    # the seed's column would then disagree with the language columns (types are assigned first, so
    # the other samples keep theirs)
    held = source.language.dialogue_frames if source.language is not None else frozenset()
    taken: tuple[str, ...] = ()
    if held:
        at = {(e, f): i for i, (e, f) in enumerate(rows(samples.episodes(), samples.frames()[0])) if (e, f) in held}
        taken = tuple(sample_id(e, f) for e, f in at)
        for sid, e in zip(taken, (e for e, _ in at)):
            notices.add("a sampled frame already has a dialogue in the source's language_events (kept; none "
                        "generated there)", e, sid)
        if at:
            keep = np.ones(len(samples), dtype=bool)
            keep[list(at.values())] = False
            samples = samples.take(np.flatnonzero(keep))
    return Plan(
        samples=samples,
        segments=tuple(segments),
        episodes=tuple(sorted(lengths)),
        cameras=tuple(cameras),
        strategy=strategy,
        frames_total=sum(lengths.values()),
        frames_in_skills=sum(s.frame_end - s.frame_start for s in segments),
        episodes_without_skills=without,
        notices=tuple(notices.items),
        taken=taken,
    )


def count_samples(segments: Sequence[Segment], strategy: Strategy, interval: float | None) -> int:
    return sum(len(sample_starts(s, strategy, interval)) for s in segments)


def _runs(owner: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of maximal runs of equal, non-negative values."""
    runs: list[tuple[int, int]] = []
    if len(owner) == 0:
        return runs
    change = np.flatnonzero(np.diff(owner)) + 1
    bounds = np.concatenate(([0], change, [len(owner)]))
    for a, b in zip(bounds[:-1], bounds[1:]):
        if owner[a] >= 0:
            runs.append((int(a), int(b)))
    return runs
