"""The journal: one JSON line per finished sample, appended as each batch completes
(:mod:`hub_pgen.journal_writer`: whole lines, fsynced in group commits; a line torn by a kill is cut off
before the next append).

It is what makes a run resumable: a rerun of the same configuration reads it (this module: the records,
or :class:`JournalView`, where each line is), skips every sample already in it, and appends the rest. At
the end it becomes ``meta/syn_annotations.jsonl`` of the new dataset (in plan order, with task indices).
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hub_pgen import fsio
from hub_pgen.data import GenerationResult, JournalRecord, Sample
from hub_pgen.errors import ConfigMismatchError, OutputError
from hub_pgen.plan.table import CHUNK, SampleTable, rows, sample_ids

logger = logging.getLogger(__name__)

def load_journal(path: Path, *, fingerprint: str | None = None) -> dict[str, JournalRecord]:
    """Records by sample_id. The last record of a sample wins (a retried failure may follow it).

    A torn last line (no newline, or not JSON) is ignored. A record of another configuration
    fingerprint is refused: the journal belongs to a different run.
    """
    return {record.sample_id: record for _, _, record in _scan(path, fingerprint)}


def has_records(path: Path, *, fingerprint: str | None = None) -> bool:
    """Whether the journal at ``path`` holds a record (the first read, not the file: refused, as
    :func:`load_journal` refuses it, when it is another configuration's)."""
    scan = _scan(path, fingerprint)
    try:
        return next(scan, None) is not None
    finally:
        scan.close()


def _scan(path: Path, fingerprint: str | None) -> Generator[tuple[int, int, JournalRecord], None, None]:
    """Each readable record of a journal with where its line is (byte offset, length), in file order:
    a torn last line and unreadable lines skipped (warned), another configuration's record refused."""
    shared: dict[object, object] = {}
    for at, length, d in _lines(path, fingerprint):
        yield at, length, JournalRecord.from_checked(d, shared)


def _lines(path: Path, fingerprint: str | None, start: int = 0,
           first_line: int = 1) -> Generator[tuple[int, int, dict[str, Any]], None, None]:
    """Each readable line of a journal as its JSON object (checked: :meth:`JournalRecord.check_json`), with
    where it is (byte offset, length), in file order: what :func:`_scan` makes records of, and what
    :meth:`JournalView.load` indexes without making them (a resumed run's scan, issue 23). ``start``: from
    that byte on (a line's start, line number ``first_line``)."""
    if not path.is_file():
        return
    pos = start
    with open(path, "rb") as fh:  # a line at a time: never the whole file (and a copy in lines) at once
        fh.seek(start)
        for n, line in enumerate(fh, first_line):
            at, pos = pos, pos + len(line)
            if not line.endswith(b"\n"):  # the last line, torn
                if line.strip():
                    logger.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run", path,
                                   len(line))
                break
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                JournalRecord.check_json(d)
            except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
                logger.warning("%s:%d: unreadable journal line skipped (%s); that sample will be generated again",
                               path, n, e)
                continue
            found = d.get("fingerprint", "")
            if fingerprint is not None and found != fingerprint:
                raise ConfigMismatchError(path, {"fingerprint": (found, fingerprint)})
            yield at, len(line), d


