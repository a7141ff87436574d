"""Issue 5.4: ``hub-pgen validate DIR`` finds every way an output can be broken, lists them all, and
exits 7; a good folder passes. (The push path runs the same check first: tests/test_hub.py.)"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hub_pgen.cli import main

FEATURE = "task_index_high_level"


@pytest.fixture(scope="module")
def good(example_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good") / "out"
    assert main(["--root", str(example_root), "--output-dir", str(out), "--backend", "template", "-q"]) == 0
    return out


def _edit_json(rel: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        obj = json.loads((root / rel).read_text())
        change(obj)
        (root / rel).write_text(json.dumps(obj))
    return apply


def _edit_table(rel: str, change: Callable[[pa.Table], pa.Table]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        table = pq.read_table(root / rel)
        (root / rel).unlink()  # data files may be hard links shared with another copy
        pq.write_table(change(table), root / rel)
    return apply


def _set_column(table: pa.Table, name: str, values: list) -> pa.Table:
    i = table.column_names.index(name)
    return table.set_column(i, table.field(i), pa.array(values, table.field(i).type))


DATA0 = "data/chunk-000/file-000.parquet"
VIDEO1 = "videos/observation.images.side/chunk-000/file-001.mp4"

CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "column dropped": (_edit_table(DATA0, lambda t: t.drop_columns([FEATURE])),
                       f"{DATA0}: column '{FEATURE}' is missing"),
    "value out of range": (_edit_table(DATA0, lambda t: _set_column(t, FEATURE, [999] * len(t))),
                           "values [999] point at no generated tasks row"),
    "column of the wrong type": (_edit_table(DATA0, lambda t: t.set_column(
        t.column_names.index(FEATURE), pa.field(FEATURE, pa.int32()), t.column(FEATURE).cast(pa.int32()))),
        "expected int64"),
    "truncated data file": (lambda r: (r / DATA0).write_bytes((r / DATA0).read_bytes()[:300]),
                            f"{DATA0} cannot be read"),
    "data file missing": (lambda r: (r / DATA0).unlink(), f"{DATA0} is missing"),
    "video missing": (lambda r: (r / VIDEO1).unlink(), f"{VIDEO1} is missing (episode 4)"),
    "tasks row dropped": (_edit_table("meta/tasks.parquet", lambda t: t.slice(0, len(t) - 1)),
                          "total_tasks is"),
    "task_index repeated": (_edit_table("meta/tasks.parquet", lambda t: _set_column(
        t, "task_index", [*t.column("task_index").to_pylist()[:-1], t.column("task_index")[0].as_py()])),
        "meta/tasks.parquet: task_index values are not unique"),
    "task string repeated": (_edit_table("meta/tasks.parquet", lambda t: _set_column(
        t, "task", [*t.column("task").to_pylist()[:-1], t.column("task")[0].as_py()])),
        "meta/tasks.parquet: task strings are not unique"),
    "a generated row pointed at is gone": (_edit_table("meta/tasks.parquet", lambda t: _set_column(
        t, "user_prompt", [None] * len(t))), "point at no generated tasks row"),
    "feature missing from info.json": (_edit_json("meta/info.json", lambda o: o["features"].pop(FEATURE)),
                                       f"feature '{FEATURE}' is missing"),
    "another codebase_version": (_edit_json("meta/info.json", lambda o: o.update(codebase_version="v2.1")),
                                 "codebase_version is 'v2.1'"),
    "total_episodes wrong": (_edit_json("meta/info.json", lambda o: o.update(total_episodes=99)),
                             "total_episodes is 99, episodes metadata has 6"),
    "total_frames wrong": (_edit_json("meta/info.json", lambda o: o.update(total_frames=1)),
                           "total_frames is 1"),
    "stats missing": (lambda r: (r / "meta/stats.json").unlink(), "meta/stats.json is missing"),
    "stats without the feature": (_edit_json("meta/stats.json", lambda o: o.pop(FEATURE)),
                                  f"meta/stats.json: no stats for '{FEATURE}'"),
    "info.json not JSON": (lambda r: (r / "meta/info.json").write_text("{"), "meta/info.json is not valid JSON"),
    "unfinished run": (lambda r: (r / "meta/hub_pgen.json").unlink(), "the run did not finish"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_kind_of_damage_is_named_and_exits_7(case, good, tmp_path, capsys):
    damage, expected = CASES[case]
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    damage(broken)
    capsys.readouterr()
    assert main(["validate", str(broken)]) == 7
    err = capsys.readouterr().err
    assert "fails validation" in err and expected in err, err


def test_a_good_folder_passes_and_every_problem_is_listed_at_once(good, example_root, tmp_path, capsys):
    assert main(["validate", str(good), "--source", str(example_root)]) == 0
    assert "valid" in capsys.readouterr().out
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    for case in ("video missing", "stats missing", "total_episodes wrong"):  # the video: episodes 4 and 5
        CASES[case][0](broken)
    assert main(["validate", str(broken)]) == 7
    err = capsys.readouterr().err
    assert "4 problem(s)" in err and all(CASES[c][1] in err for c in ("video missing", "stats missing"))


def test_original_rows_changed_are_found_against_the_source(good, example_root, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    _edit_table(DATA0, lambda t: _set_column(t, "frame_index", [0] * len(t)))(broken)
    # on its own: the dialogues' frames are gone from the language columns' view of the data
    assert main(["validate", str(broken)]) == 7
    err = capsys.readouterr().err
    assert "generated dialogue(s) name frames no data file has" in err and "original columns" not in err
    assert main(["validate", str(broken), "--source", str(example_root)]) == 7
    assert f"{DATA0}: original columns or rows changed" in capsys.readouterr().err


def test_validate_of_something_that_is_not_a_folder(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope")]) != 0
    assert "is not a folder" in capsys.readouterr().err


def test_a_source_task_renamed_is_found_against_the_source(good, example_root, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    _edit_table("meta/tasks.parquet", lambda t: _set_column(
        t, "task", ["renamed", *t.column("task").to_pylist()[1:]]))(broken)
    assert main(["validate", str(broken)]) == 0  # on its own it is a tasks table like any
    capsys.readouterr()
    assert main(["validate", str(broken), "--source", str(example_root)]) == 7
    err = capsys.readouterr().err
    assert "meta/tasks.parquet: original rows changed" in err
    assert "meta/tasks.parquet: task_index [0] used by the source's frames no longer names the source's task" in err
