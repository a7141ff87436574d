"""The pass over the records alongside generation, checkpointed, so that a resumed run feeds only the
records after its checkpoint (issue 23: a run killed at half reran the whole finish).

The pass (:class:`hub_pgen.write.records.RecordPass`: quality measures, examples, task rows, the D_syn
file, the review page's sums) takes records in plan order. During generation the records of the plan's
first positions are all journaled up to a frontier (the first position without a record); every
:data:`ADVANCE_SECONDS` the pass is fed up to it, writing the D_syn lines into the work folder, and every
:data:`CHECKPOINT_SECONDS` (or longer when a checkpoint is dear: its cost stays under a fortieth of the
run) its state is saved beside the journal with what it was made from: the frontier, the journal's
length and digest, and the D_syn file's length. A resumed run takes the state back only when all of that
still holds — the same plan and configuration, the journal's first bytes unchanged and holding a record
of every position before the frontier, the D_syn file at least as long (cut back to its length) — and
else starts the pass again from the first record; the result is the same bytes either way.

Which records get a card on the review page is decided from every record's status, known only after
generation: the page's tally keeps its sums as records pass and is told its cards at the end
(:meth:`hub_pgen.review.tally.Tally.show`), read back by position (at most ``DEFAULT_MAX_CARDS``).

The state file (hub_pgen.run.pass_state) is a pickle read with an unpickler that makes only the classes
a state is made of (a file that names anything else is refused, never run), and only of this hub-pgen
version. Runs that
decide about records after generation keep the pass after it (:func:`eligible`): ``--verify``, the
filters, ``--retry-failed``, shards (their records are written by id) and merges. The pass alongside
generation saves time, nothing else: a file of it that cannot be written (a full disk) ends it with a
warning, and the run passes its records after generation.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import pickle
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from hub_pgen import __version__, faults, fsio, layout
from hub_pgen.errors import UnsafePathError
from hub_pgen.journal import JournalView
from hub_pgen.plan.table import SampleTable
from hub_pgen.run.pass_state import DATA_NAME, STATE_NAME, SYN_NAME, VERSION, file_digest, hash_range
from hub_pgen.write.records import Passed, RecordPass

logger = logging.getLogger(__name__)

CHECKPOINT_ENV = "HUB_PGEN_CHECKPOINT_S"  # seconds between two checkpoints (tests: 0, at every advance)
CHECKPOINT_SECONDS = 1.0
ADVANCE_SECONDS = 0.05  # the pass fed at most this often (a batch a sample: not a read of the file each)
_COST_SHARE = 40  # a checkpoint that took c seconds: the next one not before 40 c (under 2.5% of the run)


def eligible(config: Any, prep: Any, *, retry_failed: bool) -> bool:
    """Whether the run's pass can go alongside its generation: a dataset written by this run whose records
    are written as generated (nothing decided about them after generation), its plan a table (the journal
    indexed by plan position)."""
    from hub_pgen import filters

    return (prep.source is not None and prep.shard is None and not prep.merged_from and not prep.bad_lines
            and not config.verify and filters.identity(config) is None and not retry_failed
            and isinstance(prep.samples, SampleTable))


class RunningPass:
    """The pass of one run, fed from the journal as its frontier advances (:meth:`advance`)."""

    def __init__(self, folder: Path, prep: Any, *, output_format: str, review: bool) -> None:
        hirobot = "hirobot" in layout.FORMATS[output_format]
        self.folder = folder
        self.samples = prep.samples
        self.fingerprint = prep.fingerprint
        self.source_tasks = tuple(prep.source.tasks)
        self.source_indices = tuple(int(i) for i in prep.source.task_indices)
        self.hirobot, self.review = hirobot, review
        self._episodes = prep.dataset.episodes
        self._source, self._format = prep.source, output_format
        self._segments = prep.plan.segments if prep.plan is not None else ()
        self.ahead: dict[str, Any] = {}  # data files written (fsynced) into the folder: their language counts
        self._ahead_digests: dict[str, str] = {}  # and their bytes' digests (a resumed run checks them)
        self._files = _files_ahead(prep.source, self.samples)  # (data file, plan positions its records need)
        self.position = 0  # every plan position before it has passed
        self.resumed_at = 0  # where this process took the pass up (a checkpoint's frontier, or 0)
        self.consumers = self._new_consumers()
        self._syn: Any = None
        self._digest = hashlib.blake2b(digest_size=16)
        self._hashed = 0  # the journal's bytes the digest covers
        self._lines = 0  # and its lines
        self._next_advance = 0.0
        self._interval = checkpoint_seconds()
        self._every = ADVANCE_SECONDS if self._interval > 0 else 0.0  # tests: fed and saved at each batch
        self._next_checkpoint = time.monotonic() + self._interval

    def _new_consumers(self) -> RecordPass:
        from hub_pgen.review.tally import Tally

        # every record gets a card when there are no more than the page shows: known now, none read back
        n = len(self.samples)
        shown = range(n) if n <= tally_cards() else ()
        tally = Tally(self._episodes, shown=shown, total=n, coverage=not self.hirobot) if self.review else None
        return RecordPass(len(self.samples), source_tasks=self.source_tasks, source_indices=self.source_indices,
                          hirobot=self.hirobot, tally=tally)

    @classmethod
    def start(cls, work: Path, prep: Any, journal: JournalView, state: dict[str, Any] | None, *,
              output_format: str, review: bool) -> RunningPass:
        """The pass of a run whose journal is ``journal``: from ``state`` (:func:`saved`) where the journal
        holds a record of every position before its frontier, else from the first record; then fed with
        what the journal holds already."""
        rp = cls(work / layout.PASS_NAME, prep, output_format=output_format, review=review)
        if rp.folder.is_symlink() or (rp.folder.exists() and not rp.folder.is_dir()):
            raise UnsafePathError(rp.folder, what="a link" if rp.folder.is_symlink() else "not a folder")
        rp.folder.mkdir(exist_ok=True)
        keep = 0
        if state is not None and not journal.prefix_within(state["position"], state["journal_bytes"]):
            logger.info("the pass's checkpoint not used (the journal lost records it was made from): the records "
                        "are passed again from the first")
            state = None
        if state is not None:
            rp.consumers, rp.position, keep = state["consumers"], state["position"], state["syn_bytes"]
            rp.ahead, rp._ahead_digests = dict(state["ahead"]), dict(state["ahead_digests"])
            rp._digest, rp._hashed, rp._lines = state["digest"], state["journal_bytes"], state["index"]["lines"]
            if rp.consumers.tally is not None:
                rp.consumers.tally.restore(rp._episodes)  # not saved with it
            rp.resumed_at = rp.position
            logger.info("the pass over the records resumes at sample %d of %d (%s)", rp.position, len(rp.samples),
                        rp.folder / STATE_NAME)
        else:
            (rp.folder / STATE_NAME).unlink(missing_ok=True)
        rp._keep_data()
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(rp.folder / SYN_NAME, flags, 0o644)
        os.ftruncate(fd, keep)
        rp._syn = io.BufferedWriter(io.FileIO(fd, "r+"), 1 << 20)
        rp._syn.seek(keep)
        rp.advance(journal, force=True)
        return rp

    def advance(self, journal: JournalView, *, force: bool = False) -> None:
        """Feed the pass up to the journal's frontier (at most every :data:`ADVANCE_SECONDS` unless
        ``force``), and checkpoint it when one is due."""
        now = time.monotonic()
        if not force and now < self._next_advance:
            return
        self._next_advance = now + self._every
        stop = journal.frontier(self.position)
        if stop > self.position:
            feed, out = self.consumers.feed, self._syn
            for i, rec, line in journal.in_order(self.samples, self.position, stop):
                feed(i, rec, line, out)
            self.position = stop
            self._write_ahead()
        if now >= self._next_checkpoint:
            self.checkpoint(journal)

    def _write_ahead(self) -> None:
        """The data files whose records have all passed, written into the folder (fsynced: a checkpoint
        that names one has it whole)."""
        from hub_pgen.write.dataset import write_data_file_alone

        while self._files and self._files[0][1] <= self.position:
            rel, _ = self._files.pop(0)
            if rel in self.ahead:
                continue
            dst = self.folder / DATA_NAME / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            positions = np.flatnonzero(np.isin(self.samples.episodes(), _episodes_of(self._source, rel)))
            counts = write_data_file_alone(self._source, rel, dst, samples=self.samples, positions=positions,
                                           labels=self.consumers.tasks.result(), segments=self._segments,
                                           output_format=self._format)
            self._ahead_digests[rel] = file_digest(dst, sync=True) or ""  # ("": never matches)
            self.ahead[rel] = counts

    def _keep_data(self) -> None:
        """Of the data files in the folder, only those the pass's state names (a kill may have left one
        half-written)."""
        data = self.folder / DATA_NAME
        if data.is_symlink() or (data.exists() and not data.is_dir()):
            data.unlink()
            self.ahead.clear()  # (the state named files there: the pass had none)
        if not data.is_dir():
            return
        for path in sorted(data.rglob("*"), reverse=True):
            rel = path.relative_to(data).as_posix()
            if path.is_symlink() or (path.is_file() and rel not in self.ahead):
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()

    def checkpoint(self, journal: JournalView) -> None:
        """Save the pass's state beside the journal (whole or not at all: written aside, then renamed)."""
        t = time.monotonic()
        self._syn.flush()
        os.fsync(self._syn.fileno())
        size = journal.indexed_end()  # whole lines only (a torn one a kill left is cut off by the next append)
        if size > self._hashed:  # the bytes journaled since the last checkpoint (in the page cache)
            done, lines = hash_range(journal.path, self._digest, self._hashed, size)
            self._hashed, self._lines = self._hashed + done, self._lines + lines
        state = {"version": VERSION, "hub_pgen": __version__, "fingerprint": self.fingerprint,
                 "samples": len(self.samples),
                 "format": self._format, "review": self.review, "source_tasks": self.source_tasks,
                 "source_indices": self.source_indices, "position": self.position,
                 "journal_bytes": self._hashed, "journal_digest": self._digest.hexdigest(),
                 "syn_bytes": self._syn.tell(), "consumers": self.consumers,  # the tally without its episodes
                 "ahead": self.ahead, "ahead_digests": self._ahead_digests,
                 "index": journal.index_state(self._hashed, self._lines)}
        tmp = self.folder / (STATE_NAME + ".tmp")
        tmp.unlink(missing_ok=True)  # a kill's, or a link: never written through
        with fsio.create(tmp) as fh:  # streamed into the file: never the whole state as bytes at once
            pickle.dump(state, fh, protocol=5)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / STATE_NAME)
        faults.point("pass.checkpoint")
        cost = time.monotonic() - t
        self._next_checkpoint = time.monotonic() + (max(self._interval, _COST_SHARE * cost) if self._interval else 0)

    def finish(self, journal: JournalView, prep: Any, staging: Path) -> tuple[Passed, Any, dict[str, Any]] | None:
        """After generation: the rest of the records fed, the page's cards told, and the D_syn file moved
        into ``staging``; returns what the pass found and the page's tally. None when the pass cannot stand
        for the run's (the source read again after generation has other tasks, or a sample has no record):
        then the run passes its records after generation, as without this."""
        if tuple(prep.source.tasks) != self.source_tasks or \
                tuple(int(i) for i in prep.source.task_indices) != self.source_indices:
            return None
        feed, out = self.consumers.feed, self._syn
        for i, rec, line in journal.in_order(self.samples, self.position):
            feed(i, rec, line, out)
        self.position = len(self.samples)
        codes = journal.codes(self.samples)
        if (codes < 0).any():
            return None
        self._syn.flush()
        self._syn.close()
        tally = self.consumers.tally
        if tally is not None and len(self.samples) > tally_cards():  # its cards, read back (at most that many)
            from hub_pgen.review.tally import pick_positions

            by_position = self.consumers.tasks.by_position
            for i in pick_positions(codes, tally_cards()).tolist():  # every position has a record
                tally.show(journal.record_at(i), int(by_position[i]) if self.hirobot else None)
        dst = staging / layout.SYN_ANNOTATIONS_PATH
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.folder / SYN_NAME, dst)
        for rel in self.ahead:  # the data files written as generation went on
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.folder / DATA_NAME / rel, staging / rel)
        shutil.rmtree(self.folder, ignore_errors=True)  # its state is the run's now: a failed write reruns the pass
        passed = self.consumers.result()
        del self.consumers  # done: the task rows' texts are not held past the write
        return passed, tally, self.ahead

    def close(self) -> None:
        if self._syn is not None and not self._syn.closed:
            self._syn.close()

    def abandon(self, error: OSError) -> None:
        """A file of the pass could not be written: said, and the pass ended (the run passes its records
        after generation; a resumed run, from the first)."""
        try:
            self.close()
        except OSError:
            pass
        stopped(self.folder, error)


