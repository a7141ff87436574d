"""Issue 23 (flat memory, linear time): each finishing stage computed once, nothing read back that
the run holds, ``--no-review``. Figures are scripts/bench_memory.py's (docs/benchmarks.md); these
tests pin the structure that makes them: what is called how often, what is (not) read."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from hub_pgen import layout
from hub_pgen.cli import main
from hub_pgen.data import JournalRecord
from hub_pgen.quality import Meter, Quality, measure


def _run(root: Path, out: Path, *extra: str) -> int:
    return main(["--root", str(root), "--output-dir", str(out), "--backend", "template", "-q", *extra])


def _count_reads(monkeypatch) -> dict[str, int]:
    """How many records the run reads back from its journal (JournalView parses one per read)."""
    from hub_pgen.journal import JournalView

    reads = {"n": 0}
    real = JournalView._parse

    def counted(self, line, at, length):
        reads["n"] += 1
        return real(self, line, at, length)

    monkeypatch.setattr(JournalView, "_parse", counted)
    return reads


def test_a_run_reads_each_record_back_once_and_its_page_none(example_root, tmp_path, monkeypatch):
    """After generation one pass reads each record back from the journal once, for everything the dataset
    and its page need (hub_pgen.write.records); the page reads none (the stages used to read the journal
    back one after another: five to eight reads a record, each found by its id)."""
    import hub_pgen.review.model as model

    def no_read_back(*a, **k):
        raise AssertionError("the run's page read the records back from the file")

    reads = _count_reads(monkeypatch)
    monkeypatch.setattr(model, "read_records", no_read_back)
    monkeypatch.setattr(model, "iter_records", no_read_back)
    out = tmp_path / "out"
    assert _run(example_root, out, "--sampling", "frame", "--episodes", "0-1") == 0
    written = sum(1 for _ in (out / layout.SYN_ANNOTATIONS_PATH).open())
    assert written > 50 and reads["n"] == written  # generation read none: it holds what it journals
    page = (out / layout.REPORT_PATH).read_text(encoding="utf-8")
    prov = json.loads((out / layout.PROVENANCE_PATH).read_text())
    assert f"Quality of the {prov['quality']['samples']} generated dialogues" in page
    monkeypatch.undo()  # hub-pgen report reads the folder and measures what it holds: the same page
    assert main(["report", str(out), "--output", str(tmp_path / "again.html"), "-q"]) == 0
    assert (tmp_path / "again.html").read_bytes() == (out / layout.REPORT_PATH).read_bytes()


def test_a_resumed_run_reads_each_record_back_once_too(example_root, tmp_path, monkeypatch):
    """A run killed half-way: the rerun's finish reads each record once, the journaled ones and the new,
    and writes what an uninterrupted run writes."""
    import os
    import signal
    import subprocess
    import sys

    from hub_pgen.faults import ENV
    from hub_pgen.run.running_pass import CHECKPOINT_ENV

    args = ["--sampling", "frame", "--episodes", "0-1"]
    fresh = tmp_path / "fresh"
    assert _run(example_root, fresh, *args) == 0
    whole = (fresh / layout.SYN_ANNOTATIONS_PATH).read_bytes()
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hub_pgen", "--root", str(example_root), "--output-dir", str(out),
           "--backend", "template", *args, "-q"]
    # no checkpoint of the pass (hub_pgen.run.running_pass; tests/test_running_pass.py): it starts again
    killed = subprocess.run(cmd, env={**os.environ, ENV: f"journal:{whole.count(b'\n') // 2}",
                                      CHECKPOINT_ENV: "3600"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    reads = _count_reads(monkeypatch)
    assert _run(example_root, out, *args) == 0
    assert reads["n"] == whole.count(b"\n")
    assert (out / layout.SYN_ANNOTATIONS_PATH).read_bytes() == whole


def test_no_review_writes_the_dataset_without_its_page_and_report_writes_it_later(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(example_root, out, "--no-review", "--json") == 0
    said = json.loads(capsys.readouterr().out)
    assert said["report"] is None and said["state"] == "written"
    assert not (out / layout.REPORT_PATH).exists()
    prov = json.loads((out / layout.PROVENANCE_PATH).read_text())
    assert prov["review"] is False
    card = (out / layout.CARD_PATH).read_text(encoding="utf-8")
    assert "wrote no review page (`--no-review`)" in card and "Download it and open it" not in card
    assert main(["validate", str(out)]) == 0
    assert main(["report", str(out), "-q"]) == 0
    assert (out / layout.REPORT_PATH).is_file()
    # a run with its page does not say so, and its provenance has no such key (outputs as they were)
    with_page = tmp_path / "with"
    assert _run(example_root, with_page) == 0
    assert "review" not in json.loads((with_page / layout.PROVENANCE_PATH).read_text())
    assert "wrote no review page" not in (with_page / layout.CARD_PATH).read_text(encoding="utf-8")


def test_no_review_is_a_flag_of_merge_too(example_root, tmp_path):
    shards = [tmp_path / f"s{i}" for i in range(2)]
    for i, s in enumerate(shards):
        assert _run(example_root, s, "--num-shards", "2", "--shard-index", str(i)) == 0
    merged = tmp_path / "merged"
    assert main(["merge", *map(str, shards), "--root", str(example_root), "--output-dir", str(merged),
                 "--no-review", "-q"]) == 0
    assert (merged / layout.SYN_ANNOTATIONS_PATH).is_file() and not (merged / layout.REPORT_PATH).exists()


def _record(i: int, prompt: str, reply: str, episode: str = "ep0", status: str = "ok") -> JournalRecord:
    return JournalRecord(sample_id=f"s{i:05d}", status=status, episode_id=episode, t=i, images=(),
                         skill_current="robot arm picks up pink lego brick", skill_history=(),
                         task_description="t", user_prompt=prompt, robot_utterance=reply,
                         scenario_type="direct_request", response_type="confirmation")


def test_the_meter_gives_the_measures_of_the_lists_it_no_longer_keeps():
    """One pass, lengths counted: the median of the counts is statistics.median's, odd and even."""
    rng = random.Random(3)
    words = ["pick", "the", "brick", "up", "please", "now", "robot", "arm", "picks", "up", "pink", "lego"]
    for n in (1, 2, 7, 8, 301):
        recs = [_record(i, " ".join(rng.choices(words, k=rng.randint(1, 9))), " ".join(rng.choices(words, k=3)),
                        episode=f"ep{i % 3}") for i in range(n)]
        q = measure(iter(recs))  # a generator: nothing needs the records as a list
        prompts = [r.user_prompt for r in recs]
        assert q.samples == n
        assert q.prompt_chars == {"min": min(map(len, prompts)), "median": float(statistics.median(map(len, prompts))),
                                  "max": max(map(len, prompts))}
        grams = [tuple(w[i:i + 2]) for p in prompts for w in [p.lower().split()] for i in range(len(w) - 1)]
        assert q.distinct_2_prompts == (round(len(set(grams)) / len(grams), 4) if grams else 0.0)
    meter = Meter()
    meter.add(_record(0, "x", "y", status="failed"))
    assert meter.result().samples == 0  # a failure has no dialogue to measure


