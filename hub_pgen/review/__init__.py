"""Review stage: see what was generated.

Every run that writes a dataset ends by writing ``meta/hub_pgen_report.html`` into it (so it is
pushed with it): one self-contained page with the counts, the mix asked vs obtained, the quality
measures and alarms, the provenance, and per episode a skill timeline with each sample placed on it
and a card per sample (the frames the model saw, the task, skill, history, asked types, the dialogue,
or the failure with its raw text). ``hub-pgen report OUT`` writes it again (other limits, elsewhere)
and ``--rrd FILE`` exports a Rerun recording.

    model.py   read a finished output folder into a :class:`~hub_pgen.review.model.Review`
    thumbs.py  the thumbnails (frames decoded from the output's videos by the frames stage)
    html.py    the page
    rerun.py   the Rerun recording (optional: rerun-sdk)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hub_pgen import layout
from hub_pgen.errors import OutputError, UsageError
from hub_pgen.review.model import DEFAULT_MAX_CARDS, Review, load_review

__all__ = ["ReportResult", "load_review", "main", "write_report"]


@dataclass(frozen=True)
class ReportResult:
    path: Path
    cards: int
    images: int
    unreadable_images: int
    size: int  # bytes


def write_report(root: Path, dest: Path | None = None, *, max_cards: int = DEFAULT_MAX_CARDS,
                 episodes: set[int] | None = None, review: Review | None = None) -> ReportResult:
    """Write the HTML report of the output folder ``root`` to ``dest`` (default: ``root/meta/
    hub_pgen_report.html``), whole or not at all."""
    from hub_pgen.review.html import render
    from hub_pgen.review.thumbs import thumbnails

    review = review or load_review(root, max_cards=max_cards, episodes=episodes)
    thumbs = thumbnails(review)
    page = render(review, thumbs).encode("utf-8")
    dest = Path(dest) if dest is not None else Path(root) / layout.REPORT_PATH
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(page)
        os.replace(tmp, dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write the report {dest}: {e.strerror or e}", path=dest,
                          hint="write it elsewhere: hub-pgen report OUT --output FILE.html") from e
    images = [t for ts in thumbs.values() for t in ts]
    return ReportResult(dest, len(thumbs), sum(t.data is not None for t in images),
                        sum(t.data is None for t in images), len(page))


def build_parser() -> argparse.ArgumentParser:
    from hub_pgen.cli import _Parser

    p = _Parser(
        prog="hub-pgen report",
        description="Write the review of a dataset hub-pgen made: one self-contained HTML page (counts, mix, quality "
                    "measures, provenance, and per episode a skill timeline and a card per sample with the frames the "
                    "model saw). Every run already writes it as OUT/meta/hub_pgen_report.html; this writes it again. "
                    "--rrd also exports a Rerun recording (every frame, with the skill and dialogue as text).",
        allow_abbrev=False,
    )
    p.add_argument("path", type=Path, metavar="OUT", help="the dataset folder a hub-pgen run wrote (its --output-dir)")
    p.add_argument("--output", type=Path, metavar="FILE",
                   help=f"where the page goes (default: OUT/{layout.REPORT_PATH})")
    p.add_argument("--max-cards", type=int, default=DEFAULT_MAX_CARDS, metavar="N",
                   help=f"samples shown as cards: every failed and filtered one first, then ok ones spread evenly "
                        f"(default: {DEFAULT_MAX_CARDS}; each card is ~8 KB with two cameras)")
    p.add_argument("--episodes", help="only these episodes, e.g. 0,3-5 (default: all)")
    p.add_argument("--rrd", type=Path, metavar="FILE",
                   help='also write a Rerun recording of the episodes (pip install "hub-pgen[rerun]"; open it with '
                        "`rerun FILE`): every frame is logged, so pick episodes with --episodes on a large dataset")
    p.add_argument("--no-html", action="store_true", help="with --rrd: write the recording only")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return p


def main(argv: Sequence[str]) -> int:
    from hub_pgen.plan.planner import parse_episode_list

    args = build_parser().parse_args(argv)
    if not args.path.is_dir():
        import re

        hint = "give the output folder of a hub-pgen run, e.g. hub-pgen report hub-pgen-out/NAME"
        if not args.path.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", str(args.path)):
            hint = (f"a dataset on the Hub? download it first: hf download {args.path} --repo-type dataset "
                    f"--local-dir DIR, then hub-pgen report DIR")
        raise UsageError(f"{args.path} is not a folder" + ("" if args.path.exists() else " (it does not exist)"),
                         hint=hint)
    if args.max_cards < 0:
        raise UsageError(f"--max-cards must be 0 or more, got {args.max_cards}")
    if args.no_html and args.rrd is None:
        raise UsageError("--no-html leaves nothing to write without --rrd FILE", hint="add --rrd FILE, or drop --no-html")
    try:
        episodes = parse_episode_list(args.episodes)
    except ValueError as e:
        raise UsageError(str(e)) from None
    review = load_review(args.path, max_cards=args.max_cards, episodes=set(episodes) if episodes else None)
    if not args.no_html:
        result = write_report(args.path, args.output, review=review)
        if not args.quiet:
            broken = f", {result.unreadable_images} frame(s) unreadable" if result.unreadable_images else ""
            print(f"{result.path}: {result.cards} sample card(s), {result.images} image(s){broken}, "
                  f"{result.size / 1e6:.2f} MB")
    if args.rrd is not None:
        from hub_pgen.review import rerun

        counts = rerun.export(review, args.rrd)
        if not args.quiet:
            print(f"{args.rrd}: {counts['episodes']} episode(s), {counts['frames']} image(s), "
                  f"{counts['samples']} sample(s) as text; open it with: rerun {args.rrd}")
    return 0
