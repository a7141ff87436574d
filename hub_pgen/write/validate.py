"""``hub-pgen validate DIR [--source SRC]``: check a dataset folder against the output contract.

The same checks the tests rely on, and the gate the push path runs before anything leaves the
machine. Every problem is collected (not just the first) so one run tells the whole story.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow.compute import sum as pc_sum
from pyarrow.compute import unique as pc_unique

from hub_pgen import language as lang
from hub_pgen import layout
from hub_pgen.errors import ValidationError
from hub_pgen.source.jsonfile import JsonProblem, read_strict
from hub_pgen.write.tasks import source_rows_changed, strings_repeat, task_strings_column
from hub_pgen.write.validate_language import Expected, check_language, expected_dialogues


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
    features = info.get("features", {})
    prov = _provenance(root, found)
    fmt = prov.get("format", "hirobot") if prov is not None else None  # results before --format were hirobot
    if fmt is not None and fmt not in layout.FORMATS:
        found.append(f"{layout.PROVENANCE_PATH}: format {fmt!r} is none of {list(layout.FORMATS)}")
        fmt = None
    parts = layout.FORMATS[fmt] if fmt else ()
    hirobot = "hirobot" in parts or layout.FEATURE in features
    language = "language" in parts or any(c in features for c in lang.COLUMNS)
    if not hirobot and not language:
        found.append(f"{layout.INFO_PATH}: neither {layout.FEATURE!r} nor the language columns "
                     f"{list(lang.COLUMNS)} are declared")
    if hirobot:
        feature = features.get(layout.FEATURE)
        if feature is None:
            found.append(f"{layout.INFO_PATH}: feature {layout.FEATURE!r} is missing")
        elif feature.get("dtype") != "int64" or list(feature.get("shape", [])) != [1]:
            found.append(f"{layout.INFO_PATH}: feature {layout.FEATURE!r} must be int64 of shape [1], got {feature}")
    if language:
        for column in lang.COLUMNS:
            if features.get(column, {}).get("dtype") != "language":
                found.append(f"{layout.INFO_PATH}: feature {column!r} must be declared with dtype 'language', "
                             f"got {features.get(column)}")
    if not (root / layout.SYN_ANNOTATIONS_PATH).is_file():
        found.append(f"{layout.SYN_ANNOTATIONS_PATH} is missing")

    valid_indices = np.empty(0, dtype=np.int64)
    try:
        tasks_path = root / layout.TASKS_PATH  # a column at a time: with a model, a row a sample
        tasks_schema = pq.read_schema(tasks_path)
        strings = task_strings_column(tasks_schema)
        index = pq.read_table(tasks_path, columns=["task_index"]).column("task_index")
        if pc.count_distinct(index, mode="all").as_py() != len(index):
            found.append(f"{layout.TASKS_PATH}: task_index values are not unique")
        if strings is not None and strings_repeat(tasks_path, strings):
            found.append(f"{layout.TASKS_PATH}: task strings are not unique")
        if info.get("total_tasks") != len(index):
            found.append(f"{layout.INFO_PATH}: total_tasks is {info.get('total_tasks')}, tasks.parquet has "
                         f"{len(index)} rows")
        missing_cols = [c for c in layout.TASK_EXTRA_COLUMNS if c not in tasks_schema.names]
        if hirobot and missing_cols:
            found.append(f"{layout.TASKS_PATH}: columns {missing_cols} are missing")
        elif hirobot:
            generated = index.filter(pc.is_valid(pq.read_table(tasks_path, columns=["user_prompt"]).column(0)))
            valid_indices = np.unique(generated.to_numpy().astype(np.int64, copy=False))
    except (OSError, KeyError, ValueError, TypeError) as e:
        found.append(f"{layout.TASKS_PATH} cannot be read ({e})")

    try:
        found += _check_episodes_and_data(root, info, valid_indices if hirobot else None,
                                          expected_dialogues(root, prov) if language else None)
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
            if hirobot and (not isinstance(stats, dict) or layout.FEATURE not in stats):
                found.append(f"{layout.STATS_PATH}: no stats for {layout.FEATURE!r}")
    if source is not None:
        found += _compare_with_source(root, Path(source))
    return found


def _provenance(root: Path, found: list[str]) -> dict | None:
    """``meta/hub_pgen.json`` (None, with the problem noted, when it is missing or unreadable)."""
    path = root / layout.PROVENANCE_PATH
    if not path.is_file():
        found.append(f"{layout.PROVENANCE_PATH} is missing (the run did not finish)")
        return None
    try:
        prov = read_strict(path)
    except (json.JSONDecodeError, JsonProblem, UnicodeDecodeError) as e:
        found.append(f"{layout.PROVENANCE_PATH} is not valid JSON ({e})")
        return None
    if not isinstance(prov, dict):
        found.append(f"{layout.PROVENANCE_PATH} must hold a JSON object")
        return None
    return prov


def _check_episodes_and_data(root: Path, info: dict, valid: np.ndarray | None,
                             dialogues: Expected | None) -> list[str]:
    """Episodes metadata against the data files; ``valid``: the task indices task_index_high_level may
    take (None: the format has no such column); ``dialogues``: what the language columns must hold
    (None: the format has none)."""
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
        if valid is not None and any(c.startswith("stats/") for c in names) and not any(
                c.startswith(f"stats/{layout.FEATURE}/") for c in names):
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
        if dialogues is not None:
            table = pq.read_table(path, columns=[c for c in ("episode_index", "frame_index", "timestamp", *lang.COLUMNS)
                                                 if c in schema.names])
            found += check_language(rel, table, dialogues)
        if valid is None:
            continue
        if layout.FEATURE not in schema.names:
            found.append(f"{rel}: column {layout.FEATURE!r} is missing")
            continue
        if str(schema.field(layout.FEATURE).type) != "int64":
            found.append(f"{rel}: {layout.FEATURE} is {schema.field(layout.FEATURE).type}, expected int64")
        values = np.unique(pq.read_table(path, columns=[layout.FEATURE]).column(0).to_numpy())
        bad = values[~np.isin(values, valid) & (values != layout.NO_TASK)].tolist()
        if bad:
            found.append(f"{rel}: {layout.FEATURE} values {bad[:5]} point at no generated tasks row")
    if frames and rows and rows != frames:
        found.append(f"data files hold {rows} rows, episode lengths sum to {frames}")
    if dialogues:
        shown = ", ".join(f"episode {e} frame {f}" for e, f in dialogues.left()[:5])
        found.append(f"{len(dialogues)} generated dialogue(s) name frames no data file has ({shown})")
    return sorted(set(found), key=found.index)


def _compare_with_source(root: Path, source: Path) -> list[str]:
    """Original columns and task rows unchanged (same files, same order); a source's own language rows
    all still there."""
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
        added = [c for c in new.column_names if c not in old.column_names]
        plain = [c for c in old.column_names if c not in lang.COLUMNS]
        if (sorted(added) != sorted(set(added) & {layout.FEATURE, *lang.COLUMNS})
                or [c for c in new.column_names if c not in added] != old.column_names
                or new.select(plain) != old.select(plain)):
            found.append(f"{rel}: original columns or rows changed")
        if set(lang.COLUMNS) & set(old.column_names):
            try:
                before, after = lang.read_file(old), lang.read_file(new)
            except lang.LanguageProblem as exc:
                found.append(f"{rel}: {exc}")
                continue
            lost = sorted({e for e, rows in before.persistent.items() if any(r not in after.persistent.get(e, [])
                                                                               for r in rows)})
            if lost:
                found.append(f"{rel}: the source's {lang.PERSISTENT} rows are gone in episode(s) {lost[:5]}")
            lost = sorted(i for i, rows in before.events.items() if any(r not in after.events.get(i, []) for r in rows))
            if lost:
                found.append(f"{rel}: the source's {lang.EVENTS} rows are gone at {len(lost)} frame(s) (rows {lost[:5]})")
    found += source_rows_changed(source / layout.TASKS_PATH, root / layout.TASKS_PATH, used)
    return found


def validate(root: Path, *, source: Path | None = None) -> None:
    """Raise :class:`ValidationError` listing every problem; return quietly when the folder is good."""
    found = problems(root, source=source)
    if found:
        raise ValidationError(root, found, source=source)
