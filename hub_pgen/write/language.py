"""lerobot's language columns, written beside (or instead of) ``task_index_high_level``.

lerobot >= 0.6.0 carries language in two per-frame columns of the data parquet
(``lerobot/datasets/language.py`` is the reference; this module needs no lerobot):

- ``language_persistent``: the same list on every frame of an episode; a row ``{role, content,
  style, timestamp, camera, tool_calls}`` is active from its ``timestamp`` on. Each skill of the
  run's episodes becomes a ``subtask`` row at the timestamp of its first frame.
- ``language_events``: rows ``{role, content, style, camera, tool_calls}`` on the one frame where
  the event happens. Each generated dialogue becomes the pair lerobot's own interjections module
  writes: the user's ``interjection`` and the assistant's ``say`` tool call, on the sample's first
  frame (docs/design.md says why one event, not one per frame of the segment).

Timestamps are the data parquet's own float32 values, copied, never recomputed: lerobot matches
events to frames by exact timestamp. Rows a source already carries are kept; where the source
already has subtasks for an episode, or a dialogue at a frame, hub-pgen adds none of its own there
(two rows of one style at one moment make lerobot's resolvers ambiguous), and the counts say so.
The columns are written with lerobot's canonical Arrow types (``tool_calls`` as a list of JSON).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pyarrow as pa

from hub_pgen import language as lang
from hub_pgen.data import Sample
from hub_pgen.language import Row
from hub_pgen.plan.table import SampleTable
from hub_pgen.textsafe import well_formed

# --- what a run adds ----------------------------------------------------------------------------


class _Dialogues(Mapping[int, tuple[tuple[int, tuple[str, str]], ...]]):
    """Episode → ((frame, (user prompt, robot utterance)), ...) in frame order, the pairs looked up by plan
    position when a data file asks for its episode. Held: two int arrays sorted by (episode, frame) — the
    place (episode << 32 | frame) and which sample's dialogue (plan position) — not a tuple a sample."""

    def __init__(self, keys: np.ndarray, positions: np.ndarray, dialogue_at: Callable[[int], tuple[str, str]]) -> None:
        self._keys, self._positions = keys, positions
        self._at = dialogue_at

    def __getitem__(self, episode: int) -> tuple[tuple[int, tuple[str, str]], ...]:
        lo = int(np.searchsorted(self._keys, episode << 32, "left"))
        hi = int(np.searchsorted(self._keys, (episode + 1) << 32, "left"))
        if lo == hi:
            raise KeyError(episode)
        return tuple((frame, self._at(i)) for frame, i in zip((self._keys[lo:hi] & _FRAME).tolist(),
                                                               self._positions[lo:hi].tolist()))

    def __iter__(self) -> Iterator[int]:
        return iter(np.unique(self._keys >> 32).tolist())

    def __len__(self) -> int:
        return len(np.unique(self._keys >> 32))


_FRAME = (1 << 32) - 1


@dataclass(frozen=True)
class LanguagePlan:
    """What hub-pgen adds: subtasks per episode and dialogues per (episode, frame)."""

    subtasks: dict[int, tuple[tuple[int, str], ...]]  # episode → ((first frame, skill), ...) in frame order
    # episode → ((frame, (user prompt, robot utterance)), ...) in frame order: a data file looks up its
    # own episodes' dialogues only (time linear in samples, not files x samples)
    dialogues: Mapping[int, tuple[tuple[int, tuple[str, str]], ...]]


def plan_language(segments: Iterable[Any], samples: Sequence[Sample], with_dialogue: np.ndarray,
                  dialogue_at: Callable[[int], tuple[str, str]]) -> LanguagePlan:
    """``segments`` are the plan's (hub_pgen.plan.planner.Segment): one subtask row each. A dialogue
    goes on its sample's first frame (the frame whose images the model saw); of two samples on one
    frame, the later one's. ``with_dialogue``: by plan position, whether the sample's record has a
    dialogue; ``dialogue_at``: its (user prompt, robot utterance) by plan position, parquet-safe
    (hub_pgen.write.records.Dialogues: the run's one pass over its records found them)."""
    subtasks: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for seg in segments:
        subtasks[seg.episode_index].append((seg.frame_start, well_formed(seg.skill)))
    if isinstance(samples, SampleTable):
        episodes, starts = samples.episodes(), samples.frames()[0]
    else:
        episodes = np.array([-1 if s.episode_index is None else s.episode_index for s in samples], dtype=np.int64)
        starts = np.array([-1 if s.frame_start is None else s.frame_start for s in samples], dtype=np.int64)
    positions = np.flatnonzero(with_dialogue & (episodes >= 0) & (starts >= 0))
    keys = episodes[positions]  # (episode << 32 | first frame), made in place: one array, not four
    del episodes
    keys <<= 32
    keys |= starts[positions]
    if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):  # a dataset's plan is in this order already
        order = np.argsort(keys, kind="stable")  # plan order kept among samples on one frame
        keys, positions = keys[order], positions[order]
        last = np.append(keys[1:] != keys[:-1], True)  # of two samples on one frame, the later one's
        keys, positions = keys[last], positions[last]
    return LanguagePlan({e: tuple(sorted(v)) for e, v in subtasks.items()},
                        _Dialogues(keys, positions.astype(np.int32), dialogue_at))


