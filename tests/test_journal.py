"""The journal survives torn writes and refuses another configuration's records."""

import dataclasses
import json

import pytest

from hub_pgen.data import JournalRecord
from hub_pgen.errors import ConfigMismatchError
from hub_pgen.journal import load_journal
from hub_pgen.journal_writer import JournalWriter


def rec(i, fp="fp1", status="ok"):
    return JournalRecord(sample_id=f"s{i}", status=status, episode_id="0", t=i, images=("cam@0.0s",),
                         skill_current="pick", skill_history=("move",), task_description="task",
                         user_prompt="u" if status == "ok" else None, robot_utterance="r" if status == "ok" else None,
                         scenario_type="direct_request", response_type="confirmation", fingerprint=fp)


def test_roundtrip_and_last_record_wins(tmp_path):
    path = tmp_path / "j.jsonl"
    with JournalWriter(path) as w:
        w.append([rec(1), rec(2, status="failed")])
        w.append([rec(2)])
    got = load_journal(path, fingerprint="fp1")
    assert set(got) == {"s1", "s2"} and got["s2"].status == "ok"
    assert got["s1"] == rec(1)


def test_torn_tail_is_dropped_and_cut_before_append(tmp_path):
    path = tmp_path / "j.jsonl"
    with JournalWriter(path) as w:
        w.append([rec(1), rec(2)])
    full = path.read_bytes()
    path.write_bytes(full[:-7])  # kill mid-line
    assert set(load_journal(path)) == {"s1"}
    with JournalWriter(path) as w:
        w.append([rec(3)])
    lines = path.read_text().splitlines()
    assert [json.loads(line)["sample_id"] for line in lines] == ["s1", "s3"]


def test_other_fingerprint_is_refused(tmp_path):
    path = tmp_path / "j.jsonl"
    with JournalWriter(path) as w:
        w.append([rec(1, fp="other")])
    with pytest.raises(ConfigMismatchError):
        load_journal(path, fingerprint="fp1")


def test_group_commits_one_fsync_per_many_records_and_on_close(tmp_path):
    path = tmp_path / "j.jsonl"
    w = JournalWriter(path, sync_every=64, sync_seconds=3600)
    with w:
        for i in range(200):
            w.append([rec(i)])  # one record at a time, as a stream journals them
        assert w.syncs == 3  # after 64, 128 and 192 records, never per record
    assert w.syncs == 4  # and the last 8 on close
    assert len(load_journal(path, fingerprint="fp1")) == 200


def test_group_commits_sync_after_a_quiet_spell(tmp_path):
    w = JournalWriter(tmp_path / "j.jsonl", sync_every=10_000, sync_seconds=0.0)
    with w:
        w.append([rec(1)])
        w.append([rec(2)])
        assert w.syncs == 2  # the time since the last fsync is past sync_seconds at each append


