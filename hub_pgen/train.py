"""Reading a hub-pgen output for training: a frame's ``task_index_high_level`` → its dialogue and skill.

lerobot's loader gives each item ``task_index_high_level`` (an int64 tensor) and keeps the dialogue
rows in ``meta.tasks`` (a DataFrame indexed by the task string); without this, a user filters that
table by hand. Works on a ``LeRobotDataset``, its ``meta``, the tasks DataFrame or the folder, and
needs neither lerobot nor torch::

    from hub_pgen.train import HighLevelTasks
    tasks = HighLevelTasks.from_dataset(ds)          # or HighLevelTasks.from_root("hub-pgen-out/…")
    hl = tasks.for_item(ds[i])                       # None where no dialogue applies (-1)
    hl.user_prompt, hl.robot_utterance, hl.skill
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from hub_pgen import layout


@dataclass(frozen=True)
class HighLevelTask:
    task_index: int
    user_prompt: str
    robot_utterance: str
    skill: str
    scenario_type: str | None = None
    response_type: str | None = None


class HighLevelTasks(Mapping[int, HighLevelTask]):
    """The generated rows of ``meta/tasks.parquet`` by task index."""

    def __init__(self, tasks: Mapping[int, HighLevelTask]) -> None:
        self._tasks = dict(tasks)

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> HighLevelTasks:
        """Rows with ``task_index`` and the generated columns; original tasks (no user prompt) are skipped."""
        missing = [c for c in ("task_index", *layout.TASK_EXTRA_COLUMNS[:3]) if rows and c not in rows[0]]
        if missing:
            raise ValueError(f"the tasks table has no column(s) {missing}: it is not a hub-pgen output with the "
                             "hirobot format (--format both or hirobot)")
        out: dict[int, HighLevelTask] = {}
        for r in rows:
            if not _present(r.get("user_prompt")):
                continue
            i = int(r["task_index"])
            out[i] = HighLevelTask(i, str(r["user_prompt"]), str(r["robot_utterance"]), str(r["skill"]),
                                   _str_or_none(r.get("scenario_type")), _str_or_none(r.get("response_type")))
        return cls(out)

    @classmethod
    def from_root(cls, root: str | Path) -> HighLevelTasks:
        """From a dataset folder's ``meta/tasks.parquet``."""
        return cls.from_rows(pq.read_table(Path(root) / layout.TASKS_PATH).to_pylist())

    @classmethod
    def from_frame(cls, tasks: Any) -> HighLevelTasks:
        """From a pandas DataFrame shaped like ``LeRobotDatasetMetadata.tasks``."""
        return cls.from_rows(tasks.reset_index(drop=True).to_dict("records"))

    @classmethod
    def from_dataset(cls, dataset: Any) -> HighLevelTasks:
        """From a ``LeRobotDataset`` (or its ``meta``)."""
        meta = getattr(dataset, "meta", dataset)
        return cls.from_frame(meta.tasks)

    def __getitem__(self, index: int) -> HighLevelTask:
        return self._tasks[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def lookup(self, index: Any) -> HighLevelTask | None:
        """The dialogue of ``task_index_high_level`` = ``index`` (an int, or a one-element tensor/array);
        None for -1. An index that names no generated row is an error: the dataset was changed after
        hub-pgen wrote it (lerobot's merge, for one, remaps only ``task_index``: README, "Merging")."""
        i = int(index.item() if hasattr(index, "item") else index)
        if i == layout.NO_TASK:
            return None
        try:
            return self._tasks[i]
        except KeyError:
            raise KeyError(f"{layout.FEATURE} {i} names no generated row of meta/tasks.parquet "
                           f"({len(self)} generated rows): the dataset was changed after hub-pgen wrote it") from None

    def for_item(self, item: Mapping[str, Any]) -> HighLevelTask | None:
        """The dialogue of a dataset item (``ds[i]``), None where none applies."""
        if layout.FEATURE not in item:
            raise KeyError(f"the item has no {layout.FEATURE!r}: the dataset is not a hub-pgen output with the "
                           "hirobot format (its language columns carry the dialogues instead)")
        return self.lookup(item[layout.FEATURE])


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _str_or_none(value: Any) -> str | None:
    return str(value) if _present(value) else None