@dataclass
class LanguageCounts:
    """What the language columns got, and what the source already had (added up over data files)."""

    subtask_rows: int = 0  # added, one per skill segment
    dialogues: int = 0  # interjection + say pairs added
    kept_persistent_rows: int = 0  # the source's own rows (once per episode)
    kept_event_rows: int = 0
    already_there: int = 0  # rows hub-pgen would add that the source has already (an earlier run)
    episodes_with_source_subtasks: list[int] = field(default_factory=list)  # their subtasks kept, none added
    dialogues_not_added: list[str] = field(default_factory=list)  # "episode E frame F": the frame had one

    def add(self, other: LanguageCounts) -> None:
        """``other``'s counts after these (a data file's, written on its own: hub_pgen.run.running_pass):
        every field, numbers added and lists extended."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, Any]:
        return {
            "subtask_rows": self.subtask_rows,
            "dialogues": self.dialogues,
            "kept_source_rows": {"persistent": self.kept_persistent_rows, "events": self.kept_event_rows},
            "already_there": self.already_there,
            "episodes_with_source_subtasks": sorted(self.episodes_with_source_subtasks),
            "dialogues_not_added": self.dialogues_not_added,
        }

    def lines(self) -> list[str]:
        """What to tell the user about rows the source had."""
        out: list[str] = []
        if self.kept_persistent_rows or self.kept_event_rows:
            out.append(f"kept the source's language rows: {self.kept_persistent_rows} persistent, "
                       f"{self.kept_event_rows} events")
        if self.already_there:
            out.append(f"{self.already_there} language row(s) were already in the source (an earlier hub-pgen "
                       "run) and were not added again")
        if self.episodes_with_source_subtasks:
            eps = self.episodes_with_source_subtasks
            out.append(f"{len(eps)} episode(s) already had subtask rows, kept as they were (no skills.json "
                       f"subtasks added): {', '.join(map(str, eps[:10]))}{' …' if len(eps) > 10 else ''}")
        if self.dialogues_not_added:
            out.append(f"{len(self.dialogues_not_added)} dialogue(s) not added to language_events: their frame "
                       f"already had an interjection or say call (e.g. {self.dialogues_not_added[0]}); they are in "
                       "the journal and, with the hirobot format, in task_index_high_level")
        return out


def language_columns(table: pa.Table, plan: LanguagePlan, counts: LanguageCounts) -> tuple[pa.Array, pa.Array]:
    """The two columns for one data file: the source's rows (if any) plus hub-pgen's. Python touches
    one list per episode and the frames with events; the per-frame columns are built by Arrow."""
    episodes = table.column("episode_index").to_numpy()
    frames = table.column("frame_index").to_numpy()
    stamps = table.column("timestamp").to_numpy()  # float32 as stored: copied, never recomputed
    src = lang.read_file(table)  # checked at load (hub_pgen.source.checks.check_language) already
    uniq, inverse = np.unique(episodes, return_inverse=True)
    find = _RowFinder(episodes, frames)

    per_episode: list[list[Row]] = []
    for e in uniq.tolist():
        first = src.persistent.get(e, [])
        counts.kept_persistent_rows += len(first)
        ours = [lang.subtask_row(skill, stamps[i]) for f, skill in plan.subtasks.get(e, ())
                if (i := find(e, f)) is not None]
        rows = list(first)
        if ours:
            if all(r in first for r in ours):
                counts.already_there += len(ours)
            elif any(r.get("style") == "subtask" for r in first):
                counts.episodes_with_source_subtasks.append(e)
            else:
                rows = sorted(first + ours, key=lang.persistent_key)
                counts.subtask_rows += len(ours)
        per_episode.append(rows)
    persistent = lang.to_arrow(per_episode, lang.PERSISTENT).take(pa.array(inverse))

    events = {i: list(rows) for i, rows in src.events.items()}
    counts.kept_event_rows += sum(len(rows) for rows in events.values())
    # the frames without a row of the source's (most, or all): their pair of rows made as Arrow columns
    # at once (lang.dialogue_events), not a dict a row
    plain: list[int] = []
    prompts: list[str] = []
    utterances: list[str] = []
    for e, f, dialogue in ((ep, f, d) for ep in uniq.tolist() for f, d in plan.dialogues.get(ep, ())):
        i = find(e, f)
        if i is None:
            continue  # a frame this data file does not hold
        have = events.get(i)
        if have is None:  # one dialogue a frame (plan_language): nothing else is put at i
            plain.append(i)
            prompts.append(dialogue[0])
            utterances.append(dialogue[1])
            counts.dialogues += 1
            continue
        ours = lang.dialogue_rows(*dialogue)
        if all(r in have for r in ours):
            counts.already_there += len(ours)
        elif any(r.get("style") == "interjection" or lang.is_say(r) for r in have):
            counts.dialogues_not_added.append(f"episode {e} frame {f}")
        else:
            events[i] = sorted(have + ours, key=lang.event_key)
            counts.dialogues += 1
    slot = np.zeros(len(table), dtype=np.int64)  # slot 0: no events
    order = sorted(events)
    slot[order] = np.arange(1, len(order) + 1)
    slot[plain] = np.arange(len(order) + 1, len(order) + 1 + len(plain))
    rows = lang.to_text_arrow([[]] + [events[i] for i in order], lang.EVENTS)
    if plain:
        rows = pa.concat_arrays([rows, lang.dialogue_events(prompts, utterances)])
    lists = lang.as_canonical(rows.take(pa.array(slot)), lang.EVENTS)
    return persistent, lists


class _RowFinder:
    """(episode, frame) → row position in the file, None when the file has no such row."""

    def __init__(self, episodes: np.ndarray, frames: np.ndarray) -> None:
        self._width = int(frames.max()) + 1 if len(frames) else 1
        keys = episodes.astype(np.int64) * self._width + frames.astype(np.int64)
        self._order = np.argsort(keys, kind="stable")
        self._keys = keys[self._order]

    def __call__(self, episode: int, frame: int) -> int | None:
        if not 0 <= frame < self._width:
            return None
        key = episode * self._width + frame
        j = int(np.searchsorted(self._keys, key))
        return int(self._order[j]) if j < len(self._keys) and self._keys[j] == key else None
