"""The plan's samples as columns (hub_pgen.plan.table): the samples it makes are the ones the planner
always made, a sample is found by its id without a dict, and what it holds per sample is a few bytes."""

from __future__ import annotations

import numpy as np
import pytest

from hub_pgen.data import ImageRef, JournalRecord, Sample
from hub_pgen.journal import JournalView, load_journal
from hub_pgen.journal_writer import JournalWriter
from hub_pgen.plan.planner import build_plan, sample_starts
from hub_pgen.plan.table import ByPosition, IdView, SampleTable, locator, sample_ids, subset
from hub_pgen.plan.taxonomy import assign_types
from hub_pgen.source.lerobot import load_source
from hub_pgen.source.skills import load_skills

CAMS = ("observation.images.up", "observation.images.side")


def plan(root, strategy="frame", **kw):
    source = load_source(root, check_videos=CAMS)
    skills = load_skills(root / "meta" / "skills.json", known_episodes=set(source.episodes))
    return source, build_plan(source, skills, strategy=strategy, cameras=CAMS, interval=0.5, **kw)


def reference(source, p, strategy, interval=0.5, seed=0):
    """The samples as the planner made them as objects (before the table): the expected ones."""
    video = set(source.video_keys)
    out = []
    for seg in p.segments:
        starts = sample_starts(seg, strategy, interval)
        for off, end_off in zip(starts, starts[1:] + [seg.frame_end - seg.frame_start]):
            frame, ts = seg.frame_start + off, seg.timestamps[off]
            refs = tuple(ImageRef(camera=c, timestamp=ts) if c in video else ImageRef(camera=c, row=seg.row_start + off)
                         for c in CAMS)
            out.append(Sample(f"ep{seg.episode_index:06d}-f{frame:06d}", seg.episode_index, str(seg.episode_index),
                              frame, ts, seg.skill, seg.history, seg.task_description, "", "", refs, frame,
                              seg.frame_start + end_off, seg.position))
    types = assign_types(len(out), seed=seed)
    return [Sample(**{**{f: getattr(s, f) for f in Sample.__slots__}, "scenario_type": a, "response_type": b})
            for s, (a, b) in zip(out, types)]


@pytest.mark.parametrize("strategy", ["frame", "interval", "segment"])
def test_the_table_makes_the_samples_the_planner_made(example_root, strategy):
    source, p = plan(example_root, strategy)
    want = reference(source, p, strategy)
    table = p.samples
    assert isinstance(table, SampleTable) and len(table) == len(want) > 0
    assert list(table) == want  # iterated
    assert [table[i] for i in range(len(table))] == want  # indexed
    assert table[-1] == want[-1] and list(table[2:7]) == want[2:7]
    assert list(table.ids()) == [s.sample_id for s in want] == list(IdView(table))
    assert list(table.type_pairs()) == [(s.scenario_type, s.response_type) for s in want]
    assert table == want and table == tuple(want)
    with pytest.raises(IndexError):
        table[len(want)]


def test_a_sample_is_found_by_its_id_and_nothing_else_is(example_root):
    _, p = plan(example_root, "interval")
    table = p.samples
    for i, s in enumerate(table):
        assert table.position(s.sample_id) == i
    first = table[0]
    e, f = first.episode_index, first.frame_start
    not_ids = [f"ep{e:07d}-f{f:06d}",  # one digit more: another spelling of the same numbers
               f"ep{e:06d}-f{f + 1:06d}",  # a frame with no sample of its own (interval sampling)
               f"ep{e:06d}-f{f:06d} ", "s1", "", f"ep{e:06d}-f00000²", f"ep{e:06d}-f+{f:05d}", "ep999999-f000000"]
    for sid in not_ids:
        assert table.position(sid) is None, sid
    assert table.position(None) is None  # type: ignore[arg-type]
    assert first in table and Sample(**{**{k: getattr(first, k) for k in Sample.__slots__}, "skill_current": "x"}) \
        not in table


