"""Planner rules: skill ownership per frame, segments, and sample placement per strategy."""

import numpy as np
import pytest

from hub_pgen.errors import UsageError
from hub_pgen.plan.planner import (
    Segment,
    _runs,
    format_episode_list,
    frame_skill_positions,
    parse_episode_list,
    sample_starts,
)

FPS = 30


def seg(n=90, start=0, fps=FPS):
    ts = tuple(np.float32((start + i) / fps).item() for i in range(n))
    return Segment(0, 0, "pick", (), "task", start, start + n, ts, start)


def test_half_open_ownership_with_float32_tolerance():
    ts = np.arange(0, 90, dtype=np.float32) / np.float32(FPS)
    owner = frame_skill_positions(ts.astype(np.float64), [0.0, 1.0, 2.5], [1.0, 2.0, 10.0])
    assert (owner[:30] == 0).all() and (owner[30:60] == 1).all()
    assert (owner[60:75] == -1).all()  # the gap 2.0 .. 2.5 s
    assert (owner[75:] == 2).all()  # past-the-end skill is simply clipped by the frames that exist


def test_later_skill_owns_an_overlap():
    ts = np.arange(0, 60) / FPS
    owner = frame_skill_positions(ts, [0.0, 0.9995], [1.0004, 2.0])
    assert owner[29] == 0 and owner[30] == 1


def test_runs_split_on_changes_and_skip_minus_one():
    assert _runs(np.array([-1, 0, 0, 1, 1, -1, 1])) == [(1, 3), (3, 5), (6, 7)]
    assert _runs(np.array([], dtype=np.int64)) == []


def test_segment_and_frame_strategies():
    s = seg(45)
    assert sample_starts(s, "segment", None) == [0]
    assert sample_starts(s, "frame", None) == list(range(45))


def test_interval_starts_on_first_frame_then_every_s_seconds():
    s = seg(95, start=7)  # segment beginning mid-episode
    starts = sample_starts(s, "interval", 1.0)
    assert starts == [0, 30, 60, 90]
    assert sample_starts(seg(29), "interval", 1.0) == [0]  # shorter than S: just the first frame
    assert sample_starts(seg(10), "interval", 0.1) == [0, 3, 6, 9]


def test_interval_needs_positive_seconds():
    with pytest.raises(UsageError):
        sample_starts(seg(10), "interval", 0)


def test_episode_list_parsing():
    assert parse_episode_list("0,3-5, 9") == (0, 3, 4, 5, 9)
    assert parse_episode_list(None) is None
    for bad in ("a", "3-", "5-3"):
        with pytest.raises(UsageError):
            parse_episode_list(bad)
    # and back, in the same syntax
    for values in ((0, 3, 4, 5, 9), (7,), (0, 1, 2), (1, 3, 4, 6, 7, 8, 10)):
        assert parse_episode_list(format_episode_list(values)) == values
    assert format_episode_list([0, 3, 4, 5, 9]) == "0,3-5,9" and format_episode_list([]) == "(none)"
