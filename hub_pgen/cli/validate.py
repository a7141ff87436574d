"""``hub-pgen validate DIR [--source SRC]``: check a dataset folder against the output contract
(:func:`hub_pgen.write.validate.validate`; exit 7 with every problem listed). What is not a dataset folder
at all is a bad argument here (exit 2), named by its flag."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hub_pgen import layout
from hub_pgen.cli.parser import Parser
from hub_pgen.errors import UsageError
from hub_pgen.textsafe import say


def build_parser() -> Parser:
    p = Parser(
        prog="hub-pgen validate",
        description="Check a dataset folder against hub-pgen's output contract: the same checks the push runs "
                    "before anything leaves the machine. Exit 0: valid; 7: every problem listed; 2: bad arguments.")
    p.add_argument("path", type=Path, help="dataset folder made by hub-pgen")
    p.add_argument("--source", type=Path, help="the source folder: also check original columns and rows are unchanged")
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if not args.path.is_dir():
        raise UsageError(f"{args.path} is not a folder" + ("" if args.path.exists() else " (it does not exist)"),
                         hint="give the output folder of a hub-pgen run, e.g. hub-pgen validate hub-pgen-out/NAME")
    if args.source is not None and not args.source.is_dir():
        raise UsageError(f"--source {args.source} is not a folder", hint="give the source dataset's folder")
    if not (args.path / layout.INFO_PATH).is_file() and (args.path / layout.JSONL_RESULT_NAME).is_file():
        raise UsageError(f"{args.path} is a shard or --input-jsonl result (D_syn records without a dataset): there is "
                         "no dataset to validate",
                         hint="validate the merged dataset: hub-pgen merge SHARD... --root SRC --output-dir OUT, then "
                              "hub-pgen validate OUT")
    from hub_pgen.write.validate import validate  # pyarrow: only once the arguments are good

    validate(args.path, source=args.source)
    say(f"{args.path}: valid")
    return 0