def stopped(folder: Path, error: OSError) -> None:
    """Say that the pass alongside generation stopped on ``error``, and remove its folder."""
    logger.warning("the pass over the records alongside generation stopped (%s: %s): the records are passed after "
                   "generation instead", folder, error.strerror or error)
    shutil.rmtree(folder, ignore_errors=True)


def checkpoint_seconds() -> float:
    """Seconds between two checkpoints: :data:`CHECKPOINT_ENV` when it is a number of seconds (0 or more),
    else :data:`CHECKPOINT_SECONDS` (a value that is not one is said, never an error: it only tunes)."""
    text = os.environ.get(CHECKPOINT_ENV)
    if text is None:
        return CHECKPOINT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        logger.warning("%s=%r is not a number of seconds (0 or more): the pass is saved every %g s", CHECKPOINT_ENV,
                       text, CHECKPOINT_SECONDS)
        return CHECKPOINT_SECONDS
    return value


def _files_ahead(source: Any, samples: SampleTable) -> list[tuple[str, int]]:
    """The source's data files that can be written as generation goes on, each with how many of the plan's
    first positions its records need (its episodes' last sample), in that order: a folder on disk's (a
    Hub source's data files are fetched after generation)."""
    if source.repo_id or source.absent_data:
        return []
    episodes = samples.episodes()
    last: dict[int, int] = {}
    if len(episodes):
        values, first = np.unique(episodes[::-1], return_index=True)
        last = dict(zip(values.tolist(), (len(episodes) - first).tolist()))
    need: dict[str, int] = {}
    for e, ep in source.episodes.items():
        need[ep.data_path] = max(need.get(ep.data_path, 0), last.get(e, 0))
    return sorted(need.items(), key=lambda item: (item[1], item[0]))


def _episodes_of(source: Any, rel: str) -> list[int]:
    return [e for e, ep in source.episodes.items() if ep.data_path == rel]


def tally_cards() -> int:
    """How many cards the run's page shows (its tally's, hub_pgen.review.model.new_tally's)."""
    from hub_pgen.review import model

    return int(model.DEFAULT_MAX_CARDS)
