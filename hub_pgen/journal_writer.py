"""Appending to a journal (:mod:`hub_pgen.journal`): whole lines, flushed as each batch arrives and
fsynced in group commits — every ``SYNC_EVERY`` records or ``SYNC_SECONDS``, and on close — so a kill
loses no line and a power cut at most that window; a line torn by a kill is cut off before the next
append, so the file stays valid JSONL."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from hub_pgen import fsio
from hub_pgen.errors import OutputError, UnsafePathError

SYNC_EVERY = 64  # records between two fsyncs of a journal, at most
SYNC_SECONDS = 0.2  # and seconds: a power cut loses at most this much of a run (a kill loses nothing)


class Line(Protocol):
    """What a journal holds one per line: a record that says itself as JSON (a :class:`JournalRecord`,
    the labeller's ``SegmentRecord``, the verifier's ``Verdict``)."""

    def to_json(self) -> dict[str, Any]: ...


class JournalWriter:
    """Appends records durably. Opening cuts a torn tail so appended lines start on a line boundary.

    The file is opened once, never through a link (:func:`hub_pgen.fsio.open_append`: a link planted at
    ``OUT.partial/journal.jsonl`` is refused, exit 4, its target untouched), and the tail is cut on that
    descriptor. Each record is one line of :func:`hub_pgen.fsio.jsonl_line`, which any string encodes
    to (a lone surrogate in an answer is kept as its ``\\udXXX`` escape)."""

    def __init__(self, path: Path, *, sync_every: int = SYNC_EVERY, sync_seconds: float = SYNC_SECONDS) -> None:
        self.path = path
        self.sync_every = sync_every
        self.sync_seconds = sync_seconds
        self.syncs = 0  # fsyncs so far (tests and benchmarks count them)
        self._fh: io.BufferedWriter | None = None
        self._unsynced = 0
        self._synced_at = time.monotonic()
        self._size = 0

    def __enter__(self) -> JournalWriter:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = fsio.open_append(self.path)
            try:
                _cut_torn_tail(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fh = open(fd, "ab")
            self._size = os.fstat(fd).st_size  # where the next line starts (only this run appends: the lock)
        except UnsafePathError:
            raise
        except OSError as e:
            raise OutputError(f"cannot write the journal {self.path}: {e.strerror or e}", path=self.path) from e

    def append(self, records: Iterable[Line]) -> list[tuple[int, int]]:
        """Write ``records``, one line each; returns where each line is (byte offset, length)."""
        if self._fh is None:
            raise RuntimeError("JournalWriter.append before open()")
        lines = [fsio.jsonl_line(r.to_json()) for r in records]
        spans = []
        at = self._size
        for line in lines:
            spans.append((at, len(line)))
            at += len(line)
        blob = b"".join(lines)
        if not blob:
            return spans
        try:
            self._fh.write(blob)
            self._fh.flush()  # whole lines in the kernel: a kill from here on loses none of them
            self._size = at
            self._unsynced += blob.count(b"\n")
            if self._unsynced >= self.sync_every or time.monotonic() - self._synced_at >= self.sync_seconds:
                self._sync()
        except OSError as e:
            raise OutputError(
                f"cannot append to the journal {self.path}: {e.strerror or e}",
                path=self.path,
                hint="free disk space, then rerun the same command: what the journal holds (finished samples, labelled "
                     "episodes) is kept, and only the rest is asked again",
            ) from e
        return spans

    def _sync(self) -> None:
        assert self._fh is not None
        os.fsync(self._fh.fileno())
        self.syncs += 1
        self._unsynced = 0
        self._synced_at = time.monotonic()

    def close(self) -> None:
        if self._fh is not None:
            try:
                if self._unsynced:
                    self._sync()
            except OSError as e:
                raise OutputError(f"cannot write the journal {self.path}: {e.strerror or e}", path=self.path) from e
            finally:
                self._fh.close()
                self._fh = None


def _cut_torn_tail(fd: int) -> None:
    """Cut the file open on ``fd`` after its last newline (a line torn by a kill)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    # scan back to the last newline
    pos = size - 1
    chunk = 4096
    while pos > 0:
        start = max(0, pos - chunk)
        buf = os.pread(fd, pos - start, start)
        nl = buf.rfind(b"\n")
        if nl >= 0:
            os.ftruncate(fd, start + nl + 1)
            return
        pos = start
    os.ftruncate(fd, 0)
