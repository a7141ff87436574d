"""The journal survives torn writes and refuses another configuration's records."""

import json

import pytest

from hub_pgen.data import JournalRecord
from hub_pgen.errors import ConfigMismatchError
from hub_pgen.journal import JournalWriter, load_journal


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