def test_a_dialogue_seen_again_counts_as_measuring_it_again(monkeypatch):
    """The meter keeps each dialogue's measures (a repeat costs a lookup: the template backend repeats a
    few phrasings 480k times); what it says is what measuring every record afresh says, kept or not."""
    import hub_pgen.quality as quality

    rng = random.Random(5)
    phrasings = [("Pick up the pink lego brick and put it in the box", "Sure, robot arm picks up pink lego brick."),
                 ("I'm sorry, robot arm picks up pink lego brick", "As an AI I cannot help."),
                 ("!!! ???", "ok ok ok ok"), ("Pick up the pink lego brick and put it into the box", "On it.")]
    recs = [_record(i, *rng.choice(phrasings), episode=f"ep{i // 100}") for i in range(400)]  # in plan order
    kept = measure(recs)
    monkeypatch.setattr(quality, "MEASURED_KEPT", 0)  # nothing kept: every record measured afresh
    afresh = measure(recs)
    assert kept == afresh
    assert kept.samples == 400 and kept.distinct_dialogues == 4
    assert 0 < kept.degenerate < 400 and 0 < kept.refusals < 400 and 0 < kept.skill_copied < 400
    assert kept.near_duplicates == 400 - 4 * 4  # all but the first of each prompt in each episode (in, into: 10/12)


def test_quality_from_a_provenance_is_taken_only_when_it_is_the_measures():
    q = measure([_record(0, "Pick up the brick, please.", "On it.")])
    assert Quality.from_dict(json.loads(json.dumps(q.as_dict()))) == q
    edited = {**q.as_dict(), "degenerate": "many"}
    assert Quality.from_dict(edited) is None
    assert Quality.from_dict({**q.as_dict(), "prompt_chars": {"min": 1}}) is None
    assert Quality.from_dict(None) is None and Quality.from_dict([]) is None


