"""What the steps of a run share (:class:`RunContext`), and what generation hands to the finish."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub_pgen.config import RunConfig
    from hub_pgen.data import JournalRecord
    from hub_pgen.generate.base import Backend
    from hub_pgen.progress import Reporter
    from hub_pgen.review.thumbs import ThumbKeeper
    from hub_pgen.run.prepare import Prepared
    from hub_pgen.run.running_pass import RunningPass
    from hub_pgen.write.output import OutputPaths


@dataclass
class RunContext:
    """One run (or merge) once its output folder is locked: the configuration, the plan, the folder,
    the backend (or its stand-in) and where progress goes."""

    config: RunConfig
    prep: Prepared
    paths: OutputPaths
    backend: Backend
    reporter: Reporter
    t0: float  # time.monotonic() at the start, for elapsed_s
    started: str  # ISO time the run started (the provenance's created_at)
    # thumbnails of the frames generation decodes, for the review page (None: it decodes its own)
    thumbs: ThumbKeeper | None = None
    review: bool = True  # write the review page with the dataset (--no-review: not)


@dataclass
class Generated:
    """The journal after generation, and what this run did to it."""

    journal: Mapping[str, JournalRecord]
    resumed: int  # samples found in the journal of an earlier run
    sent: int  # samples sent to the backend by this run
    retry_ids: set[str] = field(default_factory=set)  # --retry-failed: the failures generated again
    running: RunningPass | None = None  # the pass that went alongside generation (hub_pgen.run.running_pass)
