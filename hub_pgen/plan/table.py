"""The plan's samples as columns: a :class:`SampleTable` is a ``Sequence[Sample]`` that holds, per sample,
its segment, first and last frame and its two types (13 bytes), and makes each :class:`Sample` when it
is asked for. Everything else a sample says is its segment's (skill, history, task, timestamps, the
first row) or the plan's (cameras): at 480k samples the plan was ~690 bytes a sample as objects, held
from the plan to the end of the run (issue 23).

A sample's id says where it is (``ep000003-f000120``: episode 3, first frame 120), so the table finds
a sample by id without a dict (:meth:`SampleTable.position`), and the stages after generation keep
what they know per sample in arrays by plan position (:class:`ByPosition`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from hub_pgen.data import ImageRef, Sample

if TYPE_CHECKING:
    from hub_pgen.plan.planner import Segment

_ID = re.compile(r"ep(\d{6,})-f(\d{6,})\Z")
CHUNK = 1 << 14  # elements of a column made Python ints at once (a whole column of 480k: ~17 MB of ints)


def rows(*columns: np.ndarray) -> Iterator[tuple[Any, ...]]:
    """The columns' elements side by side, as Python values, a chunk at a time (never a column's
    ``tolist()`` whole: at 480k samples each is a list of ~17 MB, and the peak holds it)."""
    n = len(columns[0]) if columns else 0
    for a in range(0, n, CHUNK):
        yield from zip(*(c[a:a + CHUNK].tolist() for c in columns))


def sample_id(episode: int, frame: int) -> str:
    """The id of the sample on ``frame`` of ``episode`` (the planner's, and :meth:`SampleTable.position`'s inverse)."""
    return f"ep{episode:06d}-f{frame:06d}"


class SampleTable(Sequence[Sample]):
    """Samples by plan position, made from their columns when asked for (equal, not identical, each time)."""

    __slots__ = ("segments", "cameras", "video", "scenario_names", "response_names", "_seg", "_start", "_end",
                 "_scenario", "_response", "_keys", "_order")

    def __init__(self, segments: Sequence[Segment], seg: np.ndarray, start: np.ndarray, end: np.ndarray,
                 scenario: np.ndarray, response: np.ndarray, *, scenario_names: Sequence[str],
                 response_names: Sequence[str], cameras: Sequence[str], video: frozenset[str]) -> None:
        self.segments = tuple(segments)
        self.cameras = tuple(cameras)
        self.video = video
        self.scenario_names = tuple(scenario_names)
        self.response_names = tuple(response_names)
        self._seg, self._start, self._end = seg, start, end
        self._scenario, self._response = scenario, response
        self._keys: np.ndarray | None = None  # (episode << 32 | first frame), sorted; made on first lookup
        self._order: np.ndarray | None = None  # the positions of _keys (None: plan order is sorted)

    def __len__(self) -> int:
        return len(self._seg)

    @overload
    def __getitem__(self, i: int) -> Sample: ...

    @overload
    def __getitem__(self, i: slice) -> SampleTable: ...

    def __getitem__(self, i: int | slice) -> Sample | SampleTable:
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} of a plan of {n}")
        return self._make(int(self._seg[i]), int(self._start[i]), int(self._end[i]), int(self._scenario[i]),
                          int(self._response[i]))

    def _make(self, k: int, frame: int, end: int, scenario: int, response: int) -> Sample:
        seg = self.segments[k]
        off = frame - seg.frame_start
        ts = seg.timestamps[off]
        video = self.video
        return Sample(
            sample_id=sample_id(seg.episode_index, frame),
            episode_index=seg.episode_index,
            episode_id=str(seg.episode_index),
            frame_index=frame,
            timestamp=ts,
            skill_current=seg.skill,
            skill_history=seg.history,
            task_description=seg.task_description,
            scenario_type=self.scenario_names[scenario],
            response_type=self.response_names[response],
            images=tuple(ImageRef(camera=c, timestamp=ts) if c in video else ImageRef(camera=c, row=seg.row_start + off)
                         for c in self.cameras),
            frame_start=frame,
            frame_end=end,
            segment=seg.position,
        )

    def __iter__(self) -> Iterator[Sample]:
        make = self._make
        for k, frame, end, sc, rt in rows(self._seg, self._start, self._end, self._scenario, self._response):
            yield make(k, frame, end, sc, rt)

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, Sample):
            return False
        i = self.position(value.sample_id)
        return i is not None and self[i] == value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SampleTable):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        if isinstance(other, (tuple, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SampleTable({len(self)} samples, {len(self.segments)} segments)"

    # --- columns, without a Sample each ---------------------------------------------------------

    def ids(self) -> Iterator[str]:
        """Each sample's id, in plan order."""
        eps = [s.episode_index for s in self.segments]
        for k, frame in rows(self._seg, self._start):
            yield sample_id(eps[k], frame)

    def episodes(self) -> np.ndarray:
        """Each sample's episode index (int64), in plan order."""
        per_segment = np.fromiter((s.episode_index for s in self.segments), dtype=np.int64, count=len(self.segments))
        return per_segment[self._seg] if len(self.segments) else np.zeros(0, dtype=np.int64)

    def frames(self) -> tuple[np.ndarray, np.ndarray]:
        """Each sample's [first, end) frames, in plan order."""
        return self._start, self._end

    def type_pairs(self) -> Iterator[tuple[str, str]]:
        """Each sample's (scenario type, response type), in plan order."""
        sc, rt = self.scenario_names, self.response_names
        for a, b in rows(self._scenario, self._response):
            yield sc[a], rt[b]

    def position(self, sid: str) -> int | None:
        """The plan position of the sample with id ``sid`` (None: not in the plan)."""
        if not isinstance(sid, str) or len(self) == 0:
            return None
        if len(sid) == 16 and sid.isascii() and sid[:2] == "ep" and sid[8:10] == "-f" and sid[2:8].isdigit() \
                and sid[10:].isdigit():
            episode, frame = int(sid[2:8]), int(sid[10:])  # the common shape, without the regex
        elif (m := _ID.match(sid)) is not None:
            episode, frame = int(m.group(1)), int(m.group(2))
        else:
            return None
        if sample_id(episode, frame) != sid or frame >> 32 or episode >> 31:  # "ep0000003-…" is no sample's id
            return None
        key = episode << 32 | frame
        if self._keys is None:
            keys = self.episodes()  # episode << 32 | first frame, made in place (one array, not four)
            keys <<= 32
            keys |= self._start
            if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):
                self._order = np.argsort(keys, kind="stable")
                keys = keys[self._order]
            self._keys = keys
        at = int(np.searchsorted(self._keys, key))
        if at >= len(self._keys) or int(self._keys[at]) != key:
            return None
        return int(self._order[at]) if self._order is not None else at

    def in_id_order(self) -> bool:
        """Whether plan order is the samples' ids sorted as strings (episodes and frames below 10**6, as
        their ids spell them with six digits, and the plan by (episode, frame))."""
        if len(self) < 2:
            return True
        episodes = self.episodes()
        if int(episodes.max()) >= 10**6 or int(self._start.max()) >= 10**6:
            return False
        episodes <<= 32
        episodes |= self._start
        return bool(np.all(episodes[1:] > episodes[:-1]))

    def take(self, positions: np.ndarray) -> SampleTable:
        """The samples at ``positions`` (plan order as given), as a table."""
        positions = np.asarray(positions, dtype=np.int64)
        return SampleTable(self.segments, self._seg[positions], self._start[positions], self._end[positions],
                           self._scenario[positions], self._response[positions],
                           scenario_names=self.scenario_names, response_names=self.response_names,
                           cameras=self.cameras, video=self.video)


