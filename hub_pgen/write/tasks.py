"""The new ``meta/tasks.parquet`` rows: one per distinct (dialogue, skill) of the run, and which row each
sample's frames point at (``task_index_high_level``).

A model writes a dialogue of its own for nearly every sample, so a run of 500k samples makes ~500k
rows: they are held compactly (:class:`TaskRows`: each text's UTF-8 bytes in one buffer, skills and
types as small codes, a 16-byte digest a row to find it again), not as Python objects (~1.1 KB a row
as tuples, dicts and dataclasses; issue 23), and written to parquet from those buffers.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hub_pgen import fsio, layout
from hub_pgen.data import Dialogue, JournalRecord, Sample, SourceDataset
from hub_pgen.plan.table import SampleTable, rows, sample_ids
from hub_pgen.textsafe import digest, well_formed


@dataclass(frozen=True)
class NewTask:
    task_index: int
    task: str  # the tasks.parquet index string
    user_prompt: str
    robot_utterance: str
    skill: str
    scenario_type: str
    response_type: str


class _Utf8:
    """Strings as one UTF-8 buffer and their end offsets: a string costs its bytes and 8 more."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ends = array("q")

    def append(self, text: str) -> None:
        self.data += text.encode("utf-8")  # well-formed text (no lone surrogate): always encodes
        self.ends.append(len(self.data))

    def __getitem__(self, k: int) -> str:
        return self.data[self.ends[k - 1] if k else 0 : self.ends[k]].decode("utf-8")

    def __len__(self) -> int:
        return len(self.ends)

    def arrow(self, nulls: int = 0) -> Any:
        """A pyarrow string array of every string, on these bytes (not copied), after ``nulls`` nulls."""
        import pyarrow as pa

        n, size = len(self.ends), len(self.data)
        offsets = np.zeros(nulls + n + 1, dtype=np.int64)
        offsets[nulls + 1 :] = np.frombuffer(self.ends, dtype=np.int64) if n else offsets[nulls + 1 :]
        valid = None
        if nulls:
            bits = np.ones(nulls + n, dtype=bool)
            bits[:nulls] = False
            valid = pa.py_buffer(np.packbits(bits, bitorder="little"))
        if size < 2**31:
            return pa.Array.from_buffers(pa.string(), nulls + n, [valid, pa.py_buffer(offsets.astype(np.int32)),
                                                                  pa.py_buffer(self.data)], null_count=nulls)
        large = pa.Array.from_buffers(pa.large_string(), nulls + n, [valid, pa.py_buffer(offsets),
                                                                     pa.py_buffer(self.data)], null_count=nulls)
        return large.cast(pa.string())  # (raises: over 2 GiB of text is more than one string array holds)


