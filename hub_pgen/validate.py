"""``hub-pgen validate DIR [--source SRC]``: check a dataset folder against the output contract.

The same checks the tests rely on, and the gate the push path runs before anything leaves the
machine. Every problem is collected (not just the first) so one run tells the whole story.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from pyarrow.compute import sum as pc_sum
from pyarrow.compute import unique as pc_unique

from hub_pgen import layout
from hub_pgen.errors import UsageError, ValidationError
from hub_pgen.source.jsonfile import JsonProblem, read_strict


def problems(root: Path, *, source: Path | None = None) -> list[str]:
    root = Path(root)
    found: list[str] = []
    info_path = root / layout.INFO_PATH
    if not info_path.is_file():
        return [f"{layout.INFO_PATH} is missing"]
    try:
        info = read_strict(info_path)
    except (json.JSONDecodeError, JsonProblem, UnicodeDecodeError) as e:
        return [f"{layout.INFO_PATH} is not valid JSON ({e})"]
    if not isinstance(info, dict) or not isinstance(info.get("features", {}), dict):
        return [f"{layout.INFO_PATH} must hold a JSON object with a 'features' object, got {type(info).__name__}"]
    if info.get("codebase_version") != layout.CODEBASE_VERSION:
        found.append(f"{layout.INFO_PATH}: codebase_version is {info.get('codebase_version')!r}, expected v3.0")
    feature = info.get("features", {}).get(layout.FEATURE)
    if feature is None:
        found.append(f"{layout.INFO_PATH}: feature {layout.FEATURE!r} is missing")
    elif feature.get("dtype") != "int64" or list(feature.get("shape", [])) != [1]:
        found.append(f"{layout.INFO_PATH}: feature {layout.FEATURE!r} must be int64 of shape [1], got {feature}")
    if not (root / layout.PROVENANCE_PATH).is_file():
        found.append(f"{layout.PROVENANCE_PATH} is missing (the run did not finish)")
    if not (root / layout.SYN_ANNOTATIONS_PATH).is_file():
        found.append(f"{layout.SYN_ANNOTATIONS_PATH} is missing")

    valid_indices: set[int] = set()
    try:
        tasks = pq.read_table(root / layout.TASKS_PATH).to_pandas()
        if tasks["task_index"].duplicated().any():
            found.append(f"{layout.TASKS_PATH}: task_index values are not unique")
        if tasks.index.duplicated().any():
            found.append(f"{layout.TASKS_PATH}: task strings are not unique")
        if info.get("total_tasks") != len(tasks):
            found.append(f"{layout.INFO_PATH}: total_tasks is {info.get('total_tasks')}, tasks.parquet has {len(tasks)} rows")
        missing_cols = [c for c in layout.TASK_EXTRA_COLUMNS if c not in tasks.columns]
        if missing_cols:
            found.append(f"{layout.TASKS_PATH}: columns {missing_cols} are missing")
        else:
            valid_indices = set(int(i) for i in tasks.loc[tasks["user_prompt"].notna(), "task_index"])
    except (OSError, KeyError, ValueError) as e:
        found.append(f"{layout.TASKS_PATH} cannot be read ({e})")

    try:
        found += _check_episodes_and_data(root, info, valid_indices)
    except (KeyError, IndexError, ValueError) as e:  # info.json templates or episodes columns unusable
        found.append(f"{layout.INFO_PATH} and {layout.EPISODES_DIR} do not fit together ({type(e).__name__}: {e})")
    stats_path = root / layout.STATS_PATH
    if not stats_path.is_file():
        found.append(f"{layout.STATS_PATH} is missing")
    else:
        try:
            stats = read_strict(stats_path)
        except (json.JSONDecodeError, JsonProblem, UnicodeDecodeError) as e:
            found.append(f"{layout.STATS_PATH} is not valid JSON ({e})")
        else:
            if not isinstance(stats, dict) or layout.FEATURE not in stats:
                found.append(f"{layout.STATS_PATH}: no stats for {layout.FEATURE!r}")
    if source is not None:
        found += _compare_with_source(root, Path(source))
    return found


def _check_episodes_and_data(root: Path, info: dict, valid: set[int]) -> list[str]:
    found: list[str] = []
    files = sorted((root / layout.EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    if not files:
        return [f"{layout.EPISODES_DIR}: no episodes metadata"]
    data_files: set[str] = set()
    video_keys = [k for k, ft in info.get("features", {}).items() if ft.get("dtype") == "video"]
    episodes = frames = 0
    for path in files:
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as e:
            found.append(f"{path.relative_to(root)} cannot be read ({e})")
            continue
        names = table.column_names
        episodes += table.num_rows
        if "length" in names:
            frames += int(pc_sum(table.column("length")))
        if any(c.startswith("stats/") for c in names) and not any(c.startswith(f"stats/{layout.FEATURE}/") for c in names):
            found.append(f"{path.relative_to(root)}: no per-episode stats for {layout.FEATURE!r}")
        for row in table.select([c for c in names if not c.startswith("stats/")]).to_pylist():
            data_files.add(info["data_path"].format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]))
            for key in video_keys:
                rel = info["video_path"].format(video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                                                file_index=row[f"videos/{key}/file_index"])
                if not (root / rel).is_file():
                    found.append(f"{rel} is missing (episode {row['episode_index']})")
    if info.get("total_episodes") != episodes:
        found.append(f"{layout.INFO_PATH}: total_episodes is {info.get('total_episodes')}, "
                     f"episodes metadata has {episodes}")
    if frames and info.get("total_frames") != frames:
        found.append(f"{layout.INFO_PATH}: total_frames is {info.get('total_frames')}, episode lengths sum to {frames}")
    rows = 0
    for rel in sorted(data_files):
        path = root / rel
        if not path.is_file():
            found.append(f"{rel} is missing")
            continue
        try:
            schema = pq.read_schema(path)
            rows += pq.ParquetFile(path).metadata.num_rows
        except (OSError, ValueError) as e:
            found.append(f"{rel} cannot be read ({e})")
            continue
        if layout.FEATURE not in schema.names:
            found.append(f"{rel}: column {layout.FEATURE!r} is missing")
            continue
        if str(schema.field(layout.FEATURE).type) != "int64":
            found.append(f"{rel}: {layout.FEATURE} is {schema.field(layout.FEATURE).type}, expected int64")
        values = pq.read_table(path, columns=[layout.FEATURE]).column(0).to_numpy()
        bad = sorted(set(np.unique(values).tolist()) - valid - {layout.NO_TASK})
        if bad:
            found.append(f"{rel}: {layout.FEATURE} values {bad[:5]} point at no generated tasks row")
    if frames and rows and rows != frames:
        found.append(f"data files hold {rows} rows, episode lengths sum to {frames}")
    return sorted(set(found), key=found.index)


def _compare_with_source(root: Path, source: Path) -> list[str]:
    """Original columns and task rows unchanged (same files, same order)."""
    found: list[str] = []
    used: set[int] = set()
    for path in sorted((source / layout.DATA_DIR).glob("chunk-*/file-*.parquet")):
        rel = path.relative_to(source)
        new_path = root / rel
        if not new_path.is_file():
            found.append(f"{rel} is missing")
            continue
        old, new = pq.read_table(path), pq.read_table(new_path)
        if "task_index" in old.column_names:
            used.update(int(i) for i in pc_unique(old.column("task_index")).to_pylist() if i is not None)
        if new.drop_columns([layout.FEATURE]).select(old.column_names) != old or new.column_names[:-1] != old.column_names:
            found.append(f"{rel}: original columns or rows changed")
    old_tasks = pq.read_table(source / layout.TASKS_PATH).to_pandas()
    new_tasks = pq.read_table(root / layout.TASKS_PATH).to_pandas()
    head = new_tasks.iloc[: len(old_tasks)]
    if list(head.index) != list(old_tasks.index) or list(head["task_index"]) != list(old_tasks["task_index"]):
        found.append(f"{layout.TASKS_PATH}: original rows changed")
    # every task the source's frames name must still be the same string (not a generated dialogue)
    before = {int(i): str(t) for t, i in zip(old_tasks.index, old_tasks["task_index"])}
    after = {int(i): str(t) for t, i in zip(new_tasks.index, new_tasks["task_index"])}
    lost = sorted(i for i in used if i not in before or after.get(i) != before[i])
    if lost:
        found.append(f"{layout.TASKS_PATH}: task_index {lost[:10]} used by the source's frames no longer names "
                     "the source's task string")
    return found


def validate(root: Path, *, source: Path | None = None) -> None:
    """Raise :class:`ValidationError` listing every problem; return quietly when the folder is good."""
    found = problems(root, source=source)
    if found:
        raise ValidationError(root, found)


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="hub-pgen validate",
        description="Check a dataset folder against hub-pgen's output contract: the same checks the push runs "
                    "before anything leaves the machine. Exit 0: valid; 7: every problem listed; 2: bad arguments.")
    p.add_argument("path", type=Path, help="dataset folder made by hub-pgen")
    p.add_argument("--source", type=Path, help="the source folder: also check original columns and rows are unchanged")
    args = p.parse_args(argv)
    if not args.path.is_dir():
        raise UsageError(f"{args.path} is not a folder" + ("" if args.path.exists() else " (it does not exist)"),
                         hint="give the output folder of a hub-pgen run, e.g. hub-pgen validate hub-pgen-out/NAME")
    if args.source is not None and not args.source.is_dir():
        raise UsageError(f"--source {args.source} is not a folder", hint="give the source dataset's folder")
    validate(args.path, source=args.source)
    print(f"{args.path}: valid")
    return 0