def sample_ids(samples: Sequence[Sample]) -> Iterator[str]:
    """Each sample's id, in order (a table's without making its samples)."""
    if isinstance(samples, SampleTable):
        return samples.ids()
    return (s.sample_id for s in samples)


def type_pairs(samples: Sequence[Sample]) -> Iterator[tuple[str, str]]:
    """Each sample's (scenario type, response type), in order."""
    if isinstance(samples, SampleTable):
        return samples.type_pairs()
    return ((s.scenario_type, s.response_type) for s in samples)


def locator(samples: Sequence[Sample]) -> Any:
    """``position(sample_id) -> int | None`` for ``samples``: a table's own lookup, else a dict of ids."""
    if isinstance(samples, SampleTable):
        return samples.position
    where = {sid: i for i, sid in enumerate(sample_ids(samples))}
    return where.get


def subset(samples: Sequence[Sample], keep: Sequence[bool] | np.ndarray) -> Sequence[Sample]:
    """The samples where ``keep`` is true, in order (a table's as a table)."""
    if isinstance(samples, SampleTable):
        return samples.take(np.flatnonzero(np.asarray(keep, dtype=bool)))
    return [s for s, k in zip(samples, keep) if k]


class ByPosition(Mapping[str, int]):
    """``values[i]`` of the plan's sample ``i``, by sample id, where it is not ``missing`` (an int array
    by plan position, not a dict of ids)."""

    def __init__(self, samples: Sequence[Sample], values: np.ndarray, missing: int) -> None:
        self._samples, self._values, self._missing = samples, values, missing
        self._position = locator(samples)

    def __getitem__(self, sid: str) -> int:
        i = self._position(sid)
        if i is None or int(self._values[i]) == self._missing:
            raise KeyError(sid)
        return int(self._values[i])

    def __contains__(self, sid: object) -> bool:
        i = self._position(sid) if isinstance(sid, str) else None
        return i is not None and int(self._values[i]) != self._missing

    def __iter__(self) -> Iterator[str]:
        for sid, (v,) in zip(sample_ids(self._samples), rows(self._values)):
            if v != self._missing:
                yield sid

    def __len__(self) -> int:
        return int(np.count_nonzero(self._values != self._missing))


