"""``hub-pgen report OUT [--output FILE] [--rrd FILE] [--episodes LIST] [--max-cards N]``: write the
review page of a result again, or a partial one elsewhere, or a Rerun recording (hub_pgen.review).
Every check of the arguments comes before a byte is read or written."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hub_pgen import layout
from hub_pgen.cli.parser import Parser
from hub_pgen.errors import UsageError
from hub_pgen.textsafe import say


def build_parser() -> Parser:
    from hub_pgen.review.model import DEFAULT_MAX_CARDS  # pyarrow: only when the report is asked for

    p = Parser(
        prog="hub-pgen report",
        usage="%(prog)s OUT [--output FILE] [--max-cards N] [--episodes LIST] [--rrd FILE]",
        description="Write the review of a dataset hub-pgen made: one self-contained HTML page (counts, mix, quality "
                    "measures, provenance, and per episode a skill timeline and a card per sample with the frames the "
                    "model saw). Every run already writes the full page as OUT/meta/hub_pgen_report.html; this writes "
                    "it again, or a partial one elsewhere (--output with --episodes/--max-cards), or a Rerun recording "
                    "(--rrd: every frame, with the skill and the dialogue as text).",
        epilog="examples:\n"
               "  hub-pgen report OUT                                   # the dataset's own page, again\n"
               "  hub-pgen report OUT --output ep3.html --episodes 3    # a page of episode 3 only\n"
               "  hub-pgen report OUT --rrd ep3.rrd --episodes 3        # a Rerun recording of it (no page)\n\n"
               "exit codes: 0 written, 2 bad arguments, 3 OUT is not (or no longer) a readable hub-pgen dataset,\n"
               "4 cannot write FILE, 5 --rrd without rerun-sdk",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("path", type=Path, metavar="OUT", help="the dataset folder a hub-pgen run wrote (its --output-dir)")
    p.add_argument("--output", type=Path, metavar="FILE",
                   help=f"write the page here (default: OUT/{layout.REPORT_PATH}, the page pushed with the dataset, "
                        "which is always the full one; with --rrd: no page unless --output is given)")
    p.add_argument("--max-cards", type=int, default=None, metavar="N",
                   help=f"samples shown as cards: failed and filtered ones first, then ok ones spread evenly "
                        f"(default: {DEFAULT_MAX_CARDS}; a card is ~9 KB with two cameras); needs --output")
    p.add_argument("--episodes", help="only these episodes, e.g. 0,3-5 (default: all); a page of them needs --output")
    p.add_argument("--rrd", type=Path, metavar="FILE",
                   help='write a Rerun recording of the episodes (pip install "hub-pgen[rerun]"; open it with '
                        "`rerun FILE`): every frame is logged, so pick episodes with --episodes on a large dataset")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return p


def main(argv: Sequence[str]) -> int:
    from hub_pgen.plan.planner import parse_episode_list
    from hub_pgen.review import load_review, report_name, write_report
    from hub_pgen.review.model import DEFAULT_MAX_CARDS

    argv = list(argv)
    args = build_parser().parse_args(argv)
    see = "see hub-pgen report --help"
    if not args.path.is_dir():
        import re

        hint = "give the output folder of a hub-pgen run, e.g. hub-pgen report hub-pgen-out/NAME"
        owner = str(args.path).split("/", 1)[0]
        if not args.path.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", str(args.path)) and not Path(owner).exists():
            hint = (f"a dataset on the Hub? download it first: hf download {args.path} --repo-type dataset "
                    f"--local-dir DIR, then hub-pgen report DIR")
        raise UsageError(f"{args.path} is not a folder" + ("" if args.path.exists() else " (it does not exist)"),
                         hint=hint)
    if args.max_cards is not None and args.max_cards < 0:
        raise UsageError(f"--max-cards must be 0 or more, got {args.max_cards}", hint=see)
    try:
        episodes = parse_episode_list(args.episodes)
    except ValueError as e:
        raise UsageError(str(e), hint=see) from None
    partial = [f for f, v in (("--episodes", episodes), ("--max-cards", args.max_cards)) if v is not None]
    html = args.output is not None or args.rrd is None
    own = (args.path / layout.REPORT_PATH).resolve()
    if html and partial and (args.output is None or args.output.resolve() == own):
        raise UsageError(f"{' and '.join(partial)} make{'s' if len(partial) == 1 else ''} a partial page, and OUT/{layout.REPORT_PATH} is the dataset's "
                         "own (pushed with it), which stays the full one",
                         hint="add --output FILE.html to write the partial page there (or --rrd FILE for a "
                              "Rerun recording of those episodes alone)")
    if args.rrd is not None:
        from hub_pgen.review import rerun

        if args.rrd.is_dir() or str(argv_rrd(argv)).endswith(os.sep):
            raise UsageError(f"--rrd {args.rrd} is a folder", hint="give a file, e.g. --rrd review.rrd")
        if args.rrd.suffix != ".rrd":
            raise UsageError(f"--rrd {args.rrd}: a Rerun recording's name ends in .rrd (the viewer goes by it)",
                             hint=f"e.g. --rrd {args.rrd.with_suffix('.rrd')}")
        rerun.require()  # before any work: a missing rerun-sdk is said at once
    max_cards = DEFAULT_MAX_CARDS if args.max_cards is None else args.max_cards
    review = load_review(args.path, max_cards=max_cards, episodes=set(episodes) if episodes else None,
                         name=report_name(args.path))
    from dataclasses import replace

    from hub_pgen.write.validate import problems

    found = problems(args.path)  # a run's own page was drawn from a validated folder; a folder given here may not be
    if found:
        review = replace(review, problems=tuple(found))
        if not args.quiet:
            say(f"hub-pgen: warning: {args.path} does not pass hub-pgen validate ({len(found)} problem(s), e.g. "
                  f"{found[0]}); the page says so. TIP: hub-pgen validate {args.path} lists them", file=sys.stderr)
    if html:
        result = write_report(args.path, args.output, review=review)
        if not args.quiet:
            broken = f", {result.unreadable_images} frame(s) unreadable" if result.unreadable_images else ""
            say(f"{result.path}: {result.cards} sample card(s), {result.images} image(s){broken}, "
                  f"{result.size / 1e6:.2f} MB")
    if args.rrd is not None:
        counts = rerun.export(review, args.rrd)
        if not args.quiet:
            say(f"{args.rrd}: {counts['episodes']} episode(s), {counts['frames']} image(s), "
                  f"{counts['samples']} sample(s) as text; open it with: rerun {args.rrd}")
    return 0


def argv_rrd(argv: Sequence[str]) -> str:
    """--rrd's value as typed (Path drops a trailing slash)."""
    for i, a in enumerate(argv):
        if a == "--rrd" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--rrd="):
            return a.split("=", 1)[1]
    return ""