def test_a_kill_between_group_commits_loses_no_appended_record(tmp_path):
    """Each append is flushed to the kernel at once: SIGKILL (not a power cut) before the next fsync
    loses nothing."""
    import os
    import signal
    import subprocess
    import sys

    path = tmp_path / "j.jsonl"
    code = f"""
import os, signal
from tests.test_journal import rec
from hub_pgen.journal_writer import JournalWriter
from pathlib import Path
w = JournalWriter(Path({str(path)!r}), sync_every=10_000, sync_seconds=3600)
w.open()
for i in range(50):
    w.append([rec(i)])
assert w.syncs == 0
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(__file__)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(load_journal(path, fingerprint="fp1")) == 50


def test_the_view_reads_what_load_journal_reads_and_holds_where_not_what(tmp_path):
    """JournalView (the run's journal after generation): the same records as load_journal — the last of
    a sample wins, a torn tail is dropped — read back from the file as asked, not held."""
    from hub_pgen.journal import JournalView

    path = tmp_path / "j.jsonl"
    with JournalWriter(path) as w:
        w.append([rec(1), rec(2, status="failed")])
        w.append([rec(2)])
    with path.open("ab") as fh:
        fh.write(b'{"sample_id": "s9", "sta')  # torn by a kill
    view = JournalView.load(path, fingerprint="fp1")
    assert dict(view) == load_journal(path, fingerprint="fp1")
    assert "s2" in view and "s9" not in view and len(view) == 2 and view.get("s9") is None
    assert view["s2"].status == "ok" and view["s1"] == rec(1)
    assert view["s1"] is not view["s1"]  # read back each time: the view holds offsets, not records
    with JournalWriter(path) as w:  # the torn tail cut, then what append says is where the lines are
        new = [rec(3), rec(1, status="failed")]
        view.add(new, w.append(new))
    assert view["s3"] == rec(3) and view["s1"].status == "failed"
    assert dict(view) == load_journal(path, fingerprint="fp1")
    with pytest.raises(ConfigMismatchError):
        JournalView.load(path, fingerprint="other")


def test_the_view_keeps_extra_records_the_file_lacks_and_the_file_wins(tmp_path):
    from hub_pgen.journal import JournalView

    path = tmp_path / "j.jsonl"
    with JournalWriter(path) as w:
        w.append([rec(1)])
    view = JournalView.load(path, fingerprint="fp1", extra={"s1": rec(1, status="failed"), "s5": rec(5)})
    assert view["s1"].status == "ok" and view["s5"] == rec(5)
    assert sorted(view) == ["s1", "s5"] and len(view) == 2


def test_a_journal_changed_under_the_run_is_a_clear_error_not_a_wrong_record(tmp_path):
    from hub_pgen.errors import OutputError
    from hub_pgen.journal import JournalView

    path = tmp_path / "j.jsonl"
    with JournalWriter(path) as w:
        w.append([rec(1), rec(2)])
    view = JournalView.load(path, fingerprint="fp1")
    path.write_bytes(path.read_bytes()[:10])  # another process cut it (one run at a time holds the lock)
    with pytest.raises(OutputError, match="changed under the run"):
        view["s2"]


def test_the_views_index_says_each_status_and_reads_an_unusual_one(tmp_path):
    from hub_pgen.journal import JournalView, status_of

    path = tmp_path / "j.jsonl"
    odd = dataclasses.replace(rec(3), status="skipped")  # not a status hub-pgen writes: read from the record
    with JournalWriter(path) as w:
        w.append([rec(1), rec(2, status="failed"), odd])
    view = JournalView.load(path, fingerprint="fp1")
    assert [view.status(f"s{i}") for i in (1, 2, 3, 4)] == ["ok", "failed", "skipped", None]
    assert [status_of(view, f"s{i}") for i in (1, 2, 3)] == [status_of(dict(view), f"s{i}") for i in (1, 2, 3)]


def test_the_views_index_keeps_the_lines_load_journal_keeps_without_making_records(tmp_path, caplog, monkeypatch):
    """A resumed run indexes its journal (where each line is, its status) without making a record of each
    line (issue 23: the scan was a third of a resume's own cost); a damaged line is skipped, with the same
    warning, exactly where load_journal skips it — a wrong type, a field every record has missing, not an
    object, not JSON — and a line of another configuration still refuses the whole file."""
    from hub_pgen.journal import JournalView

    good = rec(1).to_json()
    damaged = [{**good, "sample_id": "s2", "t": True}, {**good, "sample_id": "s3", "images": ["a", 1]},
               {k: v for k, v in {**good, "sample_id": "s4"}.items() if k != "episode_id"},
               {**good, "sample_id": "s5", "earlier": ["x"]}, {**good, "sample_id": "s6", "status": None},
               ["s7"], {**good, "sample_id": "s8", "verified": [1]}]
    lines = [json.dumps(good)] + [json.dumps(d) for d in damaged] + ["{not json", json.dumps(rec(9).to_json())]
    path = tmp_path / "j.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level("WARNING"):
        whole = load_journal(path, fingerprint="fp1")
    said_whole = [r.getMessage() for r in caplog.records]
    caplog.clear()
    made = []
    real = JournalRecord.from_checked
    monkeypatch.setattr(JournalRecord, "from_checked", classmethod(lambda cls, *a: made.append(1) or real(*a)))
    with caplog.at_level("WARNING"):
        view = JournalView.load(path, fingerprint="fp1")
    assert not made  # indexed, not read into records
    assert [r.getMessage() for r in caplog.records] == said_whole and len(said_whole) == 8
    assert list(view) == list(whole) == ["s1", "s9"]
    assert dict(view) == whole
    path.write_text(path.read_text() + json.dumps(rec(10, fp="fp2").to_json()) + "\n")
    with pytest.raises(ConfigMismatchError):
        JournalView.load(path, fingerprint="fp1")
