"""Issue 20: a result folder someone hands you is input. ``hub-pgen report``, the card rewrite and the
push read its ``meta/hub_pgen.json`` and ``meta/syn_annotations.jsonl``; each value a reader uses is
checked for the type hub-pgen writes (hub_pgen.provenance_file, JournalRecord.from_json) and the
records' places against the dataset, so an edited file is exit 3 naming the key or line, never an
internal error (the fuzz of every key with null, 10^18, -1, "x", [], {}, true found 136 exit-70 cases
before). Table: docs/reliability.md ("Hostile input, round 3: result folders")."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from hub_pgen.cli import main
from hub_pgen.errors import OutputError
from hub_pgen.push.hub import check_complete

PROV = "meta/hub_pgen.json"
RECORDS = "meta/syn_annotations.jsonl"


@pytest.fixture(scope="module")
def result(example_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile-results") / "out"
    assert main(["--root", str(example_root), "--output-dir", str(out), "--backend", "template", "-q"]) == 0
    return out


def edited(result: Path, tmp_path: Path, change: Callable[[Path], None]) -> Path:
    folder = Path(shutil.copytree(result, tmp_path / "handed"))
    change(folder)
    return folder


def report(folder: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["report", str(folder), "-q"])
    return rc, capsys.readouterr().err


def set_prov(path: str, value) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        prov = json.loads((folder / PROV).read_text())
        d = prov
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value
        (folder / PROV).write_text(json.dumps(prov))
    return change


@pytest.mark.parametrize("path, value, expected", [
    ("tool", None, "tool must be an object, got null"),
    ("counts.ok", "x", 'counts.ok must be a whole number from 0 to 1,000,000,000,000, got "x"'),
    ("counts.samples", 10**18, "counts.samples must be a whole number"),
    ("notices", 10**18, "notices must be a list, got 1000000000000000000"),
    ("notices", ["\x1b]0;x\x07", 5], "notices[1] must be text, got 5"),
    ("generation", [], "generation must be an object, got []"),
    ("generation.cameras", "up", 'generation.cameras must be a list, got "up"'),
    ("format", [], "format must be text, got []"),
    ("quality.prompt_chars", 1, "quality.prompt_chars must be an object, got 1"),
    ("language.dialogues_not_added", 10**18, "language.dialogues_not_added must be a list"),
    ("mix.scenario_type.direct_request", -1, "mix.scenario_type.direct_request must be a whole number"),
    ("skills", True, "skills must be an object, got true"),
])
def test_an_edited_provenance_is_named_not_an_internal_error(result, tmp_path, capsys, path, value, expected):
    folder = edited(result, tmp_path, set_prov(path, value))
    rc, err = report(folder, capsys)
    assert rc == 3, err
    assert f"{folder / PROV}: {expected}" in err and "TIP:" in err
    with pytest.raises(OutputError, match="refusing to push"):  # the push refuses it before any request
        check_complete(folder)


def test_a_provenance_of_strange_json_is_named(result, tmp_path, capsys):
    for text, expected in {"[" * 100_000: "nested too deeply", '{"counts": {"ok": NaN}}': "NaN is not a number",
                           '{"a": 1, "a": 2}': "appears twice", "[]": "the file must be an object"}.items():
        folder = edited(result, tmp_path, lambda f, t=text: (f / PROV).write_text(t))
        rc, err = report(folder, capsys)
        assert rc == 3 and expected in err, (text[:20], err)
        shutil.rmtree(folder)


def set_record(key: str, value) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        lines = (folder / RECORDS).read_text().splitlines()
        rec = json.loads(lines[0])
        rec[key] = value
        lines[0] = json.dumps(rec)
        (folder / RECORDS).write_text("\n".join(lines) + "\n")
    return change


@pytest.mark.parametrize("key, value, expected", [
    ("attempts", "x", "not a record hub-pgen writes ('attempts' is str)"),
    ("episode_id", [], "not a record hub-pgen writes ('episode_id' is list)"),
    ("user_prompt", 10**18, "('user_prompt' is int)"),
    ("sample_id", None, "('sample_id' is NoneType)"),
    ("timestamp", "x", "('timestamp' is str)"),
    ("images", "up.png", "('images' must list strings)"),
    ("status", True, "('status' is bool)"),
    ("episode_index", 10**18, "names episode 1000000000000000000, which the dataset does not have"),
    ("frame_end", 10**9, "frame_end 1000000000 is outside episode"),
    ("frame_index", -1, "frame_index -1 is outside episode"),
])
def test_an_edited_record_is_named_not_an_internal_error(result, tmp_path, capsys, key, value, expected):
    folder = edited(result, tmp_path, set_record(key, value))
    rc, err = report(folder, capsys)
    assert rc == 3, err
    assert expected in err and "TIP:" in err and "internal error" not in err


def test_records_that_are_not_whole_are_named(result, tmp_path, capsys):
    def twice(folder: Path) -> None:
        lines = (folder / RECORDS).read_text().splitlines()
        (folder / RECORDS).write_text("\n".join(lines + lines[:1]) + "\n")
    folder = edited(result, tmp_path, twice)
    rc, err = report(folder, capsys)
    assert rc == 3 and "appears twice" in err
    shutil.rmtree(folder)
    folder = edited(result, tmp_path, lambda f: (f / RECORDS).write_text("not json\n"))
    rc, err = report(folder, capsys)
    assert rc == 3 and f"{folder / RECORDS}:1: not a record hub-pgen writes" in err


def test_the_untouched_result_reports(result, capsys):
    """The control: the same folder, unedited, reports (exit 0)."""
    rc, err = report(result, capsys)
    assert rc == 0, err