def episode_indices(samples: Sequence[Sample]) -> list[int]:
    """Each sample's episode index, in order (a sample without one, from JSONL input, left out)."""
    if isinstance(samples, SampleTable):
        return samples.episodes().tolist()
    return [s.episode_index for s in samples if s.episode_index is not None]


def episode_counts(samples: Sequence[Sample]) -> dict[int, int]:
    """How many of ``samples`` each episode has (a table's counted as columns, not a list a sample)."""
    if isinstance(samples, SampleTable):
        episodes, counts = np.unique(samples.episodes(), return_counts=True)
        return dict(zip(episodes.tolist(), counts.tolist()))
    return dict(Counter(episode_indices(samples)))


def episode_set(samples: Sequence[Sample]) -> set[int]:
    """The episodes ``samples`` come from (a sample without one, from JSONL input, left out)."""
    return set(episode_counts(samples))


def in_episodes(samples: Sequence[Sample], episodes: set[int]) -> np.ndarray:
    """Whether each sample is of one of ``episodes`` (a bool array, in order)."""
    if isinstance(samples, SampleTable):
        return np.isin(samples.episodes(), np.fromiter(episodes, dtype=np.int64, count=len(episodes)))
    return np.fromiter((s.episode_index in episodes for s in samples), dtype=bool, count=len(samples))


class IdView(Sequence[str]):
    """The samples' ids as a sequence (a table's made as they are asked for, not a list of them)."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self._samples = samples

    def __len__(self) -> int:
        return len(self._samples)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._samples[i].sample_id

    def __iter__(self) -> Iterator[str]:
        return sample_ids(self._samples)
