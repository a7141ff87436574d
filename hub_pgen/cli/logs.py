"""Logging for the command line: warnings and errors on stderr (also with ``-q``), every line as the
terminal will show it (control characters escaped), ``-v`` for everything."""

from __future__ import annotations

import logging
import sys

from hub_pgen.textsafe import for_terminal


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record is logged, not when the handler was made: a
    later ``main()`` in the same process (tests, notebooks) may have swapped it, and the old one closed."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _SafeFormatter(logging.Formatter):
    """Every log line as the terminal will show it: control characters (an ESC sequence in a skill name
    or an answer, a bidi override) as visible escapes (hub_pgen.textsafe.for_terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        return for_terminal(super().format(record))


def setup_logging(verbose: bool) -> None:
    """Warnings and errors on stderr, also with ``-q`` (which silences progress and the summary: a CI
    log keeps what went wrong); ``-v``: everything."""
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger("hub_pgen")
    root.setLevel(level)
    if root.handlers:
        return
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, markup=False)
        handler.setFormatter(_SafeFormatter("%(message)s"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(_SafeFormatter("[hub-pgen %(asctime)s] %(levelname)s %(message)s", "%H:%M:%S"))
    handler.setLevel(logging.WARNING if not verbose else logging.DEBUG)
    root.addHandler(handler)