def test_a_part_of_the_table_finds_its_own_samples_in_any_order(example_root):
    _, p = plan(example_root)
    table = p.samples
    picked = np.array([9, 3, 3 + len(table) // 2, 0])  # not in plan order
    part = table.take(picked)
    assert list(part) == [table[int(i)] for i in picked]
    for j, i in enumerate(picked):
        assert part.position(table[int(i)].sample_id) == j
    assert part.position(table[1].sample_id) is None
    keep = np.zeros(len(table), dtype=bool)
    keep[[1, 4]] = True
    assert list(subset(table, keep)) == [table[1], table[4]]
    assert subset(list(table), keep) == [table[1], table[4]]  # a list of samples (JSONL input) the same way


def test_the_table_holds_a_few_bytes_a_sample(example_root):
    """13 bytes of columns a sample (what the plan holds from planning to the end of the run); a Sample
    is ~700 bytes as objects."""
    _, p = plan(example_root)
    table = p.samples
    columns = [getattr(table, name) for name in ("_seg", "_start", "_end", "_scenario", "_response")]
    assert all(isinstance(c, np.ndarray) and c.dtype != object for c in columns)
    assert sum(c.nbytes for c in columns) / len(table) <= 16


def test_by_position_is_a_mapping_by_id_of_an_array_by_position(example_root):
    _, p = plan(example_root, "segment")
    table = p.samples
    values = np.full(len(table), -1, dtype=np.int64)
    values[[0, 2]] = [7, 9]
    m = ByPosition(table, values, -1)
    ids = list(sample_ids(table))
    assert dict(m) == {ids[0]: 7, ids[2]: 9} and len(m) == 2
    assert m.get(ids[1], -1) == -1 and ids[1] not in m and "nope" not in m
    as_list = ByPosition(list(table), values, -1)  # samples as objects: a dict of ids behind it
    assert dict(as_list) == dict(m) and locator(list(table))(ids[2]) == 2


def record(s: Sample, status="ok", fp="fp") -> JournalRecord:
    return JournalRecord(sample_id=s.sample_id, status=status, episode_id=s.episode_id, t=s.frame_index, images=(),
                         skill_current=s.skill_current, skill_history=s.skill_history,
                         task_description=s.task_description, user_prompt="u" if status == "ok" else None,
                         robot_utterance="r" if status == "ok" else None, scenario_type=s.scenario_type,
                         response_type=s.response_type, fingerprint=fp)


def test_the_journal_view_by_plan_position_reads_what_load_journal_reads(example_root, tmp_path):
    """A JournalView given the plan holds where each line is in arrays by plan position; an id the plan
    does not have (a bad input line's) in its dict: the same records either way."""
    _, p = plan(example_root, "interval")
    table = p.samples
    path = tmp_path / "j.jsonl"
    foreign = JournalRecord(sample_id="line-7", status="failed", episode_id="", t=None, images=(), skill_current="",
                            skill_history=(), task_description="", user_prompt=None, robot_utterance=None,
                            scenario_type="", response_type="", error="bad line", fingerprint="fp")
    with JournalWriter(path) as w:
        w.append([record(table[0], "failed"), record(table[5]), foreign])
        w.append([record(table[0])])  # the retry wins
    by_plan = JournalView.load(path, fingerprint="fp", samples=table)
    by_id = JournalView.load(path, fingerprint="fp")
    assert dict(by_plan) == dict(by_id) == load_journal(path, fingerprint="fp")
    assert len(by_plan) == 3 and by_plan.status(table[0].sample_id) == "ok" and by_plan.status("line-7") == "failed"
    assert table[1].sample_id not in by_plan and by_plan.get(table[1].sample_id) is None
    with JournalWriter(path) as w:
        new = [record(table[1], "failed")]
        by_plan.add(new, w.append(new))
    assert by_plan.status(table[1].sample_id) == "failed" and len(by_plan) == 4
    assert dict(by_plan) == load_journal(path, fingerprint="fp")
    assert by_plan._at.keys() == {"line-7"}  # the plan's samples are not in the dict


def test_plan_order_is_id_order_only_while_ids_spell_six_digits(example_root):
    """A shard's records are written by id: a dataset plan's order is that order (no list of every id
    sorted) while its episodes and frames fit the ids' six digits; past them, string order is not."""
    import dataclasses

    _, p = plan(example_root)
    table = p.samples
    assert table.in_id_order() and list(table.ids()) == sorted(table.ids())
    big = SampleTable([dataclasses.replace(s, episode_index=s.episode_index + 999_998) for s in table.segments],
                      table._seg, table._start, table._end, table._scenario, table._response,
                      scenario_names=table.scenario_names, response_names=table.response_names,
                      cameras=table.cameras, video=table.video)
    ids = list(big.ids())
    assert not big.in_id_order() and ids != sorted(ids)  # "ep1000000-…" sorts before "ep999999-…"