class JournalView(Mapping[str, JournalRecord]):
    """The run's journal as the stages after generation read it: for each sample, where its last line
    is in the file (an offset, a length and the record's status), not the record — a record is read
    back (``pread``, parsed, its repeated values shared) each time it is asked for. At 480k samples
    that is 12 bytes a sample instead of a ~1 KB record held from generation to the end (issue 23).

    ``samples``: the plan's (a :class:`~hub_pgen.plan.table.SampleTable`): where each line is is then
    held in two arrays by plan position (a sample found by its id, hub_pgen.plan.table), else — and
    for an id the plan does not have — in a dict by id (~140 bytes a sample).

    ``extra``: records that are not in the file (an ``--retry-failed`` result's records whose
    journaling was cut short); the file's line of a sample wins over them, as in :func:`load_journal`.
    Only the run that holds the output's lock appends to the file (:meth:`add` with what
    :meth:`JournalWriter.append` returned), so a recorded line is always there to read."""

    def __init__(self, path: Path, extra: Mapping[str, JournalRecord] | None = None,
                 samples: Sequence[Sample] | None = None) -> None:
        self.path = path
        self._at: dict[str, tuple[int, int]] = {}  # id → (offset, length << 2 | status code)
        self._table = samples if isinstance(samples, SampleTable) else None
        n = len(self._table) if self._table is not None else 0
        self._offset = np.full(n, -1, dtype=np.int64)  # by plan position; -1: no line
        self._span = np.zeros(n, dtype=np.uint64)  # length << 2 | status code
        self._held = 0  # positions with a line
        self._extra: dict[str, JournalRecord] = dict(extra or {})
        self._shared: dict[object, object] = {}
        self._fd: int | None = None

    @classmethod
    def load(cls, path: Path, *, fingerprint: str | None, extra: Mapping[str, JournalRecord] | None = None,
             samples: Sequence[Sample] | None = None, known: dict[str, Any] | None = None) -> JournalView:
        """The view of ``path`` as :func:`load_journal` reads it (the same lines kept, warned or refused).
        ``known``: the index of its first bytes, saved when they were read (:meth:`index_state`; their
        lines unchanged since, which the caller checked): only the lines after them are read."""
        view = cls(path, extra, samples)
        start, first_line = 0, 1
        if known is not None and view.known_fits(known):  # the index of the file's first bytes, as saved
            view._offset, view._span, view._at = known["offset"].copy(), known["span"].copy(), dict(known["at"])
            view._held = int(np.count_nonzero(view._offset >= 0))
            start, first_line = known["bytes"], known["lines"] + 1
        for at, length, d in _lines(path, fingerprint, start, first_line):  # indexed, no record made
            view._put(d["sample_id"], at, length, d["status"])
        return view

    def index_state(self, size: int, lines: int) -> dict[str, Any]:
        """The index of the file's first ``size`` bytes (``lines`` lines; all the view holds: the run that
        appends asks), for :meth:`load`'s ``known`` (hub_pgen.run.running_pass saves it with the pass)."""
        return {"offset": self._offset, "span": self._span, "at": self._at, "bytes": size, "lines": lines}

    def indexed_end(self) -> int:
        """Where the last line the view holds ends in the file (0: none): the bytes its index is of."""
        held = self._offset >= 0
        end = int((self._offset[held] + (self._span[held] >> 2).astype(np.int64)).max()) if held.any() else 0
        return max([end, *(at + (span >> 2) for at, span in self._at.values())])

    def known_fits(self, known: Any) -> bool:
        """Whether ``known`` (a checkpoint's :meth:`index_state`) is an index of this view's plan."""
        n = len(self._offset)
        return (isinstance(known, dict) and all(isinstance(known.get(k), int) for k in ("bytes", "lines"))
                and isinstance(known.get("at"), dict)
                and all(isinstance(known.get(k), np.ndarray) and known[k].shape == (n,) for k in ("offset", "span"))
                and known["offset"].dtype == np.int64 and known["span"].dtype == np.uint64)

    def add(self, records: Sequence[JournalRecord], spans: Sequence[tuple[int, int]]) -> None:
        """``records`` are now the lines at ``spans`` (:meth:`JournalWriter.append`'s answer)."""
        for record, (at, length) in zip(records, spans, strict=True):
            self._put(record.sample_id, at, length, record.status)

    def _put(self, sample_id: str, at: int, length: int, status: str) -> None:
        span = _span(length, status)
        i = self._table.position(sample_id) if self._table is not None else None
        if i is None:
            self._at[sample_id] = (at, span)
            return
        if self._offset[i] < 0:
            self._held += 1
        self._offset[i], self._span[i] = at, span

    def _where(self, sample_id: str) -> tuple[int, int] | None:
        if self._table is not None:
            i = self._table.position(sample_id)
            if i is not None:
                at = int(self._offset[i])
                return (at, int(self._span[i])) if at >= 0 else None
        return self._at.get(sample_id)

    def status(self, sample_id: str) -> str | None:
        """A sample's record's status, from the index (None: no record); a status other than the three
        hub-pgen writes is read from the record."""
        where = self._where(sample_id)
        if where is None:
            extra = self._extra.get(sample_id)
            return extra.status if extra is not None else None
        code = where[1] & 3
        return _STATUSES[code] if code < len(_STATUSES) else self._read(where).status

    def _read(self, where: tuple[int, int]) -> JournalRecord:
        at, length = where[0], where[1] >> 2
        return self._parse(os.pread(self._fd_open(), length, at), at, length)

    def _parse(self, line: bytes, at: int, length: int) -> JournalRecord:
        try:
            if len(line) != length or not line.endswith(b"\n"):
                raise ValueError(f"{len(line)} of {length} bytes at offset {at}")
            return JournalRecord.from_checked(json.loads(line), self._shared)
        except (ValueError, TypeError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise OutputError(f"the journal {self.path} changed under the run ({e})", path=self.path,
                              hint="one run at a time writes an output: rerun the same command (it resumes from "
                                   "the journal)") from None

    def _positional(self, samples: Sequence[Sample]) -> bool:
        """Whether ``samples`` are the plan the view indexes by position (then nothing is looked up by id)."""
        return self._table is not None and samples is self._table and not self._extra

    def codes(self, samples: Sequence[Sample]) -> np.ndarray:
        """Each of ``samples``' record's status by plan position, as a code (0 ok, 1 failed, 2 filtered, 3
        another, -1 no record), from the index: no record read (a status other than those three only
        where the view does not index ``samples`` by position, and then read)."""
        if self._positional(samples):
            out = (self._span & 3).astype(np.int8)
            out[self._offset < 0] = -1
            return out
        return np.fromiter((-1 if (s := self.status(sid)) is None else _STATUSES.index(s) if s in _STATUSES else 3
                            for sid in sample_ids(samples)), dtype=np.int8, count=len(samples))

    def in_order(self, samples: Sequence[Sample], start: int = 0,
                 stop: int | None = None) -> Iterator[tuple[int, JournalRecord, bytes | None]]:
        """(plan position, record, its line) of each of ``samples`` with a record, in plan order, each read
        once (``start``/``stop``: of the plan's positions, those in ``range(start, stop)``). Where the view
        indexes ``samples`` by position, by position (no id looked up) and a block of the file at a time
        (records in plan order are mostly in file order: one read serves many); else by id, without the
        line (None)."""
        if not self._positional(samples):
            for i, sid in enumerate(sample_ids(samples)):
                record = self.get(sid) if start <= i and (stop is None or i < stop) else None
                if record is not None:
                    yield i, record, None
            return
        block, start_at = b"", 0
        end = len(self._offset) if stop is None else min(stop, len(self._offset))
        for a in range(start, end, CHUNK):  # a chunk of the plan at a time: no list of every position
            b = min(a + CHUNK, end)
            held = np.flatnonzero(self._offset[a:b] >= 0) + a
            for i, at, span in rows(held, self._offset[held], self._span[held]):
                length = span >> 2
                if not (start_at <= at and at + length <= start_at + len(block)):
                    block, start_at = os.pread(self._fd_open(), max(length, _BLOCK), at), at
                line = block[at - start_at:at - start_at + length]
                yield i, self._parse(line, at, length), line

    def frontier(self, start: int = 0) -> int:
        """The first plan position from ``start`` on without a record (the plan's size: none). Looks a
        little ahead first, then further: a run asks after each batch, when the answer is near."""
        n, a, width = len(self._offset), start, 64
        while a < n:
            hole = np.flatnonzero(self._offset[a:a + width] < 0)
            if len(hole):
                return a + int(hole[0])
            a, width = a + width, min(width * 4, CHUNK)
        return max(start, n)

    def record_at(self, position: int) -> JournalRecord:
        """The record of the plan's sample at ``position`` (it has one: :meth:`codes` says which do)."""
        at = int(self._offset[position])
        if at < 0:
            raise KeyError(position)
        return self._read((at, int(self._span[position])))

    def prefix_within(self, positions: int, size: int) -> bool:
        """Whether every one of the plan's first ``positions`` has a record whose line lies in the file's
        first ``size`` bytes."""
        for a in range(0, positions, CHUNK):
            b = min(a + CHUNK, positions)
            at, span = self._offset[a:b], self._span[a:b]
            if (at < 0).any() or (at + (span >> 2).astype(np.int64) > size).any():
                return False
        return True

    def _fd_open(self) -> int:
        if self._fd is None:
            self._fd = fsio.open_read(self.path)
            weakref.finalize(self, os.close, self._fd)
        return self._fd

    def __getitem__(self, sample_id: str) -> JournalRecord:
        where = self._where(sample_id)
        if where is None:
            return self._extra[sample_id]
        return self._read(where)

    def get(self, sample_id: str, default: Any = None) -> Any:
        where = self._where(sample_id)
        if where is None:
            return self._extra.get(sample_id, default)
        return self._read(where)

    def __contains__(self, sample_id: object) -> bool:
        return isinstance(sample_id, str) and (self._where(sample_id) is not None or sample_id in self._extra)

    def _ids(self) -> Iterator[str]:
        """The ids with a line: the plan's in plan order, then the others in file order."""
        if self._table is not None and self._held:
            for sid, (at,) in zip(self._table.ids(), rows(self._offset)):
                if at >= 0:
                    yield sid
        yield from self._at

    def __iter__(self) -> Iterator[str]:
        yield from self._ids()
        yield from (sid for sid in self._extra if self._where(sid) is None)

    def __len__(self) -> int:
        return self._held + len(self._at) + sum(1 for sid in self._extra if self._where(sid) is None)


_STATUSES = ("ok", "failed", "filtered")  # codes 0-2 of the index; 3: another (read from the record)
_BLOCK = 1 << 20  # bytes of the journal read at once by JournalView.in_order


def _span(length: int, status: str) -> int:
    """A line's length and its record's status in one int: 32 bits of length, 2 of status."""
    if length >> 32:
        raise OutputError(f"a journal line of {length:,} bytes: records are a few KiB")
    code = _STATUSES.index(status) if status in _STATUSES else 3
    return length << 2 | code


def status_codes(journal: Mapping[str, JournalRecord], samples: Sequence[Sample]) -> np.ndarray:
    """Each of ``samples``' status in ``journal`` by position, as :meth:`JournalView.codes` says it (a
    :class:`JournalView` from its index, without reading a record)."""
    if isinstance(journal, JournalView):
        return journal.codes(samples)
    return np.fromiter((-1 if (s := status_of(journal, sid)) is None else _STATUSES.index(s) if s in _STATUSES
                        else 3 for sid in sample_ids(samples)), dtype=np.int8, count=len(samples))


def status_of(journal: Mapping[str, JournalRecord], sample_id: str) -> str | None:
    """A sample's status in ``journal`` (None: not in it); a :class:`JournalView` says it without reading the
    record back."""
    if isinstance(journal, JournalView):
        return journal.status(sample_id)
    record = journal.get(sample_id)
    return record.status if record is not None else None


def to_record(sample: Sample, result: GenerationResult, fp: str) -> JournalRecord:
    """The journal record of a sample and what the model made of it."""
    d = result.dialogue
    return JournalRecord(
        sample_id=sample.sample_id,
        status="ok" if d is not None else "failed",
        episode_id=sample.episode_id,
        t=sample.frame_index,
        images=tuple(ref.label() for ref in sample.images),
        skill_current=sample.skill_current,
        skill_history=sample.skill_history,
        task_description=sample.task_description,
        user_prompt=d.user_prompt if d else None,
        robot_utterance=d.robot_utterance if d else None,
        scenario_type=d.scenario_type if d else sample.scenario_type,
        response_type=d.response_type if d else sample.response_type,
        episode_index=sample.episode_index,
        frame_index=sample.frame_index,
        timestamp=sample.timestamp,
        frame_start=sample.frame_start,
        frame_end=sample.frame_end,
        error=result.error,
        raw_text=result.raw_text or None,
        attempts=result.attempts,
        fingerprint=fp,
    )
