"""The one place exceptions become exit codes: :func:`guarded` runs a subcommand and turns a
:class:`HubPgenError` into its exit code with ``hub-pgen: error: …`` and ``TIP: …`` on stderr (and the
JSON error object on stdout with ``--json``), an interrupt into 130 with the command to resume, and
anything else into 70 (an internal error, which must never happen)."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from hub_pgen.errors import HubPgenError
from hub_pgen.textsafe import json_text, say

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def guarded(fn: Callable[[], int], argv: Sequence[str], *, as_json: bool = False) -> int:
    """``fn()``'s exit code, or the one its exception maps to (``argv``: for the resume hint)."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        return fn()
    except BrokenPipeError:
        # the reader of stdout went away (`hub-pgen --json | head`): the work is done and recorded; say
        # nothing more, and keep the interpreter's last flush from raising again
        _stdout_to_devnull()
        return 0
    except HubPgenError as e:
        _error(str(e), e.hint, e.exit_code, as_json)
        if os.environ.get("HUB_PGEN_DEBUG"):
            traceback.print_exc()
        return e.exit_code
    except KeyboardInterrupt:
        message = ("interrupted outside generation (reading the source, loading the model, or writing): nothing is "
                   "lost; any samples the run had finished are in its journal (OUT.partial/journal.jsonl).")
        import shlex

        hint = f"rerun the same command to resume: hub-pgen {shlex.join(argv)}"
        if as_json:
            _json_error(message, hint, EXIT_INTERRUPTED)
        say(f"\nhub-pgen: {message}\nTIP: {hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # the one place unexpected errors are turned into an exit code
        _error(f"internal error: {type(e).__name__}: {e}",
               "rerun with HUB_PGEN_DEBUG=1 for the traceback, and report it with the command you ran",
               EXIT_INTERNAL, as_json)
        if os.environ.get("HUB_PGEN_DEBUG"):
            traceback.print_exc()
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stdout_to_devnull() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a file (a test's capture)
        pass


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _error(message: str, hint: str | None, exit_code: int, as_json: bool = False) -> None:
    from hub_pgen.errors import scrub

    message, hint = scrub(message), scrub(hint) if hint else hint
    if as_json:
        _json_error(message, hint, exit_code)
    kind = "" if exit_code == EXIT_INTERRUPTED else "error: "  # an interrupt is the user's, not a failure
    say(f"hub-pgen: {kind}{message}", file=sys.stderr)  # control characters in it shown as escapes
    if hint:
        say(f"TIP: {hint}", file=sys.stderr)


def _json_error(message: str, hint: str | None, exit_code: int) -> None:
    """``--json``: the error on stdout as one JSON object, so a script reads errors as it reads results."""
    try:
        say(json_text({"state": "error", "exit_code": exit_code, "error": message, "tip": hint}, indent=2,
                      sort_keys=True), flush=True)
    except BrokenPipeError:  # nobody reads stdout any more: the exit code and stderr still say it
        _stdout_to_devnull()

