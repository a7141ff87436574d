"""Issue 23: the pass over the records goes alongside generation and is checkpointed beside the journal
(hub_pgen.run.running_pass), so a resumed run feeds only the records after its checkpoint — and writes
the same bytes as an uninterrupted run. A checkpoint that no longer holds (the journal changed or lost a
record, the D_syn lines cut short, a damaged or foreign state file) is not used: the pass starts again.

Real runs: the template backend on the example dataset, killed in a child process
(``HUB_PGEN_KILL_AT``) with a checkpoint at every batch (``HUB_PGEN_CHECKPOINT_S=0``), resumed in
process so the test sees where the pass was taken up and how many records it read."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hub_pgen import layout
from hub_pgen.cli import main
from hub_pgen.faults import ENV as KILL_ENV
from hub_pgen.run import pass_state, running_pass
from hub_pgen.run.running_pass import CHECKPOINT_ENV, STATE_NAME, SYN_NAME, RunningPass

from .contract import tree_hashes

ARGS = ["--backend", "template", "--sampling", "frame", "--episodes", "0-2", "-q"]
STAMPED = ("meta/hub_pgen.json", "meta/hub_pgen_report.html")  # created_at (the page shows it)


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--root", str(root), "--output-dir", str(out), *ARGS, *extra]


def _kill(root: Path, out: Path, point: str, *extra: str) -> Path:
    """The run killed at ``point`` (a checkpoint at every batch); its work folder."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", CHECKPOINT_ENV: "0", KILL_ENV: point}
    p = subprocess.run([sys.executable, "-m", "hub_pgen", *_args(root, out, *extra)], env=env, capture_output=True,
                       timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()[-2000:]
    work = out.with_name(out.name + layout.WORK_SUFFIX)
    assert (work / layout.PASS_NAME / STATE_NAME).is_file()
    return work


def _resume(root: Path, out: Path, monkeypatch, *extra: str) -> dict[str, int]:
    """The same command in process: where its pass was taken up, and how many records it read back."""
    from hub_pgen.journal import JournalView

    seen = {"resumed_at": -1, "reads": 0}
    start, parse = RunningPass.start.__func__, JournalView._parse

    def started(cls, *a, **k):
        rp = start(cls, *a, **k)
        seen["resumed_at"] = rp.resumed_at
        return rp

    def counted(self, line, at, length):
        seen["reads"] += 1
        return parse(self, line, at, length)

    monkeypatch.setattr(RunningPass, "start", classmethod(started))
    monkeypatch.setattr(JournalView, "_parse", counted)
    assert main(_args(root, out, *extra)) == 0
    monkeypatch.undo()
    return seen


def _same(a: Path, b: Path) -> None:
    ha, hb = tree_hashes(a), tree_hashes(b)
    for rel in STAMPED:
        ha.pop(rel, None), hb.pop(rel, None)
    assert ha == hb


@pytest.fixture(scope="module")
def fresh(example_root, tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted runs, one a configuration the tests resume."""
    outs = {}
    for name, extra in (("both", ()), ("language", ("--format", "lerobot-language")), ("no-review", ("--no-review",))):
        out = tmp_path_factory.mktemp(f"fresh-{name}") / "out"
        assert main(_args(example_root, out, *extra)) == 0
        outs[name] = out
    return outs


@pytest.mark.parametrize("name,extra", [("both", ()), ("language", ("--format", "lerobot-language")),
                                        ("no-review", ("--no-review",))], ids=["both", "language", "no-review"])
def test_a_resumed_run_takes_the_pass_up_at_its_checkpoint_and_writes_the_same_bytes(
        name, extra, example_root, fresh, tmp_path, monkeypatch):
    lines = sum(1 for _ in (fresh[name] / layout.SYN_ANNOTATIONS_PATH).open())
    out = tmp_path / "out"
    _kill(example_root, out, f"journal:{lines // 2}", *extra)
    seen = _resume(example_root, out, monkeypatch, *extra)
    # the records before the checkpoint are not read again (a batch's worth may have come after it)
    assert lines // 2 - 8 <= seen["resumed_at"] < lines // 2
    assert seen["reads"] == lines - seen["resumed_at"]
    _same(fresh[name], out)
    assert not out.with_name(out.name + layout.WORK_SUFFIX).exists()
    assert main(["validate", str(out)]) == 0


def test_killed_while_saving_its_checkpoint_the_run_resumes_to_the_same_bytes(example_root, fresh, tmp_path,
                                                                             monkeypatch):
    out = tmp_path / "out"
    work = _kill(example_root, out, "pass.checkpoint:7")
    assert not list((work / layout.PASS_NAME).glob("*.tmp"))  # saved aside, then renamed
    seen = _resume(example_root, out, monkeypatch)
    assert seen["resumed_at"] > 0
    _same(fresh["both"], out)


def _first_line_edited(work: Path) -> None:
    journal = work / layout.JOURNAL_NAME
    lines = journal.read_bytes().splitlines(keepends=True)
    rec = json.loads(lines[0])
    rec["user_prompt"] = "An edited prompt, still a record."
    lines[0] = (json.dumps(rec, sort_keys=True) + "\n").encode()
    journal.write_bytes(b"".join(lines))


def _first_line_damaged(work: Path) -> None:
    journal = work / layout.JOURNAL_NAME
    data = journal.read_bytes()
    journal.write_bytes(b"{not json" + data[data.index(b"\n"):])


class _Hostile:
    def __reduce__(self):
        return (os.system, ("touch HOSTILE",))


def _state_hostile(work: Path) -> None:
    (work / layout.PASS_NAME / STATE_NAME).write_bytes(pickle.dumps({"version": 1, "consumers": _Hostile()}))


def _state_cut(work: Path) -> None:
    state = work / layout.PASS_NAME / STATE_NAME
    state.write_bytes(state.read_bytes()[:100])


def _syn_cut(work: Path) -> None:
    syn = work / layout.PASS_NAME / SYN_NAME
    syn.write_bytes(syn.read_bytes()[:10])


@pytest.mark.parametrize("tamper", [_first_line_edited, _first_line_damaged, _state_hostile, _state_cut, _syn_cut],
                         ids=["journal-edited", "journal-line-damaged", "state-hostile", "state-cut", "syn-cut"])
def test_a_checkpoint_that_no_longer_holds_is_not_used(tamper, example_root, fresh, tmp_path, monkeypatch, caplog):
    out = tmp_path / "out"
    lines = sum(1 for _ in (fresh["both"] / layout.SYN_ANNOTATIONS_PATH).open())
    work = _kill(example_root, out, f"journal:{lines // 2}")
    tamper(work)
    monkeypatch.chdir(tmp_path)
    seen = _resume(example_root, out, monkeypatch)
    assert seen["resumed_at"] == 0 and seen["reads"] == lines  # passed again from the first record
    assert not (tmp_path / "HOSTILE").exists()  # a state file is read, never run
    assert main(["validate", str(out)]) == 0
    if tamper is _first_line_edited:  # the dataset has the journal's record as it is now
        syn = (out / layout.SYN_ANNOTATIONS_PATH).read_text()
        assert syn.count("An edited prompt, still a record.") == 1
    else:
        _same(fresh["both"], out)


def test_the_unpickler_makes_only_what_a_state_is_made_of():
    import io

    with pytest.raises(pickle.UnpicklingError, match="posix.system is not part of a pass's state"):
        pass_state._Unpickler(io.BytesIO(pickle.dumps(_Hostile()))).load()


@pytest.mark.parametrize("markers", [5000, 10], ids=["a-dot-for-every-sample", "dots-for-cards-only"])
def test_cards_told_after_the_pass_make_the_page_a_whole_pass_makes(markers, example_root, tmp_path, monkeypatch):
    """More samples than the page has cards: the running pass learns its cards after generation and reads
    them back; the page is the one the pass after generation draws (which knows them before)."""
    from hub_pgen.review import model, tally

    monkeypatch.setattr(model, "DEFAULT_MAX_CARDS", 7)
    monkeypatch.setattr(tally, "MAX_MARKERS", markers)
    pages = []
    for alongside in (True, False):
        if not alongside:
            monkeypatch.setattr(running_pass, "eligible", lambda *a, **k: False)
        out = tmp_path / str(alongside) / "out"
        assert main(_args(example_root, out)) == 0
        pages.append((out / layout.REPORT_PATH).read_text(encoding="utf-8"))
    strip = [re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00)?", "TIME", p) for p in pages]  # run times
    assert strip[0] == strip[1] and strip[0].count('class="card') >= 7


def test_a_full_disk_under_the_pass_costs_a_warning_and_the_pass_after_generation(example_root, fresh, tmp_path,
                                                                                   monkeypatch, caplog):
    """The pass alongside generation saves time, nothing else: a checkpoint that cannot be written ends
    it with a warning, and the records are passed after generation (the same bytes)."""
    import errno

    def full(self, journal):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setenv(CHECKPOINT_ENV, "0")
    monkeypatch.setattr(RunningPass, "checkpoint", full)
    for started in (True, False):  # the first checkpoint comes as the pass starts, or later
        out = tmp_path / str(started) / "out"
        if not started:
            real = RunningPass.start.__func__

            def start(cls, *a, _real=real, **k):  # no checkpoint due as it starts
                monkeypatch.setenv(CHECKPOINT_ENV, "3600")
                rp = _real(cls, *a, **k)
                rp._interval = rp._every = rp._next_checkpoint = rp._next_advance = 0.0
                return rp

            monkeypatch.setattr(RunningPass, "start", classmethod(start))
        caplog.clear()
        assert main(_args(example_root, out)) == 0
        assert "the pass over the records alongside generation stopped" in caplog.text
        assert "No space left on device" in caplog.text
        assert not out.with_name(out.name + layout.WORK_SUFFIX).exists()
        _same(fresh["both"], out)


def test_a_link_planted_for_the_pass_folder_is_refused(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    work = out.with_name(out.name + layout.WORK_SUFFIX)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _kill(example_root, out, "journal:20")
    import shutil

    shutil.rmtree(work / layout.PASS_NAME)
    (work / layout.PASS_NAME).symlink_to(elsewhere)
    assert main(_args(example_root, out)) == 4
    err = capsys.readouterr().err
    assert f"{work / layout.PASS_NAME} is a link" in err and "TIP:" in err
    assert list(elsewhere.iterdir()) == []


def test_data_files_written_as_generation_goes_on_are_not_written_again(example_root, fresh, tmp_path, monkeypatch):
    """The data files whose episodes' records have all passed are written as generation goes on (local
    sources): a resumed run writes only the others, and leaves out a file a kill left half-written."""
    import hub_pgen.write.dataset as dataset
    from hub_pgen.run.running_pass import DATA_NAME

    lines = sum(1 for _ in (fresh["both"] / layout.SYN_ANNOTATIONS_PATH).open())
    files = sorted(p.relative_to(fresh["both"]).as_posix() for p in (fresh["both"] / "data").rglob("*.parquet"))
    assert len(files) >= 2
    out = tmp_path / "out"
    work = _kill(example_root, out, f"journal:{lines - 2}")  # every file but the last one's episodes passed
    ahead = work / layout.PASS_NAME / DATA_NAME
    written = sorted(p.relative_to(ahead).as_posix() for p in ahead.rglob("*.parquet"))
    assert written and set(written) < set(files)
    pending = next(rel for rel in files if rel not in written)
    half = ahead / pending  # as a kill while writing it would leave it
    half.parent.mkdir(parents=True, exist_ok=True)
    half.write_bytes(b"PAR1 half")
    calls: list[str] = []
    real = dataset._write_data_file
    monkeypatch.setattr(dataset, "_write_data_file", lambda src, dst, *a: (calls.append(dst.name), real(src, dst, *a)))
    seen = _resume(example_root, out, monkeypatch)
    assert seen["resumed_at"] > 0
    assert len(calls) == len(files) - len(written)  # the others only
    _same(fresh["both"], out)


def test_a_data_file_written_ahead_that_changed_since_is_not_used(example_root, fresh, tmp_path, monkeypatch):
    from hub_pgen.run.running_pass import DATA_NAME

    lines = sum(1 for _ in (fresh["both"] / layout.SYN_ANNOTATIONS_PATH).open())
    out = tmp_path / "out"
    work = _kill(example_root, out, f"journal:{lines - 2}")
    written = sorted((work / layout.PASS_NAME / DATA_NAME).rglob("*.parquet"))
    assert written
    written[0].write_bytes(written[0].read_bytes()[:-100])  # cut short
    seen = _resume(example_root, out, monkeypatch)
    assert seen["resumed_at"] == 0  # the checkpoint not used: every record passed again, every file written
    _same(fresh["both"], out)


def test_a_task_assigner_saved_and_read_back_assigns_as_before():
    """Its digests are saved as one byte string each set (no pickle memo entry a row: ~36 MiB of
    transient memory at 470k rows), read back into the same sets."""
    import io

    from hub_pgen.data import Dialogue
    from hub_pgen.write.tasks import TaskAssigner

    def dialogue(k: int) -> Dialogue:
        return Dialogue("s", "r", f"prompt {k % 7}", f"reply {k % 5}")

    tasks = TaskAssigner(["pick | place", "prompt 1 | reply 1"], [0, 3], 40)
    for k in range(20):
        tasks.add(k, dialogue(k), f"skill {k % 3}")
    again = pass_state._Unpickler(io.BytesIO(pickle.dumps(tasks, protocol=5))).load()
    assert again._taken == tasks._taken and again._row == tasks._row and len(again._row) > 10
    for t in (tasks, again):
        for k in range(20, 40):
            t.add(k, dialogue(k * 3), f"skill {k % 4}")
    a, b = tasks.result(), again.result()
    assert (a.by_position == b.by_position).all()
    assert list(a.new_tasks) == list(b.new_tasks) and any("(#2)" in t.task for t in a.new_tasks)


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", ""])
def test_a_checkpoint_interval_that_is_not_seconds_is_said_and_the_default_kept(value, monkeypatch, caplog):
    monkeypatch.setenv(CHECKPOINT_ENV, value)
    assert running_pass.checkpoint_seconds() == running_pass.CHECKPOINT_SECONDS
    assert f"{CHECKPOINT_ENV}={value!r} is not a number of seconds" in caplog.text
    monkeypatch.setenv(CHECKPOINT_ENV, "2.5")
    assert running_pass.checkpoint_seconds() == 2.5
