"""What ``hub-pgen validate`` checks of lerobot's language columns: their rows keep lerobot's rules, and
each generated dialogue of ``meta/syn_annotations.jsonl`` is on its frame as an interjection + say
pair (:class:`Expected`: 20 bytes a dialogue, nothing read back). :mod:`hub_pgen.write.validate`
calls it for each data file."""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from hub_pgen import language as lang
from hub_pgen import layout
from hub_pgen.textsafe import well_formed


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


def expected_dialogues(root: Path, prov: dict | None) -> Expected:
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


def check_language(rel: str, table: pa.Table, expected: Expected) -> list[str]:
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
