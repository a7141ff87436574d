"""``hub-pgen validate DIR [--source SRC]``: check a dataset folder against the output contract.

The same checks the tests rely on, and the gate the push path runs before anything leaves the
machine. Every problem is collected (not just the first) so one run tells the whole story.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow.compute import sum as pc_sum
from pyarrow.compute import unique as pc_unique

from hub_pgen import language as lang
from hub_pgen import layout
from hub_pgen.errors import ValidationError
from hub_pgen.source.jsonfile import JsonProblem, read_strict
from hub_pgen.textsafe import well_formed
from hub_pgen.write.tasks import source_rows_changed, strings_repeat, task_strings_column


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
        strings = task_strings_column(pq.read_schema(tasks_path))
        index = pq.read_table(tasks_path, columns=["task_index"]).column("task_index")
        if pc.count_distinct(index, mode="all").as_py() != len(index):
            found.append(f"{layout.TASKS_PATH}: task_index values are not unique")
        if strings is not None and strings_repeat(tasks_path, strings):
            found.append(f"{layout.TASKS_PATH}: task strings are not unique")
        if info.get("total_tasks") != len(index):
            found.append(f"{layout.INFO_PATH}: total_tasks is {info.get('total_tasks')}, tasks.parquet has "
                         f"{len(index)} rows")
        missing_cols = [c for c in layout.TASK_EXTRA_COLUMNS if c not in pq.read_schema(tasks_path).names]
        if hirobot and missing_cols:
            found.append(f"{layout.TASKS_PATH}: columns {missing_cols} are missing")
        elif hirobot:
            generated = index.filter(pc.is_valid(pq.read_table(tasks_path, columns=["user_prompt"]).column(0)))
            valid_indices = np.unique(generated.to_numpy().astype(np.int64, copy=False))
    except (OSError, KeyError, ValueError, TypeError) as e:
        found.append(f"{layout.TASKS_PATH} cannot be read ({e})")

    try:
        found += _check_episodes_and_data(root, info, valid_indices if hirobot else None,
                                          _expected_dialogues(root, prov) if language else None)
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


class Expected:
    """The interjection + say pair each generated dialogue must have put on its frame, as the D_syn
    record holds it: for (episode, frame), a 64-bit digest of (user prompt, robot utterance) and the
    frame's timestamp as float32 — JSON values, an ok record's are str, str, float (a damaged file's are
    digested as they are). Held: arrays, 20 bytes a dialogue (its place packed in one int64), not the
    texts (~400 bytes a dialogue at 480k samples), and nothing read back. A file in plan order (every
    file a run writes) is taken as it is; another is sorted, and of two records of one frame the later
    one's counts, in the place of the first."""

    def __init__(self, key: np.ndarray, digest: np.ndarray, stamp: np.ndarray, odd: list[tuple[Any, Any]]) -> None:
        n = len(key)
        self.place: np.ndarray | None = None  # the first record's line (None: the file is in this order)
        if n > 1 and not bool(np.all(key[1:] > key[:-1])):
            order = np.argsort(key, kind="stable")  # by (episode, frame), file order within
            key = key[order]
            starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
            ends = np.r_[starts[1:] - 1, n - 1]
            key, self.place = key[starts], order[starts]
            digest, stamp = digest[order[ends]], stamp[order[ends]]  # the last record's
        self.key, self.digest, self.stamp = key, digest, stamp
        self.done = np.zeros(len(key), dtype=bool)
        self.odd = odd  # places no data file can hold (a negative or too large number): always missing

    def episode(self, i: int) -> int:
        return int(self.key[i]) >> 32

    def frame(self, i: int) -> int:
        return int(self.key[i]) & _FRAME_MASK

    def of_episodes(self, episodes: Sequence[int], width: int) -> list[int]:
        """The entries not yet found of ``episodes`` with a frame in [0, width), in the file's order."""
        hits: list[int] = []
        for e in episodes:
            if not 0 <= e < _EPISODE_LIMIT:
                continue
            lo, hi = (int(np.searchsorted(self.key, e << 32, "left")),
                      int(np.searchsorted(self.key, (e + 1) << 32, "left")))
            hits += [lo + i for i in np.flatnonzero(((self.key[lo:hi] & _FRAME_MASK) < width)
                                                    & ~self.done[lo:hi]).tolist()]
        place = self.place
        return sorted(hits) if place is None else sorted(hits, key=lambda i: int(place[i]))

    def left(self) -> list[tuple[Any, Any]]:
        """(episode, frame) of the dialogues no data file had, in the file's order."""
        i = np.flatnonzero(~self.done)
        if self.place is not None:
            i = i[np.argsort(self.place[i], kind="stable")]
        key = self.key[i]
        return list(zip((key >> 32).tolist(), (key & _FRAME_MASK).tolist())) + self.odd

    def __len__(self) -> int:
        return int(np.count_nonzero(~self.done)) + len(self.odd)