def test_a_data_file_looks_up_its_own_episodes_dialogues_only(monkeypatch):
    """The language columns of one data file cost its own dialogues, not the whole plan's (80 files x
    480k lookups was 65 s at 2,000 episodes)."""
    from hub_pgen.write import language as lw

    looked = []
    real = lw._RowFinder.__call__

    def counting(self, episode, frame):
        looked.append(episode)
        return real(self, episode, frame)

    monkeypatch.setattr(lw._RowFinder, "__call__", counting)
    plan = lw.LanguagePlan(subtasks={}, dialogues={e: ((0, ("hi", "ok")), (5, ("go", "sure"))) for e in range(1000)})
    table = pa.table({"episode_index": pa.array([7] * 10 + [8] * 10, pa.int64()),
                      "frame_index": pa.array(list(range(10)) * 2, pa.int64()),
                      "timestamp": pa.array(np.arange(20, dtype=np.float32) / 10)})
    counts = lw.LanguageCounts()
    _, events = lw.language_columns(table, plan, counts)
    assert sorted(set(looked)) == [7, 8] and len(looked) == 4
    assert counts.dialogues == 4
    assert [len(x) for x in events.to_pylist()] == [2, 0, 0, 0, 0, 2, 0, 0, 0, 0] * 2


@pytest.mark.parametrize("reader", ["journal.load_journal", "records_file.read_records"])
def test_records_read_back_share_what_they_repeat(tmp_path, reader):
    """A record read from a file holds the episode, skill, task and types every record of it repeats
    as one object each (480k records read back: a third less memory)."""
    import importlib

    module, name = reader.split(".")
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(_record(i, f"prompt {i}", "ok").to_json()) + "\n" for i in range(3)))
    recs = list(getattr(importlib.import_module(f"hub_pgen.{module}"), name)(path).values())
    assert len(recs) == 3
    for field in ("episode_id", "skill_current", "task_description", "scenario_type", "status"):
        assert len({id(getattr(r, field)) for r in recs}) == 1, field
    assert len({id(r.user_prompt) for r in recs}) == 3  # what differs stays each record's own


def test_after_generation_the_run_holds_where_records_are_not_the_records(example_root, tmp_path, monkeypatch):
    """The finishing stages read each record back from the journal as the one pass reaches it: when the
    dataset is written, the run holds no record per sample (it held all of them, ~1 KB each, from
    generation to the end: a third of the peak at 480k samples)."""
    import gc

    import hub_pgen.write.dataset as dataset

    live = {}
    real = dataset.write_dataset

    def counting(source, samples, staging, **k):
        gc.collect()
        live["records"] = sum(1 for o in gc.get_objects() if type(o) is JournalRecord)
        live["samples"] = len(samples)
        return real(source, samples, staging, **k)

    monkeypatch.setattr(dataset, "write_dataset", counting)
    out = tmp_path / "out"
    # without the page, whose cards (up to 1,000 records, all 245 here) are held from the pass to the page
    assert _run(example_root, out, "--sampling", "frame", "--dedupe", "--no-review") == 0
    assert live["samples"] > 200
    assert live["records"] < 20, live  # not one per sample
    written = [json.loads(line) for line in (out / layout.SYN_ANNOTATIONS_PATH).open()]
    assert len(written) == live["samples"]  # and every record is in the dataset all the same


def test_the_page_holds_sums_and_its_cards_not_a_record_per_sample(example_root, tmp_path, monkeypatch):
    """The review page keeps the records it shows a card of, exactly as meta/syn_annotations.jsonl has
    them, and of the others only sums (it kept an outline of every record: ~300 bytes a sample)."""
    import gc

    from hub_pgen.records_file import read_records
    from hub_pgen.review import tally
    from hub_pgen.review.model import load_review

    def live() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is JournalRecord)

    out = tmp_path / "out"
    assert _run(example_root, out, "--sampling", "frame", "--episodes", "0-1", "--no-review") == 0
    monkeypatch.setattr(tally, "MAX_MARKERS", 10)  # past it, no dot a sample either
    before = live()
    review = load_review(out, max_cards=5)
    assert live() - before == 5
    in_file = read_records(out / layout.SYN_ANNOTATIONS_PATH)
    assert len(review.cards) == 5 and review.counts()["samples"] == len(in_file) > 50
    assert all(r == in_file[r.sample_id] for r in review.cards)
    assert sum(len(ep.markers) for ep in review.episodes) == 5 and sum(ep.samples for ep in review.episodes) == len(in_file)


