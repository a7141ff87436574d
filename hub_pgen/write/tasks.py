"""The new ``meta/tasks.parquet`` rows: one per distinct (dialogue, skill) of the run, and which row each
sample's frames point at (``task_index_high_level``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hub_pgen import fsio, layout
from hub_pgen.data import Dialogue, JournalRecord, Sample, SourceDataset
from hub_pgen.plan.table import SampleTable, rows, sample_ids
from hub_pgen.textsafe import well_formed


@dataclass(frozen=True)
class NewTask:
    task_index: int
    task: str  # the tasks.parquet index string
    user_prompt: str
    robot_utterance: str
    skill: str
    scenario_type: str
    response_type: str


@dataclass(frozen=True)
class TaskAssignment:
    # by plan position: the sample's task_index_high_level (NO_TASK: no dialogue); an array, not a dict of ids
    by_position: np.ndarray
    new_tasks: tuple[NewTask, ...]

    @classmethod
    def none(cls, n: int) -> TaskAssignment:
        return cls(np.full(n, layout.NO_TASK, dtype=np.int64), ())


def assign_task_indices(
    source_tasks: Sequence[str], source_indices: Sequence[int], samples: Sequence[Sample],
    records: Mapping[str, JournalRecord],
) -> TaskAssignment:
    """One new tasks row per distinct (dialogue, skill), in plan order, from the next free index
    (:class:`TaskAssigner` over ``samples``' records)."""
    tasks = TaskAssigner(source_tasks, source_indices, len(samples))
    for i, sid in enumerate(sample_ids(samples)):
        rec = records.get(sid)
        if rec is not None and (dialogue := rec.dialogue) is not None:
            tasks.add(i, dialogue, rec.skill_current)
    return tasks.result()


class TaskAssigner:
    """The task rows of a run's dialogues, given one sample at a time in plan order (the run's one pass
    over its records, hub_pgen.write.records).

    The row's ``skill`` must be true for every frame pointing at it, so a dialogue text that was
    generated for two different skills (or equals an original task string) gets a ``(#n)`` suffix
    to keep the index strings unique (after lone surrogates became U+FFFD: parquet holds UTF-8).
    """

    def __init__(self, source_tasks: Sequence[str], source_indices: Sequence[int], n: int) -> None:
        self._next = max(source_indices, default=-1) + 1
        self._taken: set[str] = set(source_tasks)
        self._by_key: dict[tuple[str, str], NewTask] = {}
        self._new: list[NewTask] = []
        self.by_position = np.full(n, layout.NO_TASK, dtype=np.int64)

    def add(self, position: int, dialogue: Dialogue, skill: str) -> None:
        """Sample ``position`` (of the plan) has ``dialogue``, for ``skill``."""
        key = (dialogue.task_string, skill)
        row = self._by_key.get(key)
        if row is None:
            base = text = well_formed(dialogue.task_string)
            n = 2
            while text in self._taken:
                text = f"{base} (#{n})"
                n += 1
            self._taken.add(text)
            row = NewTask(self._next, text, well_formed(dialogue.user_prompt), well_formed(dialogue.robot_utterance),
                          well_formed(skill), well_formed(dialogue.scenario_type), well_formed(dialogue.response_type))
            self._next += 1
            self._by_key[key] = row
            self._new.append(row)
        self.by_position[position] = row.task_index

    def result(self) -> TaskAssignment:
        return TaskAssignment(by_position=self.by_position, new_tasks=tuple(self._new))


def frame_task_indices(
    source: SourceDataset, samples: Sequence[Sample], assignment: TaskAssignment
) -> dict[int, np.ndarray]:
    """Per episode, the task_index_high_level of each frame (-1 where no sample's dialogue applies)."""
    out = {e: np.full(ep.length, layout.NO_TASK, dtype=np.int64) for e, ep in source.episodes.items()}
    if isinstance(samples, SampleTable):  # a chunk at a time: not four lists of every sample
        spans: Iterable[tuple[Any, ...]] = rows(samples.episodes(), *samples.frames(), assignment.by_position)
    else:
        spans = ((s.episode_index, s.frame_start, s.frame_end, idx)
                 for s, (idx,) in zip(samples, rows(assignment.by_position)))
    for e, a, b, idx in spans:
        if idx != layout.NO_TASK and e is not None:
            out[e][a:b] = idx
    return out


def write_tasks(src: Path, dst: Path, new_tasks: Sequence[NewTask]) -> None:
    df = pd.read_parquet(src)
    index_name = df.index.name
    for col in layout.TASK_EXTRA_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series([None] * len(df), index=df.index, dtype=object)
    if new_tasks:
        rows = pd.DataFrame(
            {
                "task_index": [t.task_index for t in new_tasks],
                "user_prompt": [t.user_prompt for t in new_tasks],
                "robot_utterance": [t.robot_utterance for t in new_tasks],
                "skill": [t.skill for t in new_tasks],
                "scenario_type": [t.scenario_type for t in new_tasks],
                "response_type": [t.response_type for t in new_tasks],
            },
            index=pd.Index([t.task for t in new_tasks], name=index_name),
        )
        rows["task_index"] = rows["task_index"].astype(df["task_index"].dtype)
        df = pd.concat([df, rows[df.columns]], axis=0)
    df.index.name = index_name
    dst.parent.mkdir(parents=True, exist_ok=True)
    with fsio.create(dst) as fh:
        df.to_parquet(fh)
