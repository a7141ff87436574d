"""``hub-pgen merge SHARD... (--root DIR | --repo-id OWNER/NAME)``: the dataset of a sharded job, written
from its shard folders exactly as one machine would have written it (:func:`hub_pgen.run.driver.merge`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from hub_pgen.cli.logs import setup_logging
from hub_pgen.cli.parser import Parser, add_json, add_logging, add_push, add_source
from hub_pgen.cli.results import require_push_token, run_and_report
from hub_pgen.errors import UsageError

SOURCE_HELP = {"root": "the dataset folder the shards ran on", "repo_id": "the Hub dataset the shards ran on",
               "revision": "its revision (default: as the shards had it)"}


def build_merge_parser() -> Parser:
    p = Parser(
        prog="hub-pgen merge",
        description="Write the dataset of a sharded job (hub-pgen ... --num-shards N --shard-index I on each machine) "
                    "from its shard folders, exactly as one machine would have written it. Every shard of the job "
                    "must be given, each once; the source is the one the shards ran on.",
        allow_abbrev=False,
    )
    p.add_argument("shards", nargs="+", type=Path, metavar="SHARD", help="the --output-dir of each finished shard run")
    add_source(p, SOURCE_HELP)
    p.add_argument("--output-dir", type=Path, help="the new dataset's folder (default: hub-pgen-out/<name>-pgen-<fp>)")
    p.add_argument("--wait", action="store_true", help="wait for another run that holds the output folder")
    p.add_argument("--no-review", dest="review", action="store_false",
                   help="write no review page with the dataset (hub-pgen report OUT writes it later)")
    add_push(p, dict.fromkeys(("push_to", "branch", "private", "tag_version")))
    add_json(p, "print the result as JSON on stdout")
    add_logging(p, dict.fromkeys(("quiet", "verbose")))
    return p


def main(argv: Sequence[str]) -> int:
    args = build_merge_parser().parse_args(list(argv))
    setup_logging(args.verbose)
    return merge_main(args)


def merge_main(args: argparse.Namespace) -> int:
    from hub_pgen import run as runner

    if (args.root is None) == (args.repo_id is None):
        raise UsageError("give the source the shards ran on: --root DIR or --repo-id OWNER/NAME (one of them)")
    require_push_token(args.push_to)
    push = {"push_to": args.push_to, "branch": args.branch, "private": args.private, "tag_version": args.tag_version}
    return run_and_report(args, lambda reporter: runner.merge(
        args.shards, root=args.root, repo_id=args.repo_id, revision=args.revision, output_dir=args.output_dir,
        push=push, reporter=reporter, wait=args.wait, review=args.review))