class _Codes:
    """A few distinct strings (skills, scenario and response types), each row's as a small code."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._code: dict[str, int] = {}
        self.codes = array("i")

    def append(self, text: str) -> None:
        code = self._code.get(text)
        if code is None:
            code = self._code[text] = len(self.values)
            self.values.append(text)
        self.codes.append(code)

    def __getitem__(self, k: int) -> str:
        return self.values[self.codes[k]]

    def arrow(self) -> Any:
        import pyarrow as pa

        return pa.DictionaryArray.from_arrays(pa.array(np.frombuffer(self.codes, dtype=np.int32)),
                                              pa.array(self.values, type=pa.string())).cast(pa.string())


class TaskRows:
    """The new rows, in order, from task index ``first``: each one's dialogue (well-formed), skill and
    types, and its index string (``"<prompt> | <reply>"``, with a ``" (#n)"`` suffix where that text was
    taken: kept only for those)."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.prompts, self.replies = _Utf8(), _Utf8()
        self.skills, self.scenarios, self.responses = _Codes(), _Codes(), _Codes()
        self.suffix: dict[int, int] = {}  # row -> n, for the rows whose text is "... (#n)"

    def append(self, prompt: str, reply: str, skill: str, scenario: str, response: str, suffix: int) -> None:
        if suffix:
            self.suffix[len(self.prompts)] = suffix
        self.prompts.append(prompt)
        self.replies.append(reply)
        self.skills.append(skill)
        self.scenarios.append(scenario)
        self.responses.append(response)

    def __len__(self) -> int:
        return len(self.prompts)

    def text(self, k: int) -> str:
        n = self.suffix.get(k)
        base = f"{self.prompts[k]} | {self.replies[k]}"
        return base if n is None else f"{base} (#{n})"

    def __getitem__(self, k: int) -> NewTask:
        if not 0 <= k < len(self):
            raise IndexError(k)
        return NewTask(self.first + k, self.text(k), self.prompts[k], self.replies[k], self.skills[k],
                       self.scenarios[k], self.responses[k])

    def __iter__(self) -> Iterator[NewTask]:
        return (self[k] for k in range(len(self)))

    def columns(self) -> dict[str, Callable[..., Any]]:
        """Every row as pyarrow arrays, by tasks.parquet column (``task``: the index strings), each made
        when called (the texts' arrays are on the buffers; a writer holds one new column at a time)."""
        import pyarrow as pa

        return {"task": self._task_array,
                "task_index": lambda: pa.array(np.arange(self.first, self.first + len(self), dtype=np.int64)),
                "user_prompt": self.prompts.arrow, "robot_utterance": self.replies.arrow, "skill": self.skills.arrow,
                "scenario_type": self.scenarios.arrow, "response_type": self.responses.arrow}

    def _task_array(self) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        task = pc.binary_join_element_wise(self.prompts.arrow(), self.replies.arrow(), " | ")
        if not self.suffix:
            return task
        rows = sorted(self.suffix)  # a few: the rest are the joined texts
        mask = np.zeros(len(self), dtype=bool)
        mask[rows] = True
        return pc.replace_with_mask(task, pa.array(mask), pa.array([self.text(k) for k in rows], type=pa.string()))


@dataclass(frozen=True)
class TaskAssignment:
    # by plan position: the sample's task_index_high_level (NO_TASK: no dialogue); an array, not a dict of ids
    by_position: np.ndarray
    new_tasks: TaskRows

    @classmethod
    def none(cls, n: int) -> TaskAssignment:
        return cls(np.full(n, layout.NO_TASK, dtype=np.int64), TaskRows(0))

    def dialogue_at(self, position: int) -> tuple[str, str]:
        """The (user prompt, robot utterance) of the sample at plan ``position`` (it has one), as its row has
        them: well-formed (lone surrogates as U+FFFD), for lerobot's language columns."""
        rows = self.new_tasks
        k = int(self.by_position[position]) - rows.first
        return rows.prompts[k], rows.replies[k]


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


_DIGEST = 16  # bytes of a task row's digests (textsafe.digest's default size)


