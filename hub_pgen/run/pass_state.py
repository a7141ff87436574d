"""The state of the pass alongside generation (hub_pgen.run.running_pass) as a file: whether a checkpoint
still holds for a run (:func:`saved`), and the reading that makes only what a state is made of.

The state file is a pickle read with an :class:`_Unpickler` that makes only the classes a state is made
of (a file that names anything else is refused, never run), and only of this hub-pgen version."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from hub_pgen import __version__, layout
from hub_pgen.write.records import RecordPass

logger = logging.getLogger("hub_pgen.run.running_pass")  # what a run says of its pass, under one name

STATE_NAME = "state.pickle"
SYN_NAME = "syn_annotations.jsonl"
DATA_NAME = "files"  # the data files written as generation goes on (below it, their paths in the dataset)
VERSION = 1  # of a state's layout: raised when a class a state is made of changes


def saved(work: Path, prep: Any, journal_path: Path, *, output_format: str, review: bool) -> dict[str, Any] | None:
    """The pass's checkpoint in ``work`` if it still holds for this run: the same plan and configuration,
    the journal's first bytes as they were, its D_syn lines there (None, and why said, when not). Read
    before the journal is: its index of those bytes is part of it (JournalView.load's ``known``)."""
    path = work / layout.PASS_NAME / STATE_NAME
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            state = _Unpickler(fh).load()
    except Exception as e:  # noqa: BLE001 — a damaged or foreign file: the pass starts again
        logger.warning("%s: not a checkpoint of the pass hub-pgen can read (%s: %s); the records are passed "
                       "again from the first", path, type(e).__name__, e)
        return None
    why = _stale(state, prep, journal_path, path.parent, output_format=output_format, review=review)
    if why:
        logger.info("%s not used (%s): the records are passed again from the first", path, why)
        return None
    return state


def _stale(state: Any, prep: Any, journal_path: Path, folder: Path, *, output_format: str, review: bool) -> str | None:
    """Why ``state`` does not hold for this run (None: it holds)."""
    if not isinstance(state, dict) or state.get("version") != VERSION:
        return "another version's"
    n = len(prep.samples)
    mine = {"hub_pgen": __version__, "fingerprint": prep.fingerprint, "samples": n, "format": output_format,
            "review": review, "source_tasks": tuple(prep.source.tasks),
            "source_indices": tuple(int(i) for i in prep.source.task_indices)}
    changed = [k for k, v in mine.items() if state.get(k) != v]
    if changed:
        return f"another configuration's: {', '.join(changed)}"
    consumers, position, size, syn_bytes = (state.get(k) for k in ("consumers", "position", "journal_bytes",
                                                                   "syn_bytes"))
    if not (isinstance(consumers, RecordPass) and isinstance(position, int) and isinstance(size, int)
            and isinstance(syn_bytes, int) and 0 <= position <= n
            and isinstance(consumers.tasks.by_position, np.ndarray) and consumers.tasks.by_position.shape == (n,)
            and (consumers.tally is not None) == review and isinstance(state.get("index"), dict)
            and state["index"].get("bytes") == size):
        return "not a state of this run's pass"
    syn, ahead = folder / SYN_NAME, state.get("ahead")
    if not syn.is_file() or syn.stat().st_size < syn_bytes:
        return "its D_syn lines are not all there"
    digests = state.get("ahead_digests")
    if not isinstance(ahead, dict) or not isinstance(digests, dict) or set(ahead) != set(digests) or \
            not all(isinstance(rel, str) and file_digest(folder / DATA_NAME / rel) == digests[rel] for rel in ahead):
        return "a data file it wrote is not there as it was written"
    digest = hashlib.blake2b(digest_size=16)
    if hash_range(journal_path, digest, 0, size)[0] != size or digest.hexdigest() != state.get("journal_digest"):
        return "the journal changed since"
    state["digest"] = digest
    return None


def hash_range(path: Path, digest: Any, start: int, stop: int) -> tuple[int, int]:
    """``path``'s bytes ``start`` to ``stop`` into ``digest``: how many there were, and their newlines."""
    done = lines = 0
    with open(path, "rb") as fh:
        fh.seek(start)
        while done < stop - start and (chunk := fh.read(min(1 << 20, stop - start - done))):
            digest.update(chunk)
            done += len(chunk)
            lines += chunk.count(b"\n")
    return done, lines


def file_digest(path: Path, *, sync: bool = False) -> str | None:
    """The BLAKE2b digest of a regular file's bytes (None: not one); ``sync``: fsynced first."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        if sync:
            os.fsync(fd)
        digest = hashlib.blake2b(digest_size=16)
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


# what a state is made of: nothing else is made when one is read back
_ALLOWED = {
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "dict"), ("builtins", "list"),
    ("builtins", "tuple"), ("builtins", "bytes"), ("builtins", "bytearray"), ("builtins", "int"),
    ("builtins", "float"), ("builtins", "str"), ("builtins", "object"),
    ("collections", "Counter"), ("collections", "OrderedDict"), ("collections", "deque"),
    ("copyreg", "_reconstructor"), ("array", "array"), ("array", "_array_reconstructor"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("hub_pgen.write.records", "RecordPass"), ("hub_pgen.data", "JournalRecord"),
    ("hub_pgen.quality", "Meter"), ("hub_pgen.quality", "_Measured"), ("hub_pgen.quality", "_Distinct"),
    ("hub_pgen.quality", "_Grams"), ("hub_pgen.quality", "_NearDuplicates"),
    ("hub_pgen.write.tasks", "TaskAssigner"), ("hub_pgen.write.tasks", "TaskRows"),
    ("hub_pgen.write.tasks", "_Utf8"), ("hub_pgen.write.tasks", "_Codes"),
    ("hub_pgen.review.tally", "Tally"), ("hub_pgen.review.tally", "EpisodeTally"),
    ("hub_pgen.review.tally", "Marker"), ("hub_pgen.write.language", "LanguageCounts"),
}


class _Unpickler(pickle.Unpickler):
    """Makes only the classes of :data:`_ALLOWED` (pickle's "restricting globals"): a state file that
    names a function or any other class is refused before anything is called."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a pass's state")
        return super().find_class(module, name)
