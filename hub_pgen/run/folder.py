"""The output folder of a run, a merge or a labelling, held for the length of a block: locked (one
run at a time), and committed once ``run.json`` is written, from when on ``OUT.partial`` is a run
that the same command resumes."""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Iterator
from typing import Any

from hub_pgen.write import output as out_mod
from hub_pgen.write.lock import RunLock


class Claim:
    """A locked output folder (:func:`claimed`). :meth:`start` commits it: from then on ``OUT.partial``
    is a resumable run, and the lock is released (not abandoned) at the end."""

    def __init__(self, paths: out_mod.OutputPaths) -> None:
        self.paths = paths
        self.committed = False

    def start(self, fingerprint: str, identity: dict[str, Any]) -> str:
        """``run.json`` written; returns when the run started (the provenance's ``created_at``)."""
        started = out_mod.start_run(self.paths, fingerprint=fingerprint, identity=identity,
                                    started_at=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat())
        self.committed = True
        return started


@contextlib.contextmanager
def claimed(paths: out_mod.OutputPaths, *, wait: bool) -> Iterator[Claim]:
    """The output folder's lock for the block (``wait``: for a run that holds it, instead of refusing)."""
    lock = RunLock(paths.work)
    lock.acquire(wait=wait)
    claim = Claim(paths)
    try:
        yield claim
    finally:
        if claim.committed:
            lock.release()
        else:
            lock.abandon()