_EPISODE_LIMIT = 1 << 31
_FRAME_MASK = (1 << 32) - 1


def dialogue_digest(prompt: Any, utterance: Any) -> int:
    """64 bits of (user prompt, robot utterance) as parquet holds them (a lone surrogate the journal kept
    as its escape is U+FFFD there), for any JSON values (a damaged file's too). Python's own hash of the
    pair: the same within one validation, which is where digests are compared."""
    pair = tuple(well_formed(v) if isinstance(v, str) else v for v in (prompt, utterance))
    try:
        return hash(pair)
    except TypeError:  # a list or an object where a text belongs (a damaged file)
        return hash(json.dumps(pair, sort_keys=True))


def _stamp(value: Any) -> float:
    """A record's timestamp as float32 holds it (NaN: none; inf: not a number, never a frame's)."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(np.float32(value))
    return math.inf


def _expected_dialogues(root: Path, prov: dict | None) -> Expected:
    """What the language columns must hold of each generated dialogue (:class:`Expected`), less those
    the provenance reports as not added (their frame had a dialogue of the source's own)."""
    skipped = set(((prov or {}).get("language") or {}).get("dialogues_not_added") or [])
    path = root / layout.SYN_ANNOTATIONS_PATH
    keys, digests, stamps = array("q"), array("q"), array("f")  # 20 bytes a dialogue, no objects
    odd: list[tuple[Any, Any]] = []
    if path.is_file():
        with open(path, "rb") as fh:  # a line at a time: never the whole file (and its lines) at once
            for raw in fh:
                try:
                    rec = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # the D_syn file's own problems are the journal's business
                if not isinstance(rec, dict) or rec.get("status") != "ok" or rec.get("episode_index") is None:
                    continue
                e, f = rec.get("episode_index"), rec.get("frame_start", rec.get("frame_index"))
                if not isinstance(e, int) or not isinstance(f, int) or f"episode {e} frame {f}" in skipped:
                    continue
                if not (0 <= e < _EPISODE_LIMIT and 0 <= f <= _FRAME_MASK):
                    odd.append((e, f))
                    continue
                keys.append(e << 32 | f)
                digests.append(dialogue_digest(rec.get("user_prompt"), rec.get("robot_utterance")))
                stamps.append(_stamp(rec.get("timestamp")))
    return Expected(np.frombuffer(keys, dtype=np.int64) if keys else np.zeros(0, dtype=np.int64),
                    np.frombuffer(digests, dtype=np.int64) if digests else np.zeros(0, dtype=np.int64),
                    np.frombuffer(stamps, dtype=np.float32) if stamps else np.zeros(0, dtype=np.float32), odd)


EVENT_SLICE = 1024  # frames whose language_events rows are read at once (a file's rows are never all objects)


def _check_language(rel: str, table: pa.Table, expected: Expected) -> list[str]:
    """lerobot's invariants on one data file's language columns, and every dialogue where it belongs.
    The events are read ``EVENT_SLICE`` frames at a time: a run's file has a dialogue on most frames."""
    found: list[str] = []
    missing = [c for c in lang.COLUMNS if c not in table.column_names]
    if missing:
        return [f"{rel}: column(s) {missing} are missing"]
    episodes = table.column("episode_index").to_numpy()
    frames = table.column("frame_index").to_numpy()
    stamps = table.column("timestamp").to_numpy()
    try:
        rows = lang.read_file(table.drop_columns([lang.EVENTS]))
    except lang.LanguageProblem as exc:
        return [f"{rel}: {exc}"]
    uniq, first = np.unique(episodes, return_index=True)
    for e, i in zip(uniq.tolist(), first.tolist()):
        where = f"{rel}: episode {e} frame {int(frames[i])}"
        for row in rows.persistent.get(e, []):
            found += [f"{where}: {lang.PERSISTENT} row {row}: {p}" for p in lang.row_problems(row, lang.PERSISTENT)]
    # every generated dialogue on its frame: this file's episodes' dialogues still expected, in the D_syn
    # file's order (time linear in samples), each with the row it names
    width = int(frames.max()) + 1 if len(frames) else 1
    keys = episodes.astype(np.int64) * width + frames.astype(np.int64)
    here = np.array(expected.of_episodes(uniq.tolist(), width), dtype=np.int64)
    if len(here):
        want = (expected.key[here] >> 32) * width + (expected.key[here] & _FRAME_MASK)
        order = np.argsort(keys, kind="stable")
        j = np.minimum(np.searchsorted(keys[order], want), len(keys) - 1)
        hit = keys[order][j] == want
        here, at = here[hit], order[j][hit]
        expected.done[here] = True
        by_row = np.argsort(at, kind="stable")  # walked with the slices
    else:
        at = by_row = np.zeros(0, dtype=np.int64)
    late: list[tuple[int, str]] = []  # (the dialogue's place in `here`, what is wrong): said after the rows'
    k = 0
    events_column = table.select(["episode_index", lang.EVENTS])
    for start in range(0, max(len(table), 1), EVENT_SLICE):
        part = events_column.slice(start, EVENT_SLICE)
        try:
            events_at = lang.read_file(part).events
        except lang.LanguageProblem as exc:
            return [f"{rel}: {exc}"]
        # by the rows' identities (read_file shares a row met again): a frame like one checked is not checked
        # again (a slice's own rows: their ids are theirs while the slice is read)
        said: dict[tuple[int, ...], list[str]] = {}
        paired: dict[tuple[int, ...], set[int]] = {}
        for i, events in events_at.items():
            key = tuple(map(id, events))
            wrong = said.get(key)
            if wrong is None:
                wrong = said[key] = [f"{lang.EVENTS} row {row}: {p}" for row in events
                                     for p in lang.row_problems(row, lang.EVENTS)] + lang.frame_problems(events)
            if wrong:
                where = f"{rel}: episode {int(episodes[start + i])} frame {int(frames[start + i])}"
                found += [f"{where}: {w}" for w in wrong]
        while k < len(by_row) and at[by_row[k]] < start + EVENT_SLICE:
            n = int(by_row[k])
            i, pos = int(here[n]), int(at[n])
            k += 1
            where = f"{rel}: episode {expected.episode(i)} frame {expected.frame(i)}"
            ts = float(expected.stamp[i])
            if not math.isnan(ts) and ts != float(stamps[pos]):
                late.append((n, f"{where}: the dialogue's timestamp {ts if math.isfinite(ts) else 'is not a number and'} "
                                f"is not the frame's {float(stamps[pos])}"))
            events = events_at.get(pos - start, [])
            key = tuple(map(id, events))
            pairs = paired.get(key)
            if pairs is None:
                pairs = paired[key] = _pairs(events)
            if int(expected.digest[i]) not in pairs:
                late.append((n, f"{where}: the generated dialogue is not in {lang.EVENTS} as an interjection + say "
                                "pair"))
    return found + [line for _, line in sorted(late, key=lambda x: x[0])]


def _pairs(events: Sequence[lang.Row]) -> set[int]:
    """The digests of the (interjection, say) pairs one frame's events hold (:func:`dialogue_digest`):
    an interjection exactly as :func:`hub_pgen.language.dialogue_rows` writes it, with any say call."""
    asked = [r["content"] for r in events if r.get("style") == "interjection" and r.get("role") == "user"
             and r.get("camera") is None and r.get("tool_calls") is None and len(r) == _EVENT_KEYS]
    said = [args.get("text") for r in events if lang.is_say(r)
            and isinstance(args := (r["tool_calls"][0].get("function") or {}).get("arguments"), dict)]
    return {dialogue_digest(a, b) for a in asked for b in said}


_EVENT_KEYS = len(lang.dialogue_rows("", "")[0])


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
            found += _check_language(rel, table, dialogues)
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
