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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hub_pgen import layout
from hub_pgen.errors import OutputExistsError
from hub_pgen.example.frames import _encode_video, expected_frame, read_frame_id
from hub_pgen.example.skills import example_skills
from hub_pgen.example.spec import (
    _PIX_FMT,
    _STAT_ORDER,
    JOINT_NAMES,
    TASKS,
    ExampleSpec,
    episode_lengths,
    episode_task,
    svla_like_spec,
)
from hub_pgen.example.stats import _aggregate, _image_stats, _sample_indices, _tolist, _vector_stats
from hub_pgen.fsio import umask as _umask

logger = logging.getLogger(__name__)

__all__ = ["TASKS", "ExampleSpec", "build_example_dataset", "episode_lengths", "episode_task", "expected_frame",
           "read_frame_id", "svla_like_spec"]



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
