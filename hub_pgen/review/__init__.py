"""Review stage: see what was generated.

Every run that writes a dataset ends by writing ``meta/hub_pgen_report.html`` into it (so it is
pushed with it): one self-contained page with the counts, the mix asked vs obtained, the quality
measures and alarms, the provenance, and per episode a skill timeline with each sample placed on it
and a card per sample (the frames the model saw, the task, skill, history, asked types, the dialogue,
or the failure with its raw text). ``hub-pgen report OUT`` writes it again (other limits, elsewhere)
and ``--rrd FILE`` exports a Rerun recording (the command line: hub_pgen.cli.report).

    model.py   read a finished output folder into a :class:`~hub_pgen.review.model.Review`
    thumbs.py  the thumbnails (frames decoded from the output's videos by the frames stage)
    shard_thumbs.py  a shard's thumbnails for the merged page (the merge decodes no video)
    html.py    the page
    rerun.py   the Rerun recording (optional: rerun-sdk)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hub_pgen import fsio, layout
from hub_pgen.errors import OutputError, UnsafePathError
from hub_pgen.review.model import DEFAULT_MAX_CARDS, Review, Written, load_review

__all__ = ["ReportResult", "Written", "load_review", "report_name", "write_report"]


@dataclass(frozen=True)
class ReportResult:
    path: Path
    cards: int
    images: int
    unreadable_images: int
    size: int  # bytes


def write_report(root: Path, dest: Path | None = None, *, max_cards: int = DEFAULT_MAX_CARDS,
                 episodes: set[int] | None = None, review: Review | None = None, name: str | None = None,
                 thumbs: dict[str, list[Any]] | None = None, quality: Any = None,
                 records: Written | None = None) -> ReportResult:
    """Write the HTML report of the output folder ``root`` to ``dest`` (default: ``root/meta/
    hub_pgen_report.html``), whole or not at all, and never through a link (:func:`hub_pgen.fsio.
    write_atomic`; the dataset's own page also only inside ``root``: a result folder whose ``meta``
    links elsewhere is refused). ``name``: what the page calls the dataset (default: the pushed repo,
    else the folder's name; a run writing into its staging folder passes OUT's). ``thumbs``: the
    thumbnails a run kept of the frames it decoded (:class:`~hub_pgen.review.thumbs.ThumbKeeper`); the
    others are decoded. ``quality``: the run's :class:`~hub_pgen.quality.Quality` of the records it wrote
    (not measured again); ``records``: the records the run wrote to ``meta/syn_annotations.jsonl``, in
    its order, with their task indices (:class:`~hub_pgen.review.model.Written`: not read back; the
    run's ``quality`` comes with them)."""
    if records is not None and quality is None:
        raise TypeError("write_report: a run's records come with its quality measures (the page keeps no texts to "
                        "measure)")
    from hub_pgen.review.html import render_parts
    from hub_pgen.review.thumbs import thumbnails

    review = review or load_review(root, max_cards=max_cards, episodes=episodes, name=name or report_name(root),
                                   written=records)
    if quality is not None and review.scope is None:
        review = replace(review, measured=quality)
    thumbs = thumbnails(review, made=thumbs)
    own = dest is None
    dest = Path(dest) if dest is not None else Path(root) / layout.REPORT_PATH
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if own and not _inside(dest.parent, root):
            raise UnsafePathError(dest.parent, what="a link out of the dataset folder",
                                  target=os.path.realpath(dest.parent))
        # written as it is made, an episode at a time (a lone surrogate in an answer: U+FFFD)
        size = fsio.write_atomic(dest, render_parts(review, thumbs))
    except UnsafePathError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write the report {dest}: {e.strerror or e}", path=dest,
                          hint="write it elsewhere: hub-pgen report OUT --output FILE.html") from e
    images = [t for ts in thumbs.values() for t in ts]
    return ReportResult(dest, len(thumbs), sum(t.data is not None for t in images),
                        sum(t.data is None for t in images), size)


def _inside(path: Path, root: Path) -> bool:
    real, top = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return real == top or top in real.parents


def report_name(root: Path) -> str:
    """What a page calls the dataset of ``root`` when nothing else names it: its folder's name."""
    return Path(root).resolve().name
