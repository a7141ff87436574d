"""The main run, ``hub-pgen (--root DIR | --repo-id OWNER/NAME | --input-jsonl FILE) [options]``: flags →
config → :func:`hub_pgen.run.driver.run` → the result reported; with ``--job FLAVOR`` the same command is
submitted to a Hugging Face Jobs machine instead (hub_pgen.jobs)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hub_pgen.cli.configure import config_from_args
from hub_pgen.cli.logs import setup_logging
from hub_pgen.cli.options import build_parser
from hub_pgen.cli.results import require_push_token, run_and_report, warn_unused_model_options


def main(argv: Sequence[str], prog: str = "hub-pgen") -> int:
    """Parse ``argv`` (no subcommand word) and run, or submit with ``--job``."""
    argv = list(argv)
    parser = build_parser(prog=prog)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    from hub_pgen import jobs

    if args.job is not None:  # the same command on a Hugging Face Jobs machine
        from hub_pgen.jobs_api import submit_main

        return submit_main(args, argv, parser, config_from_args)
    jobs.check_unused(args)
    return run_main(args)


def run_main(args: argparse.Namespace) -> int:
    from hub_pgen import run as runner

    config = config_from_args(args)
    require_push_token(config.push_to, args.dry_run)
    warn_unused_model_options(args, config)
    if not args.verbose:
        from huggingface_hub.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # its own retry chatter; hub-pgen says what failed and what to do
    return run_and_report(args, lambda reporter: (config, runner.run(
        config, reporter=reporter, dry_run=args.dry_run, wait=args.wait, retry_failed=args.retry_failed,
        review=getattr(args, "review", True))))
