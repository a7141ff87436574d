"""Named kill points for fault-injection tests.

``HUB_PGEN_KILL_AT=point[:n]`` makes the process SIGKILL itself the n-th time (default 1st) it
passes ``point``, so a test can stop a real run at an exact stage — planning, decoding, generating,
journaling, writing, moving into place — and check that the rerun ends where an uninterrupted run
does. ``HUB_PGEN_DELAY_AT=point:seconds`` sleeps there instead (each time), so a test can hold a run
at a stage while it starts another. Unset (always, outside tests), :func:`point` is two dict lookups.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

ENV = "HUB_PGEN_KILL_AT"
DELAY_ENV = "HUB_PGEN_DELAY_AT"
POINTS = (
    "plan",  # after the plan is built
    "frames",  # after a batch's images are decoded
    "generate",  # after the backend answered a batch, before the journal has it
    "journal",  # after a batch is in the journal
    "write.data",  # after each data file is written to staging
    "write.meta",  # after tasks/episodes/stats/info are written to staging
    "finalize",  # staging complete, before the rename into place
    "cleanup",  # after the rename, before the work folder is removed
)
# passed only by --skills annotate and --verify runs (tests/test_skills_sources.py, tests/test_quality.py)
SKILL_POINTS = (
    "skills.asked",  # after the backend labelled a batch of episodes, before the skills journal has it
    "skills.journal",  # after a labelled batch is in the skills journal
    "verify",  # --verify: after a batch of verdicts is in the verify journal
)
# passed only by hub-pgen merge (tests/test_shards.py)
MERGE_POINTS = (
    "merge.journal",  # after a batch of the shards' records is written beside the merged journal
)
# passed only where the pass over the records goes alongside generation (tests/test_running_pass.py)
PASS_POINTS = (
    "pass.checkpoint",  # after the pass's state is saved beside the journal
)
_seen: Counter[str] = Counter()
_lock = threading.Lock()  # a point may be passed by the stream's workers at once


def point(name: str) -> None:
    delay = os.environ.get(DELAY_ENV)
    if delay:
        target, _, seconds = delay.partition(":")
        if target == name:
            time.sleep(float(seconds or 1))
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    with _lock:
        _seen[name] += 1
        due = _seen[name] >= int(nth or 1)
    if due:
        os.kill(os.getpid(), signal.SIGKILL)
