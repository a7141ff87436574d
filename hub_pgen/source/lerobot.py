"""Read a LeRobot v3.0 dataset folder's metadata into a :class:`SourceDataset`.

Only metadata is read here (info.json, tasks.parquet, the episodes parquet files); frames and data
rows are read by the stages that need them. The folder is never written.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Collection, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hub_pgen import layout
from hub_pgen.data import Episode, SourceDataset, VideoSpan
from hub_pgen.errors import SourceError, SourceNotFoundError, UnsupportedVersionError
from hub_pgen.source import checks
from hub_pgen.source.jsonfile import JsonProblem, read_strict

logger = logging.getLogger(__name__)

_REQUIRED_INFO_KEYS = ("codebase_version", "fps", "features", "data_path")
_REQUIRED_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
# the per-episode timestamp stats that tell whether an episode's frames sit on lerobot's grid
_GRID_STATS = ("stats/timestamp/min", "stats/timestamp/max", "stats/timestamp/mean", "stats/timestamp/count")
_REQUIRED_EPISODE_COLUMNS = (
    "episode_index",
    "length",
    "dataset_from_index",
    "dataset_to_index",
    "data/chunk_index",
    "data/file_index",
)


def load_info(root: Path, *, output: bool = False) -> dict[str, Any]:
    """``meta/info.json``, checked. ``output``: the folder is one hub-pgen wrote (read for its review), so
    its ``task_index_high_level`` feature is expected rather than refused."""
    path = root / layout.INFO_PATH
    inside = sorted(p.parent.parent for p in Path(root).glob("*/" + layout.INFO_PATH))[:3] if not path.exists() else []
    info = _read_json_object(path, missing=f"{path} not found: {root} is not a LeRobot dataset folder",
                             hint=(f"did you mean --root {' or --root '.join(map(str, inside))}? (it holds "
                                   "meta/info.json)" if inside else
                                   "point --root at the folder that holds meta/info.json, or use --repo-id"))
    missing = [k for k in _REQUIRED_INFO_KEYS if k not in info]
    if missing:
        raise SourceError(f"{path} lacks required key(s) {missing}", path=path,
                          hint="a LeRobot v3.0 info.json has codebase_version, fps, features and data_path; "
                               "the file may be damaged or from another tool")
    if info["codebase_version"] != layout.CODEBASE_VERSION:
        raise UnsupportedVersionError(info["codebase_version"], path=path)
    features = info["features"]
    if not isinstance(features, dict):
        raise SourceError(f"{path}: 'features' must be an object", path=path)
    bad = [k for k, ft in features.items() if not isinstance(ft, dict) or not isinstance(ft.get("dtype"), str)]
    if bad:
        raise SourceError(f"{path}: feature(s) {bad} must be objects with a 'dtype' string", path=path)
    missing = [k for k in _REQUIRED_FEATURES if k not in features]
    if missing:
        raise SourceError(
            f"{path}: features lack {missing}, which every LeRobot v3.0 dataset has", path=path
        )
    if layout.FEATURE in features and not output:
        raise SourceError(
            f"{path}: the dataset already has a '{layout.FEATURE}' feature",
            path=path,
            hint="run hub-pgen on the original dataset, not on one of its outputs",
        )
    fps = info["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise SourceError(f"{path}: fps must be a positive number, got {fps!r}", path=path)
    if any(ft.get("dtype") == "video" for ft in features.values()) and not isinstance(info.get("video_path"), str):
        raise SourceError(f"{path}: the dataset has video features but no 'video_path' template", path=path,
                          hint=f"add \"video_path\": {layout.DEFAULT_VIDEO_PATH!r} (LeRobot's) to meta/info.json")
    return info


def load_tasks(root: Path) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Task strings and their task_index. The index column is named ``task`` in some datasets and
    left unnamed (``__index_level_0__``) in others; both are read the same way."""
    path = root / layout.TASKS_PATH
    if not path.is_file():
        raise SourceNotFoundError(f"{path} not found", path=path,
                                  hint="the dataset is incomplete: download it again")
    table = _read_parquet(path)
    names = table.column_names
    if "task_index" not in names:
        raise SourceError(f"{path} has no 'task_index' column (columns: {names})", path=path)
    task_col = next((c for c in ("task", "__index_level_0__") if c in names), None)
    if task_col is None:
        pandas_index = _pandas_index_columns(table)
        task_col = pandas_index[0] if pandas_index else None
    if task_col is None:
        raise SourceError(f"{path} has no task string index (columns: {names})", path=path)
    for col in (task_col, "task_index"):
        if table.column(col).null_count:
            raise SourceError(f"{path}: column {col!r} has {table.column(col).null_count} empty (null) value(s)",
                              path=path, hint="every task needs its string and its task_index: the file is damaged")
    tasks = tuple(str(t) for t in table.column(task_col).to_pylist())
    indices = tuple(int(i) for i in table.column("task_index").to_pylist())
    if len(set(indices)) != len(indices):
        raise SourceError(f"{path}: task_index values are not unique", path=path)
    if len(set(tasks)) != len(tasks):
        twice = sorted({t for t in tasks if tasks.count(t) > 1})[:3]
        raise SourceError(f"{path}: task string(s) {twice} appear more than once", path=path,
                          hint="LeRobot keys tasks by their string: each must be unique; the file is damaged")
    return tasks, indices


