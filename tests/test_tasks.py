"""The new tasks.parquet rows (hub_pgen.write.tasks): which row each dialogue gets, the index strings kept
unique, the file written from compact buffers byte for byte as pandas writes the frame, and what a row
costs to hold (a model writes a dialogue of its own for nearly every sample: 500k samples, 500k rows)."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hub_pgen import layout
from hub_pgen.data import Dialogue
from hub_pgen.textsafe import well_formed
from hub_pgen.write import tasks as tasks_mod
from hub_pgen.write.tasks import NewTask, TaskAssigner, TaskRows, write_tasks

SOURCE_TASKS = ["pick up the cup | and place it", "Pick the brick."]


def reference_rows(source_tasks, dialogues):
    """The rows as hub-pgen made them before the compact rows (issue 23): tuples, dicts and dataclasses,
    keyed by (task string, skill) — kept here as the reference (a different dialogue that joins to the
    same task string is the one case the new rows split: see below)."""
    taken, by_key, new, by_position = set(source_tasks), {}, [], []
    nxt = len(source_tasks)
    for d, skill in dialogues:
        key = (d.task_string, skill)
        row = by_key.get(key)
        if row is None:
            base = text = well_formed(d.task_string)
            n = 2
            while text in taken:
                text = f"{base} (#{n})"
                n += 1
            taken.add(text)
            row = NewTask(nxt, text, well_formed(d.user_prompt), well_formed(d.robot_utterance), well_formed(skill),
                          well_formed(d.scenario_type), well_formed(d.response_type))
            nxt += 1
            by_key[key] = row
            new.append(row)
        by_position.append(row.task_index)
    return new, by_position


def reference_write(src: Path, dst: Path, new_tasks) -> None:
    """tasks.parquet as pandas wrote it before (the source's frame and the new rows', concatenated)."""
    df = pd.read_parquet(src)
    index_name = df.index.name
    for col in layout.TASK_EXTRA_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series([None] * len(df), index=df.index, dtype=object)
    if new_tasks:
        rows = pd.DataFrame({"task_index": [t.task_index for t in new_tasks],
                             "user_prompt": [t.user_prompt for t in new_tasks],
                             "robot_utterance": [t.robot_utterance for t in new_tasks],
                             "skill": [t.skill for t in new_tasks],
                             "scenario_type": [t.scenario_type for t in new_tasks],
                             "response_type": [t.response_type for t in new_tasks]},
                            index=pd.Index([t.task for t in new_tasks], name=index_name))
        rows["task_index"] = rows["task_index"].astype(df["task_index"].dtype)
        df = pd.concat([df, rows[df.columns]], axis=0)
    df.index.name = index_name
    df.to_parquet(dst)


HOSTILE = ["Put it \ud800 there.", "Zoom \U0001F916 in", "a\nb", "  spaced  ", "x" * 3000, "quote \" and \\",
           "Pick the brick.", "pick up the cup", "and place it", "tab\there", "\ufffd already", "é", "(#2)"]


def dialogues(n: int, seed: int = 0, *, repeat: float = 0.3, hostile: bool = True):
    rng = random.Random(seed)
    words = ["cup", "brick", "box", "left", "gently", "now", "then", "please", "place", "the"]
    made = []
    for i in range(n):
        if made and rng.random() < repeat:  # a dialogue again: per-frame samples of one segment often share one
            made.append(made[rng.randrange(len(made))])
            continue
        p = " ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) + f" {i}"
        r = " ".join(rng.choice(words) for _ in range(rng.randint(1, 9)))
        if hostile and rng.random() < 0.2:
            p = rng.choice(HOSTILE) if rng.random() < 0.5 else p + rng.choice(HOSTILE)
        if hostile and rng.random() < 0.1:
            r = rng.choice(HOSTILE)
        made.append((Dialogue(rng.choice(["direct_request", "negative_task"]), rng.choice(["confirmation", "x\ud83d"]),
                              p, r), rng.choice(["pick up", "place", "pick up brick \udfff"])))
    # the same dialogue for two skills; a dialogue that is an original task; one that is a suffixed text
    made += [(Dialogue("a", "b", "pick up the cup", "and place it"), "pick up"),
             (Dialogue("a", "b", "same", "words"), "pick up"), (Dialogue("a", "b", "same", "words"), "place"),
             (Dialogue("a", "b", "same", "words (#2)"), "place"), (Dialogue("a", "b", "same", "words"), "pick up")]
    return made


def assigned(dialogues_, source_tasks=SOURCE_TASKS):
    t = TaskAssigner(source_tasks, list(range(len(source_tasks))), len(dialogues_))
    for i, (d, skill) in enumerate(dialogues_):
        t.add(i, d, skill)
    return t.result()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rows_and_indices_are_those_of_the_reference(seed):
    made = dialogues(3000, seed)
    got = assigned(made)
    rows, by_position = reference_rows(SOURCE_TASKS, made)
    assert list(got.new_tasks) == rows and got.by_position.tolist() == by_position
    assert isinstance(got.new_tasks, TaskRows) and got.new_tasks.suffix  # suffixed rows were made
    for i in range(0, len(made), 7):
        d = made[i][0]
        assert got.dialogue_at(i) == (well_formed(d.user_prompt), well_formed(d.robot_utterance))


def test_a_dialogue_that_joins_to_another_ones_text_gets_its_own_row():
    """("a | b", "c") and ("a", "b | c") join to one task string: the reference gave both samples the first
    one's row (the second's frames then named a prompt that was not theirs); each gets its own now."""
    made = [(Dialogue("x", "y", "a | b", "c"), "pick"), (Dialogue("x", "y", "a", "b | c"), "pick")]
    got = assigned(made, [])
    assert [(t.task, t.user_prompt, t.robot_utterance) for t in got.new_tasks] == [
        ("a | b | c", "a | b", "c"), ("a | b | c (#2)", "a", "b | c")]
    assert got.dialogue_at(0) == ("a | b", "c") and got.dialogue_at(1) == ("a", "b | c")


def _source(tmp_path: Path, rows: list[str], *, extra: str = "", index_name: str | None = "task") -> Path:
    df = pd.DataFrame({"task_index": np.arange(len(rows), dtype=np.int64)}, index=pd.Index(rows, name=index_name))
    if extra:  # a source that is itself a hub-pgen output: the dialogue columns are there, null or not
        for col in layout.TASK_EXTRA_COLUMNS:
            values = [None] * len(df) if extra == "null" else [f"{col} {i}" for i in range(len(df))]
            df[col] = pd.Series(values, index=df.index, dtype=object)
    path = tmp_path / "src" / layout.TASKS_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path)
    return path


@pytest.mark.parametrize("n,extra,index_name", [(3000, "", "task"), (3000, "null", "task"), (3000, "filled", "task"),
                                                (2, "", None), (1, "", "task"), (0, "", "task")])
def test_tasks_parquet_is_byte_for_byte_what_pandas_wrote(tmp_path, n, extra, index_name):
    src = _source(tmp_path, SOURCE_TASKS, extra=extra, index_name=index_name)
    got = assigned(dialogues(n, 5)[:n]).new_tasks if n else TaskRows(len(SOURCE_TASKS))
    assert len(got) == len(list(got))
    write_tasks(src, tmp_path / "new.parquet", got)
    reference_write(src, tmp_path / "ref.parquet", list(got))
    assert (tmp_path / "new.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()
    back = pq.read_table(tmp_path / "new.parquet").to_pandas()
    assert list(back.index[len(SOURCE_TASKS):]) == [t.task for t in got]


def test_many_rows_are_written_from_the_buffers_byte_for_byte(tmp_path, monkeypatch):
    """Past a parquet dictionary page (1 MiB of distinct text), from the buffers (not a frame of every row)."""
    made = [(Dialogue("direct_request", "confirmation", f"Please pick up the cup number {i} now.",
                      f"Sure, cup {i} it is."), "pick up") for i in range(60_000)]
    got = assigned(made).new_tasks
    framed = []
    real = tasks_mod._frame
    monkeypatch.setattr(tasks_mod, "_frame", lambda df, new, name: framed.append(len(new)) or real(df, new, name))
    src = _source(tmp_path, SOURCE_TASKS)
    write_tasks(src, tmp_path / "new.parquet", got)
    assert framed == [1]  # only the schema's row went through pandas
    monkeypatch.undo()
    reference_write(src, tmp_path / "ref.parquet", list(got))
    assert (tmp_path / "new.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()


def test_a_row_costs_its_text_and_a_few_hundred_bytes_not_a_kilobyte():
    """Every sample its own dialogue (a model's run): what the assigner holds per row. The tuples, dicts and
    dataclasses of before held ~1.1 KB a row beside the texts' bytes; this holds the bytes and ~250."""
    n = 20_000
    made = [(Dialogue("direct_request", "confirmation", f"Please pick up the red cup number {i} on the left.",
                      f"Sure, I will pick up cup {i} gently now."), "pick up the cup") for i in range(n)]
    text = sum(len(d.user_prompt) + len(d.robot_utterance) for d, _ in made)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        got = assigned(made)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(got.new_tasks) == n
    per_row = (held - got.by_position.nbytes - text) / n
    assert per_row < 400, per_row


def test_read_tasks_finds_the_task_strings_however_the_file_was_written(tmp_path):
    """pandas' index (lerobot writes tasks.parquet with pandas), a plain ``task`` column (a file written
    without pandas), or no strings at all (a RangeIndex): validation reads each as Arrow, a column at a time."""
    import pyarrow as pa

    from hub_pgen.write.tasks import read_tasks

    named = _source(tmp_path / "a", ["x", "y"])
    names, table = read_tasks(named, ["task_index", "nope"])
    assert names.to_pylist() == ["x", "y"] and table.column_names == ["task_index"]
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"task": ["x", "y"], "task_index": [0, 1]}), plain)
    names, table = read_tasks(plain)
    assert names.to_pylist() == ["x", "y"] and "task_index" in table.column_names
    ranged = tmp_path / "range.parquet"
    pd.DataFrame({"task_index": [0, 1, 2]}).to_parquet(ranged)
    names, table = read_tasks(ranged, ["task_index"])
    assert names.to_pylist() == [0, 1, 2] and table.column("task_index").to_pylist() == [0, 1, 2]
    odd = tmp_path / "odd.parquet"
    pd.DataFrame({"task_index": [0, 1]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)])).to_parquet(odd)
    with pytest.raises(ValueError, match="neither its index nor a 'task' column"):
        read_tasks(odd)
