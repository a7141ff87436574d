"""Progress of a run: rich bars on a terminal, plain timestamped lines elsewhere (CI logs, Actions).

A stage's detail (paths, model names, server messages) is shown through
:func:`hub_pgen.textsafe.inline` (one line each), and on rich as plain text, never console markup."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Protocol

from hub_pgen.textsafe import inline, say

if TYPE_CHECKING:
    from rich.progress import TaskID

logger = logging.getLogger("hub_pgen")


class Reporter(Protocol):
    def stage(self, name: str, detail: str = "") -> None: ...
    def samples_start(self, total: int, done: int) -> None: ...
    def samples_advance(self, ok: int, failed: int) -> None: ...
    def close(self) -> None: ...


class NullReporter:
    def stage(self, name: str, detail: str = "") -> None: ...
    def samples_start(self, total: int, done: int) -> None: ...
    def samples_advance(self, ok: int, failed: int) -> None: ...
    def close(self) -> None: ...


class PlainReporter:
    """One line per stage, and a samples line at most every ``every`` seconds (and at the end)."""

    def __init__(self, stream=None, every: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.every = every
        self.total = self.done = self.failed = self._start_done = 0
        self._t0 = self._last = 0.0

    def _print(self, text: str) -> None:
        say(f"[hub-pgen {time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)

    def stage(self, name: str, detail: str = "") -> None:
        self._print(f"{name}{': ' + inline(detail) if detail else ''}")  # one line: no detail forges another

    def samples_start(self, total: int, done: int) -> None:
        self.total, self.done, self._start_done = total, done, done
        self._t0 = self._last = time.monotonic()
        self._print(f"generate: {total - done} to do ({done} of {total} already in the journal)")

    def samples_advance(self, ok: int, failed: int) -> None:
        self.done += ok + failed
        self.failed += failed
        now = time.monotonic()
        if now - self._last >= self.every or self.done >= self.total:
            self._last = now
            rate = (self.done - self._start_done) / max(now - self._t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self._print(
                f"generate: {self.done}/{self.total} samples, {self.failed} failed, "
                f"{rate:.2f} samples/s, ETA {_fmt_eta(eta)}"
            )

    def close(self) -> None: ...


class RichReporter:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} samples/s"),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task: TaskID | None = None
        self.failed = 0
        self._t0 = 0.0
        self._done0 = 0

    def stage(self, name: str, detail: str = "") -> None:
        from rich.markup import escape

        self.console.log(f"[cyan]{escape(name)}[/cyan] {escape(inline(detail))}")

    def samples_start(self, total: int, done: int) -> None:
        self._t0, self._done0 = time.monotonic(), done
        self.task = self.progress.add_task("generate", total=total, completed=done, rate="-", failed=0)

    def samples_advance(self, ok: int, failed: int) -> None:
        if self.task is None:
            return
        self.failed += failed
        self.progress.advance(self.task, ok + failed)
        done = self.progress.tasks[self.task].completed
        rate = (done - self._done0) / max(time.monotonic() - self._t0, 1e-9)
        self.progress.update(self.task, rate=f"{rate:.2f}", failed=self.failed)

    def close(self) -> None:
        self.progress.stop()


def _fmt_eta(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def quiet_library_progress() -> None:
    """No tqdm bars from huggingface_hub or transformers (downloads, checkpoint shards): in logs
    and CI they are carriage-return noise; hub-pgen's own reporter says what is happening."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read by huggingface_hub at import
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    if sys.modules.get("transformers") is not None:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def make_reporter(*, quiet: bool = False) -> Reporter:
    if quiet:
        return NullReporter()
    if sys.stderr.isatty() and os.environ.get("GITHUB_ACTIONS") != "true":
        return RichReporter()
    return PlainReporter()  # logs, pipes, CI: one plain line per event
