"""``hub-pgen [SUBCOMMAND] ...``: the first word picks the subcommand from :data:`COMMANDS` (anything
else is the main run's flags), and :func:`~hub_pgen.cli.guard.guarded` turns what it raises into an
exit code, with the error as JSON on stdout when ``--json`` is among the arguments."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from hub_pgen.cli.demo import main as demo
from hub_pgen.cli.guard import guarded
from hub_pgen.cli.label import main as label
from hub_pgen.cli.merge import main as merge
from hub_pgen.cli.report import main as report
from hub_pgen.cli.run import main as run
from hub_pgen.cli.validate import main as validate

# The command line's process takes Arrow's buffers from the C library's allocator, which hands freed ones
# back to the system: Arrow's default pool (mimalloc) keeps what a run's data files needed, ~30 MiB more
# peak at 2,000 episodes for the same work (docs/benchmarks.md). Set on import, before anything imports
# pyarrow (which reads it once); the user's own choice stands. The library sets nothing.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

MALLOC_ARENAS = 2  # glibc heaps the command line's threads share (glibc's default: up to 8 a core)
MMAP_THRESHOLD = 128 * 1024  # bytes from which glibc maps a block of its own (its default, kept from moving)


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """glibc gives threads heaps of their own, up to 8 a core, and each keeps what its thread freed: the
    frame lanes', the stream's and Arrow's threads held ~8 MiB more peak at the merge of 500 episodes
    than two shared heaps (docs/benchmarks.md), for the same time. Capped on import, before any thread;
    a user's own ``MALLOC_ARENA_MAX`` (glibc read it at start) stands. Whether it was set."""
    return _mallopt("MALLOC_ARENA_MAX", _M_ARENA_MAX, arenas)


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """glibc serves a request of ``size`` or more from its own mapping, given back when freed — but once
    such a block is freed it raises that bar to the block's size, and from then on the journal's 1 MiB
    reads and Arrow's buffers come from the heap, whose freed holes stay in the process: with a model's
    texts at 2,000 episodes, ~40-80 MiB more peak once the pass went alongside generation
    (docs/benchmarks.md). Fixed on import (which also stops it moving); a user's own
    ``MALLOC_MMAP_THRESHOLD_`` stands. Whether it was set."""
    return _mallopt("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, size)


def _mallopt(env: str, param: int, value: int) -> bool:
    """glibc's ``mallopt(param, value)``, unless the user set ``env`` (glibc's own variable for it, read at
    start); elsewhere than glibc (musl and others: their own allocator) nothing is done."""
    if os.environ.get(env) or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):
            return False
        return bool(libc.mallopt(param, value))
    except (OSError, AttributeError):
        return False


_M_ARENA_MAX = -8  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
cap_malloc_arenas()
fix_mmap_threshold()

# subcommand → its module's main(argv without the subcommand word); the documented ones, in
# hub_pgen.cli.parser.SUBCOMMANDS's order
COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "demo": demo,
    "validate": validate,
    "report": report,
    "merge": merge,
    "label": label,
}


def main(argv: Sequence[str] | None = None, prog: str = "hub-pgen") -> int:
    """The ``hub-pgen`` command (``python -m hub_pgen`` and the console script): its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    command = COMMANDS.get(argv[0]) if argv else None
    if command is not None:
        rest = argv[1:]
        return guarded(lambda: command(rest), argv, as_json=as_json)
    return guarded(lambda: run(argv, prog=prog), argv, as_json=as_json)