def load_episodes(root: Path, info: dict[str, Any]) -> dict[int, Episode]:
    files = sorted((root / layout.EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    if not files:
        raise SourceNotFoundError(
            f"no episodes metadata under {root / layout.EPISODES_DIR} (expected chunk-*/file-*.parquet)",
            path=root / layout.EPISODES_DIR,
        )
    video_keys = [k for k, ft in info["features"].items() if ft.get("dtype") == "video"]
    episodes: dict[int, Episode] = {}
    for path in files:
        table = _read_parquet(path)
        missing = [c for c in _REQUIRED_EPISODE_COLUMNS if c not in table.column_names]
        for key in video_keys:
            missing += [
                c
                for c in (f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp")
                if c not in table.column_names
            ]
        if missing:
            raise SourceError(f"{path} lacks column(s) {missing}", path=path,
                              hint="meta/info.json and meta/episodes disagree (a feature without its episode "
                                   "columns?): the dataset may be damaged; download it again")
        wanted = [c for c in table.column_names if not c.startswith("stats/") or c in _GRID_STATS]
        for row in table.select(wanted).to_pylist():
            ep = _episode_from_row(row, info, video_keys, path)
            if ep.index in episodes:
                raise SourceError(f"{path}: episode {ep.index} appears twice in the episodes metadata", path=path)
            episodes[ep.index] = ep
    return dict(sorted(episodes.items()))


def require_folder(root: Path) -> None:
    """A ``--root`` that is not a folder stops here (also checked before a model stack is looked for)."""
    root = Path(root)
    if root.is_dir():
        return
    if root.exists():
        above = next((p for p in root.parents if (p / layout.INFO_PATH).is_file()), None)
        raise SourceNotFoundError(f"{root} is a file, not a dataset folder", path=root,
                                  hint=f"did you mean --root {above}?" if above is not None else
                                  "point --root at the folder that holds meta/info.json, or use --repo-id")
    raise SourceNotFoundError(f"dataset folder {root} does not exist", path=root,
                              hint="point --root at the folder that holds meta/info.json, or use --repo-id")


def load_metadata(root: Path, *, repo_id: str | None = None, revision: str | None = None) -> SourceDataset:
    """The dataset as ``meta/`` describes it (info, tasks, episodes), before any data or video file is
    read: what a Hub source looks at to choose the files the run needs. Not checked against the data."""
    root = Path(root)
    require_folder(root)
    info = load_info(root)
    tasks, task_indices = load_tasks(root)
    episodes = load_episodes(root, info)
    checks.check_counts(info, episodes, root / layout.INFO_PATH)
    return SourceDataset(root=root, info=info, tasks=tasks, task_indices=task_indices, episodes=episodes,
                         repo_id=repo_id, revision=revision, absent_data=frozenset(ep.data_path for ep in
                                                                                  episodes.values()))


def load_source(root: Path, *, repo_id: str | None = None, revision: str | None = None,
                check_videos: Sequence[str] | None = None, data_paths: Collection[str] | None = None) -> SourceDataset:
    """Read a dataset folder's metadata. Raises :class:`SourceError` naming the file at fault.

    The data files in ``data_paths`` (None: every one) must be there and agree with the metadata, and
    the video files of ``check_videos`` (None: every camera) — a Hub source checks only what it
    downloaded so far; the rest is ``absent_data`` until it comes down (:func:`hub_pgen.source.hub.fetch_rest`)."""
    root = Path(root)
    require_folder(root)
    # a Hub download's files are links into the cache folder of that repo (snapshots/<sha> -> blobs/)
    hub_cache = [root.parents[1]] if repo_id and root.parent.name == "snapshots" else []
    checks.check_tree(root, allowed=hub_cache)
    info = load_info(root)
    tasks, task_indices = load_tasks(root)
    episodes = load_episodes(root, info)
    checks.check_counts(info, episodes, root / layout.INFO_PATH)
    every = sorted({ep.data_path for ep in episodes.values()})
    present = every if data_paths is None else sorted(set(every) & set(data_paths))
    for rel in present:
        check_data_file(root / rel, [e for e, ep in episodes.items() if ep.data_path == rel])
    checks.check_frames(root, {e: ep for e, ep in episodes.items() if ep.data_path in set(present)}, task_indices)
    checks.check_stats(load_stats(root), root / layout.STATS_PATH)
    language = checks.check_language(root, info, present)
    logger.info("source %s: %d episodes, %d tasks, fps %s", root, len(episodes), len(tasks), info["fps"])
    source = SourceDataset(
        root=root,
        info=info,
        tasks=tasks,
        task_indices=task_indices,
        episodes=episodes,
        repo_id=repo_id,
        revision=revision,
        language=language,
        absent_data=frozenset(every) - frozenset(present),
    )
    require_videos(source, check_videos)
    return source


def check_data_file(path: Path, episodes: Sequence[int]) -> None:
    """A data parquet the episodes metadata names must be there, readable (its footer: a truncated file
    has none) and hold the columns hub-pgen reads; checked at load, before any output exists."""
    which = f"episode(s) {', '.join(map(str, episodes))}"
    if not path.is_file():
        raise SourceNotFoundError(f"{which}: data file {path} is missing", path=path,
                                  hint="the dataset is incomplete: download it again")
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as e:
        raise SourceError(f"{path} ({which}) is not a readable data parquet ({e})", path=path,
                          hint="the file may be truncated: download the dataset again") from e
    missing = [c for c in ("episode_index", "frame_index", "timestamp", "task_index") if c not in names]
    if missing:
        raise SourceError(f"{path} ({which}) lacks column(s) {missing}", path=path,
                          hint="every LeRobot v3.0 data file has them: the file may be damaged; download it again")


def load_stats(root: Path) -> dict[str, Any]:
    """``meta/stats.json``: the new dataset extends it, so it must be there and hold a JSON object."""
    path = root / layout.STATS_PATH
    return _read_json_object(path, missing=f"{path} not found",
                             hint="the dataset is incomplete (LeRobot v3.0 datasets carry meta/stats.json): "
                                  "download it again, or recompute the stats with lerobot")


def _read_json_object(path: Path, *, missing: str, hint: str) -> dict[str, Any]:
    """A metadata file holding one JSON object; ``missing``/``hint`` say what its absence means."""
    if not path.is_file():
        raise SourceNotFoundError(missing, path=path, hint=hint)
    try:
        obj = read_strict(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceError(f"{path} is not valid JSON: {e}", path=path,
                          hint="the file is damaged: download the dataset again") from e
    except JsonProblem as e:
        raise SourceError(f"{path}: {e}", path=path,
                          hint=getattr(e, "hint", None)
                          or "fix the file (or download the dataset again): LeRobot never writes this") from e
    if not isinstance(obj, dict):
        raise SourceError(f"{path} must hold a JSON object, got {type(obj).__name__}", path=path)
    return obj


def require_videos(source: SourceDataset, keys: Sequence[str] | None = None, *,
                   episodes: Collection[int] | None = None) -> None:
    """Raise :class:`SourceNotFoundError` listing the video files of ``keys`` (None: all) for
    ``episodes`` (None: all) that the episodes metadata names but the folder lacks: the new dataset
    would be incomplete, or a sample's frames could not be read."""
    wanted = source.video_keys if keys is None else [k for k in keys if k in source.video_keys]
    missing: dict[str, list[int]] = {}
    for ep in source.episodes.values():
        if episodes is not None and ep.index not in episodes:
            continue
        for key in wanted:
            span = ep.videos.get(key)
            if span is not None and not (source.root / span.path).is_file():
                missing.setdefault(span.path, []).append(ep.index)
    if missing:
        shown = "; ".join(f"{p} (episodes {', '.join(map(str, eps))})" for p, eps in sorted(missing.items())[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        first = source.root / sorted(missing)[0]
        raise SourceNotFoundError(
            f"{len(missing)} video file(s) named by meta/episodes are missing under {source.root}: {shown}{more}",
            path=first, hint="the dataset is incomplete: download it again (or copy the videos folder)",
        )


# --- helpers ----------------------------------------------------------------------------------


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise SourceError(
            f"{path} is not a readable parquet file ({e})",
            path=path,
            hint="the file may be truncated: download the dataset again",
        ) from e


def _pandas_index_columns(table: pa.Table) -> list[str]:
    meta = table.schema.metadata or {}
    raw = meta.get(b"pandas")
    if not raw:
        return []
    try:
        cols = json.loads(raw).get("index_columns", [])
    except json.JSONDecodeError:
        return []
    return [c for c in cols if isinstance(c, str) and c in table.column_names]


def _format_path(template: str, path: Path, **kwargs: Any) -> str:
    try:
        rel = template.format(**kwargs)
    except (KeyError, IndexError, ValueError) as e:
        raise SourceError(f"meta/info.json: cannot fill path template {template!r} (unknown field {e})", path=path,
                          hint="fix data_path / video_path in meta/info.json: LeRobot's use {chunk_index}, "
                               "{file_index} and {video_key}") from e
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or "\\" in rel or not pure.parts:
        raise SourceError(
            f"path template {template!r} in meta/info.json gives {rel!r}, which is not a path inside the dataset "
            "folder; hub-pgen refuses to read or write outside it",
            path=path, hint="fix data_path / video_path in meta/info.json (LeRobot's are relative, like "
            f"{layout.DEFAULT_DATA_PATH!r})",
        )
    return rel


def _episode_from_row(row: dict[str, Any], info: dict[str, Any], video_keys: list[str], path: Path) -> Episode:
    empty = [k for k, v in row.items() if v is None and (k in _REQUIRED_EPISODE_COLUMNS or (
        k.startswith("videos/") and k.split("/")[1] in video_keys and not k.endswith("to_timestamp")))]
    if empty:
        raise SourceError(f"{path}: episode {row.get('episode_index')!r} has empty (null) {empty}", path=path,
                          hint="the episodes metadata is damaged: download the dataset again")
    index = _whole(row, "episode_index", path, MAX_INDEX)
    data_path = _format_path(
        info["data_path"], path, chunk_index=_whole(row, "data/chunk_index", path, MAX_INDEX),
        file_index=_whole(row, "data/file_index", path, MAX_INDEX)
    )
    videos: dict[str, VideoSpan] = {}
    for key in video_keys:
        template = info.get("video_path") or layout.DEFAULT_VIDEO_PATH
        vpath = _format_path(
            template,
            path,
            video_key=key,
            chunk_index=_whole(row, f"videos/{key}/chunk_index", path, MAX_INDEX),
            file_index=_whole(row, f"videos/{key}/file_index", path, MAX_INDEX),
        )
        to_ts = row.get(f"videos/{key}/to_timestamp")
        videos[key] = VideoSpan(
            path=vpath,
            from_timestamp=_seconds(row, f"videos/{key}/from_timestamp", path),
            to_timestamp=_seconds(row, f"videos/{key}/to_timestamp", path) if to_ts is not None else float("nan"),
        )
    tasks = row.get("tasks") or ()
    try:
        length = _whole(row, "length", path, MAX_FRAMES)
        return Episode(
            index=index,
            length=length,
            dataset_from_index=_whole(row, "dataset_from_index", path, MAX_FRAMES),
            dataset_to_index=_whole(row, "dataset_to_index", path, MAX_FRAMES),
            data_path=data_path,
            tasks=tuple(str(t) for t in tasks),
            videos=videos,
            on_grid=_on_frame_grid(row, length, float(info["fps"])),
        )
    except ValueError as e:
        raise SourceError(f"{path}: {e}", path=path) from e


MAX_INDEX = 10**9  # an episode, chunk or file index (lerobot's paths give them 3 digits)
MAX_FRAMES = 10**12  # frames of an episode or a dataset
MAX_SECONDS = 10**9  # a time in a video file (31 years)


def _whole(row: dict[str, Any], column: str, path: Path, hi: int) -> int:
    """A count or index of the episodes metadata: an integer from 0 to ``hi``, as lerobot writes them
    (int64 columns; a float column — 2.5, NaN, 1e300 — is refused: the copy in the output would not
    be a LeRobot dataset either)."""
    value = row[column]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
        raise SourceError(f"{path}: episode {row.get('episode_index')!r}: {column} must be a whole number from 0 to "
                          f"{hi:,}, got {value!r:.40}", path=path,
                          hint="the episodes metadata is damaged: download the dataset again")
    return value


def _seconds(row: dict[str, Any], column: str, path: Path) -> float:
    value = row[column]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_SECONDS:
        raise SourceError(f"{path}: episode {row.get('episode_index')!r}: {column} must be a time in seconds from 0 "
                          f"to {MAX_SECONDS:,}, got {value!r:.40}", path=path,
                          hint="the episodes metadata is damaged: download the dataset again")
    return float(value)


def _stat(row: dict[str, Any], name: str) -> float | None:
    value = row.get(f"stats/timestamp/{name}")
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _on_frame_grid(row: dict[str, Any], length: int, fps: float) -> bool:
    """Whether the episode's timestamp stats (count, min, max, mean) are those of lerobot's grid,
    ``timestamp = frame_index / fps``: then its frames' times are known without reading its data file.
    False whenever a stat is missing. (A merge reads every file, so a stat that lies cannot slip
    through: its plan is checked against the shards'.)"""
    if length < 1:
        return False
    stats = {k: _stat(row, k) for k in ("min", "max", "mean", "count")}
    if stats["min"] is None or stats["max"] is None or stats["mean"] is None:
        return False
    last = (length - 1) / fps
    tol = 1e-6 * max(1.0, last)  # float32 timestamps: ~6e-8 relative
    return ((stats["count"] is None or round(stats["count"]) == length) and abs(stats["min"]) <= tol
            and abs(stats["max"] - last) <= tol and abs(stats["mean"] - last / 2) <= tol)
