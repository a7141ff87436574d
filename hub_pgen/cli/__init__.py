"""``hub-pgen``: the command line. Parses flags into a :class:`~hub_pgen.config.RunConfig` (or a
subcommand's arguments), calls the library, and turns exceptions into exit codes and ``TIP:`` lines in
one place. The library never imports this package.

    parser.py     the one Parser class (bad arguments → UsageError) and the shared argument groups
    options.py    the main run's flags and --help text (also parsed by label)
    configure.py  flags → RunConfig, with the checks between flags
    results.py    what a run does with its result (push, summary or JSON), shared by run/label/merge
    guard.py      exceptions → exit codes, stderr lines and the --json error object
    logs.py       logging on stderr
    dispatch.py   COMMANDS (subcommand → function) and main
    run.py demo.py validate.py report.py merge.py label.py   one module per subcommand
"""

from __future__ import annotations

from hub_pgen.cli.configure import config_from_args
from hub_pgen.cli.dispatch import COMMANDS, main
from hub_pgen.cli.guard import guarded
from hub_pgen.cli.logs import setup_logging
from hub_pgen.cli.options import build_parser

__all__ = ["COMMANDS", "build_parser", "config_from_args", "guarded", "main", "setup_logging"]

_guarded = guarded  # its name when this was one module (hub_pgen/cli.py)
