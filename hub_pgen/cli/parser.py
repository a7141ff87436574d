"""The one parser class every ``hub-pgen`` subcommand uses, and the argument groups they share.

Why one class: a bad argument is a :class:`UsageError` (exit 2, ``hub-pgen: error: …`` and a
``TIP:`` line, and the JSON error object with ``--json``) whichever subcommand it was given to;
argparse's own ``error`` prints a usage block and exits, which skips all of that.

The shared groups keep each flag's name, type and default in one place; their help texts are
parameters because ``merge`` words them for shards (and ``--help`` output is part of the interface).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from hub_pgen.errors import UsageError

# the documented subcommands (hub-pgen SUBCOMMAND ...); without one, argv is the main run's.
# hub_pgen.cli.dispatch.COMMANDS maps each to its module's function (a test holds the two equal)
SUBCOMMANDS = ("demo", "validate", "report", "merge", "label")


class Parser(argparse.ArgumentParser):
    """Bad arguments are a :class:`UsageError` (exit 2 with a TIP, and JSON with --json), not a bare exit."""

    def error(self, message: str) -> NoReturn:
        import difflib
        import re

        hint = f"see {self.prog} --help"
        flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        unknown = re.findall(r"(--[\w-]+)", message) if "unrecognized arguments" in message else []
        # --json on a subcommand that prints no JSON result: its error was printed as JSON all the same
        no_json = "--json" in unknown and "--json" not in flags
        unknown = [u for u in unknown if not (no_json and u == "--json")]
        # an abbreviation first (--retry → --retry-failed), else the closest spelling (--fromat → --format)
        guesses = [next((f for f in flags if f.startswith(u.split("=")[0])), None)
                   or next(iter(difflib.get_close_matches(u.split("=")[0], flags, n=1)), None) for u in unknown]
        close = [c for c in guesses if c]
        words = re.findall(r"unrecognized arguments: (\S+)", message)
        command = difflib.get_close_matches(words[0], SUBCOMMANDS, n=1) if words and not words[0].startswith("-") \
            else []
        if no_json:
            hint = f"{self.prog} prints no JSON result: drop --json ({hint})"
        if command:  # `hub-pgen lable ...`: a subcommand misspelt
            hint = f"did you mean hub-pgen {command[0]} ...? ({hint})"
        elif close:
            hint = f"did you mean {', '.join(close)}? ({hint})"
        raise UsageError(f"{message}", hint=hint)


Container = Any  # a Parser or one of its argument groups: both take add_argument

SOURCE_HELP = {
    "root": "LeRobot v3.0 dataset folder on disk",
    "repo_id": "dataset repo on the Hugging Face Hub, e.g. lerobot/svla_so101_pickplace",
    "revision": "branch, tag or commit of --repo-id (default: the v3.0 tag, else main)",
}

PUSH_HELP: Mapping[str, str | None] = {
    "push_to": "push the new dataset to this Hub dataset repo",
    "branch": "push to this branch (created from main if absent); main is left untouched",
    "private": "create the repo private",
    "tag_version": "with --branch: also move the repo's v3.0 tag to the pushed commit",
}

LOGGING_HELP: Mapping[str, str | None] = {
    "quiet": "no progress output and no summary (warnings and errors still go to stderr)",
    "verbose": "debug logging",
}


def add_source(p: Parser, helps: Mapping[str, str] = SOURCE_HELP) -> argparse._ArgumentGroup:
    """``--root`` / ``--repo-id`` / ``--revision``: the dataset a run reads (one of the first two)."""
    src = p.add_argument_group("source (one of)")
    src.add_argument("--root", type=Path, help=helps["root"])
    src.add_argument("--repo-id", help=helps["repo_id"])
    src.add_argument("--revision", help=helps["revision"])
    return src


def add_push(p: Parser, helps: Mapping[str, str | None] = PUSH_HELP) -> argparse._ArgumentGroup:
    """Where the result goes on the Hub: ``--push-to``, ``--branch``, ``--private``, ``--tag-version``."""
    push = p.add_argument_group("push")
    push.add_argument("--push-to", metavar="OWNER/NAME", help=helps["push_to"])
    push.add_argument("--branch", help=helps["branch"])
    push.add_argument("--private", action="store_true", help=helps["private"])
    push.add_argument("--tag-version", action="store_true", help=helps["tag_version"])
    return push


def add_json(into: Container, help: str) -> None:
    """``--json``: the result (and any error) as JSON on stdout; :func:`hub_pgen.cli.guard.guarded`
    reads it from argv, so an error in parsing itself is JSON too."""
    into.add_argument("--json", action="store_true", help=help)


def add_logging(into: Container, helps: Mapping[str, str | None] = LOGGING_HELP) -> None:
    """``-q`` / ``-v`` (hub_pgen.cli.logs.setup_logging)."""
    into.add_argument("-q", "--quiet", action="store_true", help=helps["quiet"])
    into.add_argument("-v", "--verbose", action="store_true", help=helps["verbose"])