@pytest.mark.parametrize("text", [
    "plain words", 'a "quoted" prompt', '"fingerprint": "abc", inside a prompt', '"task_index_high_level": null',
    "lone \ud800 surrogate", "non-ASCII: pick up the brick \u00e9\u4e2d", "back\\slash \\\" and \n newline",
])
@pytest.mark.parametrize("index", [None, 0, 17])
def test_a_syn_line_made_from_the_journal_line_is_the_one_written_from_the_record(text, index):
    """The pass writes meta/syn_annotations.jsonl by taking the fingerprint out of each journal line and
    putting the task index in (no JSON parsed and written again): byte for byte what writing the record
    gives, whatever its texts hold (a text quoting the very entries included)."""
    from hub_pgen import fsio
    from hub_pgen.write.records import syn_line

    rec = JournalRecord(sample_id="ep000001-f000002", status="ok", episode_id="1", t=2, images=("cam@0.0667s",),
                        skill_current="pick", skill_history=("reach",), task_description=text, user_prompt=text,
                        robot_utterance=text + " ok", scenario_type="direct_request", response_type="confirmation",
                        episode_index=1, frame_index=2, timestamp=0.0667, frame_start=2, frame_end=3,
                        raw_text=text, fingerprint="0123456789abcdef")
    journal_line = fsio.jsonl_line(rec.to_json())
    d = rec.to_json()
    d["task_index_high_level"] = index
    d.pop("fingerprint")
    assert syn_line(journal_line, rec.fingerprint, index) == fsio.jsonl_line(d)
    assert syn_line(journal_line, "another", index) is None  # not this record's line: the long way


def test_the_meter_holds_bytes_a_dialogue_not_its_texts(monkeypatch):
    """A model writes a dialogue of its own for nearly every sample: the meter's count of distinct dialogues,
    n-grams and near-duplicates held the texts, word tuples and word sets of every one (~4.6 KB a dialogue
    measured: 2 GB at 480k samples); now 8-byte values and the current episode's prompts."""
    import tracemalloc

    import hub_pgen.quality as quality

    monkeypatch.setattr(quality, "MEASURED_KEPT", 0)  # the memo (bounded) aside: what grows with the dialogues
    rng = random.Random(11)
    words = [f"w{i}" for i in range(3000)]
    n = 20_000

    def records():
        for i in range(n):
            yield _record(i, " ".join(rng.choices(words, k=12)), " ".join(rng.choices(words, k=10)),
                          episode=f"ep{i // 240}")

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        meter = Meter()
        for rec in records():
            meter.add(rec)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    q = meter.result()
    assert q.distinct_dialogues == n and q.samples == n
    # every n-gram of these is new (8 bytes each: 20 bigrams and 22 words a dialogue), a few hundred bytes of
    # the current episode's prompt word sets, the vocabulary (3,000 words) once
    assert held / n < 600, held / n


def test_the_staged_folder_is_checked_without_the_task_rows_and_before_the_page(example_root, tmp_path, monkeypatch):
    """Once tasks.parquet holds the task rows (a model's texts, one a sample: ~0.5 KB a dialogue at 472k
    samples), the run lets them go before it reads the folder back, and the page is drawn after the
    check: its decoders are not held while the files are read (validate's peak with a model's texts at
    2,000 episodes 603 -> 494 MiB, docs/benchmarks.md)."""
    import gc
    import weakref

    import hub_pgen.review as review
    import hub_pgen.run.finish as finish
    import hub_pgen.write.records as records

    held: list = []
    order: list[str] = []
    real_result, real_check, real_page = records.RecordPass.result, finish.check_staged, review.write_report

    def passing(self):  # the pass's result, whether it went alongside generation or after it
        done = real_result(self)
        held.append(weakref.ref(done.labels.new_tasks))
        return done

    def checking(staging, paths):
        gc.collect()
        order.append("check, task rows " + ("held" if held[0]() is not None else "gone"))
        return real_check(staging, paths)

    def drawing(*a, **k):
        order.append("page")
        return real_page(*a, **k)

    monkeypatch.setattr(records.RecordPass, "result", passing)
    monkeypatch.setattr(finish, "check_staged", checking)
    monkeypatch.setattr(review, "write_report", drawing)
    assert _run(example_root, tmp_path / "out", "--sampling", "frame") == 0
    assert order == ["check, task rows gone", "page"]
    assert (tmp_path / "out" / layout.REPORT_PATH).is_file()
