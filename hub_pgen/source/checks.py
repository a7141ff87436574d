"""What must hold of a source dataset before any output exists — checked at load, so a bad input costs
seconds, not the GPU hours of a generation whose result would then fail ``validate`` or the push.

- :func:`check_tree`: every file the new dataset copies or links is a regular file inside the dataset.
  A symbolic link may point inside the dataset folder, or (a Hub download) into the Hub cache
  folder of that repo, whose ``snapshots/`` are links into ``blobs/``; anything else — a link to
  ``/etc/passwd`` or to ``/dev/zero``, a dangling link, a FIFO, a device, a socket — is refused,
  naming the file. Without this the writer would copy (or hard-link) the target into the new
  dataset, and the push would upload it.
- :func:`check_counts`: ``info.json``'s totals agree with the episodes metadata.
- :func:`check_frames`: every data row belongs to a listed episode; each episode's rows have frame
  indices ``0..length-1`` once each and finite, increasing timestamps; every ``task_index`` the
  frames use names a row of ``tasks.parquet`` (else hub-pgen's new dialogues would take those
  indices and the original labels would silently point at generated text).
- :func:`check_stats`: the stats hub-pgen extends carry ``count`` (LeRobot's aggregation needs it).
- :func:`check_language`: language columns a source already has (lerobot-annotate's) are declared in
  ``info.json``, readable as lerobot's rows, the same persistent rows on every frame of an episode,
  and every row keeps lerobot's invariants — hub-pgen keeps them, so it must not pass on broken ones.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hub_pgen import language as lang
from hub_pgen import layout
from hub_pgen.data import Episode
from hub_pgen.errors import SourceError

SHOWN = 5
_SKIP_DIRS = {".cache", ".git", ".hub-pgen", "__pycache__"}  # never copied (see write/dataset.py)


def _within(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _kind(mode: int) -> str | None:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None


def check_tree(root: Path, *, allowed: Sequence[Path] = ()) -> None:
    """Refuse links that leave the dataset (and ``allowed`` folders), dangling links and special files."""
    root = Path(root)
    real_root = os.path.realpath(root)
    roots = [real_root, *(os.path.realpath(a) for a in allowed)]
    bad: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            try:
                st = os.lstat(path)
            except OSError as e:
                bad.append(f"{rel} ({e.strerror})")
                continue
            if stat.S_ISLNK(st.st_mode):
                target = os.path.realpath(path)
                if not _within(target, roots):
                    bad.append(f"{rel} (a link to {os.readlink(path)}, outside the dataset)")
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    bad.append(f"{rel} (a link to {os.readlink(path)}, which does not exist)")
                    continue
            kind = _kind(st.st_mode)
            if kind is not None:
                bad.append(f"{rel} ({kind})")
        # links to folders are listed above and not followed
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    if bad:
        shown = "; ".join(bad[:SHOWN]) + (f"; and {len(bad) - SHOWN} more" if len(bad) > SHOWN else "")
        raise SourceError(
            f"{root} holds {len(bad)} file(s) hub-pgen will not copy into a new dataset: {shown}",
            path=root / bad[0].split(" (")[0],
            hint="hub-pgen copies the whole dataset folder; replace links that point outside it with the files "
                 "themselves, and remove FIFOs, devices, sockets and dangling links",
        )


def check_counts(info: dict[str, Any], episodes: dict[int, Episode], path: Path) -> None:
    """``total_episodes``/``total_frames`` as the episodes metadata has them (``validate`` and LeRobot check)."""
    frames = sum(ep.length for ep in episodes.values())
    for key, actual in (("total_episodes", len(episodes)), ("total_frames", frames)):
        value = info.get(key)
        if value is not None and value != actual:
            raise SourceError(
                f"{path}: {key} is {value!r}, but the episodes metadata has {actual}",
                path=path, hint=f"set {key} to {actual} in meta/info.json (or download the dataset again)",
            )


def check_frames(root: Path, episodes: dict[int, Episode], task_indices: Sequence[int]) -> None:
    """Data rows against the episodes metadata and tasks.parquet (four columns of every data file)."""
    known_tasks = set(task_indices)
    by_file: dict[str, list[int]] = {}
    for e, ep in episodes.items():
        by_file.setdefault(ep.data_path, []).append(e)
    for rel, listed in sorted(by_file.items()):
        path = root / rel
        try:
            table = pq.read_table(path, columns=["episode_index", "frame_index", "timestamp", "task_index"])
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"{path} is not a readable data parquet ({exc})", path=path,
                              hint="the file may be damaged: download the dataset again") from exc
        cols = {name: table.column(name) for name in table.column_names}
        for name, col in cols.items():
            if col.null_count:
                raise SourceError(f"{path}: column {name!r} has {col.null_count} empty (null) value(s)", path=path)
        ep_col = cols["episode_index"].to_numpy()
        stray = sorted(set(np.unique(ep_col).tolist()) - set(listed))
        if stray:
            elsewhere = [e for e in stray if e in episodes]
            raise SourceError(
                f"{path}: rows of episode(s) {stray[:SHOWN]} that meta/episodes does not place in this file"
                + (" (it places them in another file)" if elsewhere else " (meta/episodes does not list them)"),
                path=path, hint="meta/episodes and the data files disagree: the dataset is damaged; download it again",
            )
        frames = cols["frame_index"].to_numpy()
        times = cols["timestamp"].to_numpy().astype(np.float64)
        used = set(np.unique(cols["task_index"].to_numpy()).tolist())
        unknown = sorted(used - known_tasks)
        if unknown:
            raise SourceError(
                f"{path}: frames use task_index {unknown[:SHOWN]}, which meta/tasks.parquet does not have",
                path=root / layout.TASKS_PATH,
                hint="meta/tasks.parquet lacks rows the frames point at (new dialogues would take those indices "
                     "and relabel the frames): download the dataset again",
            )
        order = np.argsort(ep_col, kind="stable")
        uniq, starts = np.unique(ep_col[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        rows = {int(u): order[a:b] for u, a, b in zip(uniq, starts, ends)}
        empty = np.array([], dtype=np.int64)
        for e in listed:
            idx = rows.get(e, empty)
            _check_episode_rows(path, episodes[e], frames[idx], times[idx])


def _check_episode_rows(path: Path, ep: Episode, frames: np.ndarray, times: np.ndarray) -> None:
    where = f"{path}, episode {ep.index}"
    if len(frames) != ep.length or not np.array_equal(np.sort(frames), np.arange(ep.length)):
        values, counts = np.unique(frames, return_counts=True)
        twice = values[counts > 1].tolist()[:SHOWN]
        missing = sorted(set(range(ep.length)) - set(values.tolist()))[:SHOWN]
        extra = sorted(set(values.tolist()) - set(range(ep.length)))[:SHOWN]
        parts = [f"{len(frames)} rows where meta/episodes says length {ep.length}"]
        if twice:
            parts.append(f"frame_index {twice} appear(s) more than once")
        if missing:
            parts.append(f"frame_index {missing} missing")
        if extra:
            parts.append(f"frame_index {extra} beyond the episode's length")
        raise SourceError(f"{where}: " + "; ".join(parts), path=path,
                          hint="the data file and meta/episodes disagree: the dataset is damaged; download it again")
    order = np.argsort(frames, kind="stable")
    ts = times[order]
    if not np.isfinite(ts).all():
        bad = frames[order][~np.isfinite(ts)].tolist()[:SHOWN]
        raise SourceError(f"{where}: timestamp is not a number at frame_index {bad}", path=path)
    if len(ts) > 1 and not (np.diff(ts) > 0).all():
        at = frames[order][1:][np.diff(ts) <= 0].tolist()[:SHOWN]
        raise SourceError(f"{where}: timestamps do not increase with frame_index (at frame_index {at})", path=path,
                          hint="each frame's timestamp must be later than the one before: the file is damaged")


def check_stats(stats: dict[str, Any], path: Path) -> None:
    """The stats hub-pgen mirrors for its new column (those of task_index) must include ``count``."""
    for key in ("task_index", "frame_index", "episode_index", "index"):
        entry = stats.get(key)
        if isinstance(entry, dict):
            if "count" not in entry:
                raise SourceError(f"{path}: the stats of {key!r} lack 'count' (LeRobot aggregates stats by count)",
                                  path=path, hint="recompute meta/stats.json with lerobot, or download the dataset again")
            return


def check_language(root: Path, info: dict[str, Any], data_paths: Sequence[str]) -> lang.SourceLanguage | None:
    """A source's own language columns (see the module docstring), and what the run must respect in
    them; None when it has none."""
    declared = [c for c in lang.COLUMNS if c in info.get("features", {})]
    dialogue_frames: set[tuple[int, int]] = set()
    subtasks: dict[int, tuple[tuple[float, str], ...]] = {}
    seen = False
    for rel in data_paths:
        path = root / rel
        names = pq.read_schema(path).names
        present = [c for c in lang.COLUMNS if c in names]
        if not declared and not present:
            continue
        seen = True
        undeclared = sorted(set(present) - set(declared))
        if undeclared:
            raise SourceError(f"{path}: column(s) {undeclared} are not declared in meta/info.json", path=path,
                              hint='lerobot refuses undeclared language columns: add {"dtype": "language", "shape": '
                                   '[1], "names": null} features for them, or drop the columns')
        missing = sorted(set(declared) - set(present))
        if missing:
            raise SourceError(f"{path}: meta/info.json declares {missing}, the data file has no such column",
                              path=path, hint="the dataset is damaged or half-annotated: annotate it again, or "
                                              "remove the features from meta/info.json")
        table = pq.read_table(path, columns=["episode_index", "frame_index", *present])
        try:
            rows = lang.read_file(table)
        except lang.LanguageProblem as exc:
            raise SourceError(f"{path}: {exc}", path=path,
                              hint="hub-pgen keeps a source's language rows and will not copy broken ones: "
                                   "annotate the dataset again, or drop its language columns") from None
        frames = table.column("frame_index").to_numpy()
        episodes = table.column("episode_index").to_numpy()
        first = {int(e): int(frames[i]) for e, i in zip(*np.unique(episodes, return_index=True))}
        found = [(e, first[e], lang.PERSISTENT, r) for e, rs in rows.persistent.items() for r in rs]
        found += [(int(episodes[i]), int(frames[i]), lang.EVENTS, r) for i, rs in rows.events.items() for r in rs]
        for episode, frame, column, row in found:
            bad = lang.row_problems(row, column)
            if bad:
                raise SourceError(f"{path}: episode {episode} frame {frame}: a {column} row breaks lerobot's rules "
                                  f"({'; '.join(bad)}): {row}", path=path,
                                  hint="hub-pgen keeps a source's language rows and will not copy broken ones: "
                                       "fix or re-annotate the dataset")
            if column == lang.EVENTS and lang.is_dialogue(row):
                dialogue_frames.add((episode, frame))
        for e, rs in rows.persistent.items():
            subs = tuple(sorted((float(r["timestamp"]), r["content"]) for r in rs
                                if r.get("style") == "subtask" and r.get("content")))
            if subs:
                subtasks[e] = subs
    if not seen:
        return None
    return lang.SourceLanguage(frozenset(dialogue_frames), subtasks)
