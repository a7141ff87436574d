"""Write the new dataset: a copy of the source with ``task_index_high_level`` on every frame.

Everything goes into a staging folder that the caller moves into place once complete; the source
is only read. Every file is created new (:func:`hub_pgen.fsio.create`: never through a link), and
text that reaches parquet is :func:`~hub_pgen.textsafe.well_formed` (a lone surrogate in a dialogue
cannot be stored as UTF-8; the journal and ``meta/syn_annotations.jsonl`` keep it as its escape). Data files keep their names, row order and every other column (the new int64 column
is appended); videos are hard-linked (copied across filesystems), never re-encoded; the provenance
record ``meta/hub_pgen.json`` is written last and marks the folder complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hub_pgen import faults, fsio, layout
from hub_pgen import language as lang
from hub_pgen.data import JournalRecord, Sample, SourceDataset
from hub_pgen.errors import OutputError, SourceError, UnsafePathError
from hub_pgen.plan.table import SampleTable, sample_ids
from hub_pgen.write import language as lang_w
from hub_pgen.write import stats as st
from hub_pgen.write.tasks import TaskAssignment, frame_task_indices, write_tasks

logger = logging.getLogger(__name__)

_REWRITTEN = {layout.INFO_PATH, layout.STATS_PATH, layout.TASKS_PATH, layout.CARD_PATH,
              layout.SYN_ANNOTATIONS_PATH, layout.PROVENANCE_PATH, layout.SKILL_ANNOTATIONS_PATH}


@dataclass(frozen=True)
class WriteSummary:
    path: Path
    new_tasks: int
    frames: int
    frames_labelled: int
    files_linked: int
    files_copied: int
    language: lang_w.LanguageCounts | None = None  # None: the format has no language columns


def write_dataset(
    source: SourceDataset,
    samples: Sequence[Sample],
    staging: Path,
    *,
    labels: TaskAssignment,
    provenance: dict[str, Any],
    card: Callable[[dict[str, Any]], str],
    segments: Sequence[Any] = (),
    output_format: str = layout.DEFAULT_FORMAT,
    skills_json: dict[str, Any] | Path | None = None,
    skill_records: Sequence[dict[str, Any]] = (),
    ahead: Mapping[str, lang_w.LanguageCounts | None] | None = None,
) -> WriteSummary:
    """Write the new dataset into ``staging``, whose ``meta/syn_annotations.jsonl`` the run's pass over its
    records wrote (hub_pgen.write.records, which also gave ``labels``, each sample's task index and the new
    tasks rows, each sample's dialogue texts among them). ``card`` renders the
    README from the final provenance (counts included), so the card and ``meta/hub_pgen.json`` always
    agree. ``segments`` (the plan's) become the ``subtask`` rows of the language columns;
    ``output_format`` is a key of layout.FORMATS. ``skills_json``: the skills the run used when they did
    not come from the source's ``skills.json`` (written as ``meta/skills.json``); ``skill_records``: the
    model's labels of ``--skills annotate``; ``ahead``: the data files in ``staging`` already, with their
    language counts (written as generation went on: :func:`write_data_file_alone`)."""
    parts = layout.FORMATS[output_format]
    hirobot, language = "hirobot" in parts, "language" in parts
    per_episode = frame_task_indices(source, samples, labels)  # also counts the frames with a dialogue
    assignment = labels if hirobot else TaskAssignment.none(len(samples))
    frames = sum(len(v) for v in per_episode.values())
    labelled = sum(int((v != layout.NO_TASK).sum()) for v in per_episode.values())
    lplan = lang_w.plan_language(segments, samples, labels.by_position != layout.NO_TASK,
                                 labels.dialogue_at) if language else None
    lcounts = lang_w.LanguageCounts()
    provenance = {**provenance, "format": output_format,
                  "counts": {**provenance.get("counts", {}), "new_tasks": len(assignment.new_tasks),
                             "frames": frames, "frames_labelled": labelled}}
    with writing(staging):
        staging.mkdir(parents=True, exist_ok=True)
        ahead = ahead or {}
        for rel in source.data_paths:
            if rel not in ahead:
                _write_data_file(source.root / rel, staging / rel, per_episode if hirobot else None, lplan, lcounts)
            elif (counts := ahead[rel]) is not None:  # in staging already: its counts in their place
                lcounts.add(counts)
            faults.point("write.data")
        episode_files = sorted((source.root / layout.EPISODES_DIR).glob("chunk-*/file-*.parquet"))
        if hirobot:
            write_tasks(source.root / layout.TASKS_PATH, staging / layout.TASKS_PATH, assignment.new_tasks)
            stat_names = _stat_names(source)
            ep_stats = {e: st.episode_stats(v, stat_names) for e, v in per_episode.items() if len(v)}
            for path in episode_files:
                rel = path.relative_to(source.root).as_posix()
                _write_episodes_file(path, staging / rel, ep_stats)
            _write_stats(source.root / layout.STATS_PATH, staging / layout.STATS_PATH, list(ep_stats.values()))
        else:  # the language columns have no stats in lerobot: metadata as the source has it
            for path in [source.root / layout.TASKS_PATH, source.root / layout.STATS_PATH, *episode_files]:
                if path.is_file():
                    dst = staging / path.relative_to(source.root)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    fsio.copy_new(path, dst)
        info = dict(source.info)
        features = dict(source.info["features"])
        if hirobot:
            features[layout.FEATURE] = dict(layout.FEATURE_SPEC)
            info["total_tasks"] = len(source.tasks) + len(assignment.new_tasks)
        if language:
            for column in lang.COLUMNS:
                features[column] = dict(lang.FEATURE_SPEC)
            tools = list(info.get("tools") or [])
            if not any(isinstance(t, dict) and (t.get("function") or {}).get("name") == "say" for t in tools):
                info["tools"] = tools + [lang.SAY_TOOL_SCHEMA]
            provenance["language"] = lcounts.as_dict()
        info["features"] = features
        _write_json(staging / layout.INFO_PATH, info)
        faults.point("write.meta")
        handled = set(source.data_paths)
        if isinstance(skills_json, Path):  # --skills-file: that file, as it is
            (staging / layout.SKILLS_PATH).parent.mkdir(parents=True, exist_ok=True)
            fsio.copy_new(skills_json, staging / layout.SKILLS_PATH)
            handled.add(layout.SKILLS_PATH)
        elif skills_json is not None:
            _write_json(staging / layout.SKILLS_PATH, skills_json)
            handled.add(layout.SKILLS_PATH)
        if skill_records:
            with fsio.create(staging / layout.SKILL_ANNOTATIONS_PATH) as fh:
                for rec in skill_records:
                    fh.write(fsio.jsonl_line({k: v for k, v in rec.items() if k != "fingerprint"}))
        linked, copied = _copy_rest(source.root, staging, handled=handled)
        fsio.write_new(staging / layout.CARD_PATH, card(provenance))
        _write_json(staging / layout.PROVENANCE_PATH, provenance)  # last: marks the folder complete
    return WriteSummary(staging, len(assignment.new_tasks), frames, labelled, linked, copied,
                        lcounts if language else None)


def write_data_file_alone(source: SourceDataset, rel: str, dst: Path, *, samples: SampleTable,
                          positions: np.ndarray, labels: TaskAssignment, segments: Sequence[Any],
                          output_format: str) -> lang_w.LanguageCounts | None:
    """The data file ``rel`` at ``dst`` as :func:`write_dataset` writes it, from its episodes' samples alone
    (``positions``: theirs in the plan, each one's record passed into ``labels`` already) — what the pass
    alongside generation writes once the records of a file's episodes have all passed
    (hub_pgen.run.running_pass). Returns its language columns' counts (None: the format has none)."""
    parts = layout.FORMATS[output_format]
    episodes = {e: ep for e, ep in source.episodes.items() if ep.data_path == rel}
    mine = samples.take(positions)
    part = TaskAssignment(labels.by_position[positions], labels.new_tasks)
    per_episode = frame_task_indices(replace(source, episodes=episodes), mine, part) if "hirobot" in parts else None
    counts = lang_w.LanguageCounts()
    lplan = lang_w.plan_language([s for s in segments if s.episode_index in episodes], mine,
                                 part.by_position != layout.NO_TASK, part.dialogue_at) if "language" in parts else None
    _write_data_file(source.root / rel, dst, per_episode, lplan, counts)
    return counts if lplan is not None else None


# --- files ------------------------------------------------------------------------------------


def _write_data_file(src: Path, dst: Path, per_episode: dict[int, np.ndarray] | None,
                     lplan: lang_w.LanguagePlan | None, lcounts: lang_w.LanguageCounts) -> None:
    """The source file with ``task_index_high_level`` appended (``per_episode`` given) and the language
    columns replaced or appended (``lplan`` given); every other column, row and its order kept."""
    table = pq.read_table(src)
    meta = pq.ParquetFile(src).metadata
    added: dict[str, dict[str, Any]] = {}
    if per_episode is not None:
        episodes = table.column("episode_index").to_numpy()
        frames = table.column("frame_index").to_numpy()
        values = np.full(len(table), layout.NO_TASK, dtype=np.int64)
        for e in np.unique(episodes):
            mask = episodes == e
            values[mask] = per_episode[int(e)][frames[mask]]
        table = table.append_column(pa.field(layout.FEATURE, pa.int64()), pa.array(values, type=pa.int64()))
        added[layout.FEATURE] = {"dtype": "int64", "_type": "Value"}
    if lplan is not None:
        columns = lang_w.language_columns(table, lplan, lcounts)
        for name, array in zip(lang.COLUMNS, columns):
            field = pa.field(name, array.type)
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), field, array)
            else:
                table = table.append_column(field, array)
            added[name] = lang.hf_feature(name)
    table = table.replace_schema_metadata(_with_hf_features(table.schema.metadata, added))
    dst.parent.mkdir(parents=True, exist_ok=True)
    with fsio.create(dst) as fh:
        pq.write_table(table, fh, **_writer_options(meta))


def _writer_options(meta: pq.FileMetaData) -> dict[str, Any]:
    """Keep the source file's compression and row-group size."""
    opts: dict[str, Any] = {}
    if meta.num_row_groups:
        rg = meta.row_group(0)
        opts["row_group_size"] = max(rg.num_rows, 1)
        if rg.num_columns:
            codec = rg.column(0).compression
            opts["compression"] = codec.lower() if codec and codec != "UNCOMPRESSED" else "none"
    return opts


def _with_hf_features(metadata: dict[bytes, bytes] | None,
                      added: dict[str, dict[str, Any]]) -> dict[bytes, bytes] | None:
    """Datasets-style ``huggingface`` schema metadata lists every column's feature; add ours."""
    if not metadata or b"huggingface" not in metadata or not added:
        return metadata
    try:
        hf = json.loads(metadata[b"huggingface"])
        hf.setdefault("info", {}).setdefault("features", {}).update(added)
    except (json.JSONDecodeError, AttributeError):
        return metadata
    return {**metadata, b"huggingface": json.dumps(hf).encode()}


def _stat_names(source: SourceDataset) -> tuple[str, ...]:
    """The stat names the source uses for a scalar int feature (task_index first)."""
    path = source.root / layout.STATS_PATH
    if path.is_file():
        stats = json.loads(path.read_text(encoding="utf-8"))
        for key in ("task_index", "frame_index", "episode_index", "index"):
            if isinstance(stats.get(key), dict):
                return tuple(stats[key])
    return st.DEFAULT_STATS


def _write_episodes_file(src: Path, dst: Path, ep_stats: dict[int, dict[str, np.ndarray]]) -> None:
    table = pq.read_table(src)
    if not any(c.startswith("stats/") for c in table.column_names):
        dst.parent.mkdir(parents=True, exist_ok=True)
        fsio.copy_new(src, dst)
        return
    episodes = table.column("episode_index").to_pylist()
    names = next(iter(ep_stats.values())).keys() if ep_stats else ()
    for name in names:
        like = f"stats/task_index/{name}"
        typ = table.schema.field(like).type if like in table.column_names else None
        values = [ep_stats[int(e)][name].tolist() if int(e) in ep_stats else None for e in episodes]
        if typ is None:
            typ = pa.list_(pa.int64() if name in ("min", "max", "count") else pa.float64())
        table = table.append_column(pa.field(f"stats/{layout.FEATURE}/{name}", typ), pa.array(values, type=typ))
    dst.parent.mkdir(parents=True, exist_ok=True)
    with fsio.create(dst) as fh:
        pq.write_table(table, fh, **_writer_options(pq.ParquetFile(src).metadata))


def _write_stats(src: Path, dst: Path, per_episode: list[dict[str, np.ndarray]]) -> None:
    if not src.is_file():
        return
    stats = json.loads(src.read_text(encoding="utf-8"))
    stats[layout.FEATURE] = st.to_json(st.aggregate(per_episode))
    _write_json(dst, stats)


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fsio.write_new(path, fsio.json_text(obj, indent=4))


def _copy_rest(src_root: Path, dst_root: Path, *, handled: set[str]) -> tuple[int, int]:
    """Everything not rewritten: videos hard-linked (copied across filesystems), other files copied."""
    linked = copied = 0
    skip_dirs = {".cache", ".git", ".hub-pgen"}
    for dirpath, dirnames, filenames in os.walk(src_root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        rel_dir = Path(dirpath).relative_to(src_root)
        for name in sorted(filenames):
            rel = (rel_dir / name).as_posix()
            if rel in handled or rel in _REWRITTEN or rel.startswith(layout.EPISODES_DIR + "/"):
                continue
            src = Path(os.path.realpath(Path(dirpath) / name))  # Hub cache files are symlinks into blobs/
            if not src.is_file():  # checked at load (source/checks.py); a FIFO or device swapped in since
                raise SourceError(f"{Path(dirpath) / name} is not a regular file; hub-pgen will not copy it",
                                  path=Path(dirpath) / name, hint="remove it from the dataset folder and rerun")
            dst = dst_root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if rel.startswith(layout.VIDEO_DIR + "/"):
                try:
                    os.link(src, dst)
                    linked += 1
                    continue
                except OSError:
                    pass  # other filesystem, or links not allowed: copy
            fsio.copy_new(src, dst)
            copied += 1
    return linked, copied


@contextmanager
def writing(staging: Path, what: str = "the new dataset") -> Iterator[None]:
    """Writes into ``staging``: a write that fails removes the folder (leaving the work folder a resumable
    journal, nothing half-written) and says what to do; a planted link is refused as it is."""
    try:
        yield
    except UnsafePathError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(
            f"cannot write {what} under {staging}: {e.strerror or e}",
            path=staging,
            hint="free disk space or fix permissions, then rerun the same command: generated samples are kept",
        ) from e


def write_jsonl_result(
    samples: Sequence[Sample], bad_lines: Sequence[Any], records: Mapping[str, JournalRecord], staging: Path, *,
    provenance: dict[str, Any], skills_file: Path | None = None,
) -> int:
    """``--input-jsonl`` runs and shards have no dataset to extend: the result is the D_syn JSONL and
    provenance (and, for a shard whose skills came from ``--skills-file``, that file as
    ``meta/skills.json``, so its merge plans from the same skills wherever it runs)."""
    path = staging / layout.JSONL_RESULT_NAME
    with writing(staging, "the result"):
        path.parent.mkdir(parents=True, exist_ok=True)
        if skills_file is not None:
            (staging / layout.SKILLS_PATH).parent.mkdir(parents=True, exist_ok=True)
            fsio.copy_new(skills_file, staging / layout.SKILLS_PATH)
        with fsio.create(path) as fh:
            # by id: a dataset plan's order already (no list of every id), else sorted
            ids = samples.ids() if isinstance(samples, SampleTable) and samples.in_id_order() and not bad_lines \
                else sorted([*sample_ids(samples), *(b.sample_id for b in bad_lines)])
            for sid in ids:
                rec = records.get(sid)
                if rec is not None:
                    d = rec.to_json()
                    d.pop("fingerprint", None)
                    fh.write(fsio.jsonl_line(d))
        _write_json(staging / layout.PROVENANCE_PATH, provenance)
    return 0