class TaskAssigner:
    """The task rows of a run's dialogues, given one sample at a time in plan order (the run's one pass
    over its records, hub_pgen.write.records).

    A row is a distinct (user prompt, robot utterance, skill): its ``skill`` must be true for every frame
    pointing at it, and its prompt and utterance columns those of every sample pointing at it. Its index
    string is ``"<prompt> | <reply>"``; where that text is taken (an original task string, the same
    dialogue for another skill, or another dialogue that joins to the same text) it gets a ``(#n)``
    suffix, so the index strings stay unique (after lone surrogates became U+FFFD: parquet holds UTF-8).

    Held a row: its texts' bytes (:class:`TaskRows`) and two 16-byte BLAKE2b digests, of the dialogue
    and skill (to find the row again) and of its index string (taken); a digest stands for the text it
    was made of (two texts sharing one: odds of ~1e-26 at a million rows).
    """

    def __init__(self, source_tasks: Sequence[str], source_indices: Sequence[int], n: int) -> None:
        self._new = TaskRows(max(source_indices, default=-1) + 1)
        self._taken: set[bytes] = {digest(t) for t in source_tasks}
        self._row: dict[bytes, int] = {}
        self.by_position = np.full(n, layout.NO_TASK, dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        """Saved with the digests as one byte string each set (the pass's checkpoint, hub_pgen.run.running_pass):
        a pickle keeps an entry a object it writes, ~40 bytes a row of transient memory for two sets of
        a row each (with a model, a row a sample)."""
        return {**self.__dict__, "_taken": b"".join(self._taken), "_row": (
            b"".join(self._row), np.fromiter(self._row.values(), dtype=np.int64, count=len(self._row)))}

    def __setstate__(self, state: dict[str, Any]) -> None:
        taken, (keys, rows) = state["_taken"], state["_row"]
        n = _DIGEST
        state["_taken"] = {taken[i:i + n] for i in range(0, len(taken), n)}
        state["_row"] = dict(zip((keys[i:i + n] for i in range(0, len(keys), n)), rows.tolist()))
        self.__dict__.update(state)

    def add(self, position: int, dialogue: Dialogue, skill: str) -> None:
        """Sample ``position`` (of the plan) has ``dialogue``, for ``skill``."""
        p, r = dialogue.user_prompt, dialogue.robot_utterance
        key = digest(p, r, skill)
        row = self._row.get(key)
        if row is None:
            row = self._row[key] = self._new.first + len(self._new)
            p, r = well_formed(p), well_formed(r)
            base = text = f"{p} | {r}"  # = well_formed(dialogue.task_string): " | " pairs no surrogate
            n = 1
            while (d := digest(text)) in self._taken:
                n += 1
                text = f"{base} (#{n})"
            self._taken.add(d)
            self._new.append(p, r, well_formed(skill), well_formed(dialogue.scenario_type),
                             well_formed(dialogue.response_type), n if n > 1 else 0)
        self.by_position[position] = row

    def result(self) -> TaskAssignment:
        return TaskAssignment(by_position=self.by_position, new_tasks=self._new)


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


def write_tasks(src: Path, dst: Path, new_tasks: TaskRows) -> None:
    """The source's ``meta/tasks.parquet`` with the new rows after its own (and the dialogue columns,
    null on its rows): the file pandas writes of the two frames concatenated. With many rows, the new
    ones go from :class:`TaskRows`' buffers to Arrow, under the schema pandas gives the source's rows
    and the first new one (its metadata included), without a Python object a row."""
    df = pd.read_parquet(src)
    index_name = df.index.name
    for col in layout.TASK_EXTRA_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series([None] * len(df), index=df.index, dtype=object)
    table = None
    if len(new_tasks) > 1:
        table = _arrow_table(df, _frame(df, [new_tasks[0]], index_name), new_tasks.columns())
    dst.parent.mkdir(parents=True, exist_ok=True)
    with fsio.create(dst) as fh:
        if table is None:  # few rows, or a source whose columns the new rows' arrays do not fit
            _frame(df, list(new_tasks), index_name).to_parquet(fh)
        else:
            import pyarrow.parquet as pq

            pq.write_table(table, fh, compression="snappy")  # as DataFrame.to_parquet does


def _frame(df: pd.DataFrame, new_tasks: Sequence[NewTask], index_name: Any) -> pd.DataFrame:
    """The source's rows and ``new_tasks`` as one frame (what the file holds, for few rows)."""
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
    return df


def _arrow_table(df: pd.DataFrame, head: pd.DataFrame, columns: dict[str, Callable[..., Any]]) -> Any:
    """The table pandas would make of the source's rows and every new one, from ``head`` (the source's
    rows and the first new one: its schema is the whole frame's, pandas' metadata included) and the new
    rows' ``columns``. None where a column is not one the new rows' arrays fit (then pandas writes it)."""
    import pyarrow as pa

    table = pa.Table.from_pandas(head)
    if head.attrs:  # as DataFrame.to_parquet keeps them
        import json

        table = table.replace_schema_metadata({**table.schema.metadata,
                                               b"PANDAS_ATTRS": json.dumps(head.attrs).encode()})
    schema = table.schema
    index = (schema.pandas_metadata or {}).get("index_columns") or []
    if len(index) != 1 or not isinstance(index[0], str):
        return None
    names = {name: name for name in columns} | {index[0]: "task"}
    if any(names.get(f.name) not in columns for f in schema):
        return None
    out = []
    for f in schema:  # one new column made at a time, and let go once joined to the source's rows
        make, head_rows = columns[names[f.name]], table.column(f.name).slice(0, len(df)).combine_chunks()
        if f.name in ("user_prompt", "robot_utterance") and head_rows.null_count == len(df):
            whole = make(nulls=len(df))  # the source's rows have none: nulls, then the texts' own bytes
            if whole.type != f.type:
                return None
            out.append(whole)
            continue
        new = make()
        if new.type != f.type:
            return None
        out.append(pa.concat_arrays([head_rows, new]))
        del new
    return pa.Table.from_arrays(out, schema=schema)


def read_tasks(path: Path, columns: Sequence[str] | None = None) -> tuple[Any, Any]:
    """A tasks.parquet as Arrow (its strings compact: a run can add a row a sample): its task strings (the
    pandas index the file holds; lerobot reads the file with pandas) and the table (of ``columns`` only,
    when given: those of them it has)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    name = task_strings_column(schema)
    if name is None:  # a RangeIndex: no strings, 0, 1, ...
        r = schema.pandas_metadata["index_columns"][0]
        table = pq.read_table(path, columns=None if columns is None else [c for c in columns if c in schema.names])
        return pa.chunked_array([pa.array(range(r["start"], r["stop"], r["step"]))]), table
    wanted = None if columns is None else [name, *(c for c in columns if c in schema.names and c != name)]
    table = pq.read_table(path, columns=wanted)
    return table.column(name), table.drop_columns([name]) if columns is not None else table


def task_strings_column(schema: Any) -> str | None:
    """The column of a tasks.parquet's task strings: the pandas index, or a ``task`` column in a file written
    without pandas' metadata; None for a RangeIndex (no strings). Raises ValueError otherwise."""
    index = (schema.pandas_metadata or {}).get("index_columns") or []
    if len(index) == 1 and isinstance(index[0], str) and index[0] in schema.names:
        return str(index[0])
    if not index and "task" in schema.names:  # written without pandas' metadata (not by pandas)
        return "task"
    if len(index) == 1 and isinstance(index[0], dict) and index[0].get("kind") == "range":
        return None
    raise ValueError(f"its task strings are neither its index nor a 'task' column (index {index!r})")


def batches(path: Path, columns: Sequence[str], size: int = 1 << 16) -> Iterator[Any]:
    """A parquet file's ``columns``, a record batch of ``size`` rows at a time."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        yield from f.iter_batches(batch_size=size, columns=list(columns))


def strings_repeat(path: Path, column: str) -> bool:
    """A string column of ``path`` holds a value twice (nulls count as one value): by a 16-byte digest a
    row, read a batch at a time (a tasks.parquet can hold a row a sample, and a hash table of its
    strings as much again)."""
    digests = bytearray()
    for batch in batches(path, [column]):
        for text in batch.column(0).to_pylist():
            digests += b"\0" * 16 if text is None else digest(str(text))
    return bool(np.unique(np.frombuffer(bytes(digests), dtype="V16")).size != len(digests) // 16)


def source_rows_changed(source: Path, written: Path, used: set[int]) -> list[str]:
    """What is wrong with the source's rows in the ``written`` tasks.parquet: changed, or a task index the
    source's frames use (``used``) that no longer names the source's task string. The written file is
    read a batch at a time, keeping its first rows and the rows of those indices only."""
    import pyarrow.parquet as pq

    found = []
    old_names_col, old_tasks = read_tasks(source, ["task_index"])
    old_names, old_index = old_names_col.to_pylist(), old_tasks.column("task_index").to_pylist()
    n = len(old_index)
    name = task_strings_column(pq.read_schema(written))
    head: list[tuple[Any, Any]] = []
    new_names: dict[int, str] = {}
    seen = 0
    for batch in batches(written, ["task_index"] if name is None else [name, "task_index"]):
        index = batch.column("task_index").to_pylist()
        names = range(seen, seen + len(index)) if name is None else batch.column(name).to_pylist()
        if len(head) < n:
            head += list(zip(names, index))[: n - len(head)]
        for t, i in zip(names, index):
            if i in used:
                new_names[int(i)] = str(t)
        seen += len(index)
    if head != list(zip(old_names, old_index)):
        found.append(f"{layout.TASKS_PATH}: original rows changed")
    named = {int(i): str(t) for t, i in zip(old_names, old_index)}
    lost = sorted(i for i in used if i not in named or new_names.get(i) != named[i])
    if lost:
        found.append(f"{layout.TASKS_PATH}: task_index {lost[:10]} used by the source's frames no longer names "
                     "the source's task string")
    return found
