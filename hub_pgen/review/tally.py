"""What the review page reads of every record, added up as the records pass once, in plan order.

The page shows counts, the mix asked vs obtained, reasons, the verifier's figures and a timeline per
episode of every record, but a card of a bounded few (:data:`~hub_pgen.review.model.DEFAULT_MAX_CARDS`).
So it holds sums, the shown records in full, and a dot per sample only while the page draws one for
every sample (:data:`MAX_MARKERS`): nothing per sample of a large run (at 480k samples an outline of
each record was ~300 bytes a sample, the largest part of a run's peak left; issue 23).

Which records get a card is decided before they pass (:func:`pick_positions`, from their statuses
alone): a run knows them from its journal's index, ``hub-pgen report`` from a first read of the file.
Both feed the same :class:`Tally`, so the run's page and ``hub-pgen report``'s are the same page.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hub_pgen.data import JournalRecord

# Up to this many samples every one is a dot on its episode's timeline (~150 B of page each); above it,
# the ones with a card only (a frame-sampled dataset of 1M frames would be 150 MB of dots)
MAX_MARKERS = 5000

STATUS_CODES = {"ok": 0, "failed": 1, "filtered": 2}  # anything else: 3 (counted as failed, shown first)
OK = 0


def status_code(status: str) -> int:
    return STATUS_CODES.get(status, 3)


def pick_positions(codes: np.ndarray, limit: int) -> np.ndarray:
    """Which records get a card, by their place among the records (plan order), from their status codes:
    every failure and filtered one first (up to ``limit``), then ok ones spread evenly over the plan (a
    deterministic choice: the same output gives the same page)."""
    if limit <= 0:
        return np.zeros(0, dtype=np.int64)
    codes = np.asarray(codes)
    bad = np.flatnonzero(codes != OK)[:limit]
    ok = np.flatnonzero(codes == OK)
    picked = [int(i) for i in spread_positions(len(ok), limit - len(bad))]
    return np.sort(np.concatenate((bad, ok[np.asarray(picked, dtype=np.int64)]))).astype(np.int64)


def spread_positions(n: int, room: int) -> range | list[int]:
    """``room`` of ``n`` places spread evenly over them (all of them when there is room)."""
    if room >= n:
        return range(n)
    step = n / room if room > 0 else 0
    return [int(i * step) for i in range(max(0, room))]


@dataclass(frozen=True)
class Marker:
    """A sample's dot on its episode's timeline."""

    sample_id: str
    status: str
    frame_index: int
    skill: str
    shown: bool  # it has a card (the dot links to it)


@dataclass
class EpisodeTally:
    samples: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    markers: list[tuple[tuple[int, str], Marker]] = field(default_factory=list)  # (sort key, marker)
    cards: list[tuple[tuple[int, str], JournalRecord]] = field(default_factory=list)
    covered: np.ndarray | None = None  # frames an ok dialogue covers (only where the page needs it)


class Tally:
    """Sums over the records given to :meth:`add`, in plan order; the ``shown`` places (indices among
    them, :func:`pick_positions`) kept whole. ``episodes``: the dataset's episodes (their ``length``);
    ``total``: how many records will come (the page marks every one up to :data:`MAX_MARKERS`);
    ``coverage``: keep which frames ok dialogues cover (a dataset without ``task_index_high_level``);
    ``meter``: a :class:`~hub_pgen.quality.Meter` of the records as generated (a filtered one counts as
    the ok answer it was), when the page measures them itself. The records are the caller's to check
    (:func:`~hub_pgen.review.model.check_place`): a run's are its plan's."""

    def __init__(self, episodes: Mapping[int, Any], *, shown: Iterable[int], total: int,
                 coverage: bool = False, meter: Any = None) -> None:
        self._eps = episodes
        self._shown = {int(i) for i in shown}
        self.mark_all = total <= MAX_MARKERS
        self._coverage = coverage
        self.meter = meter
        self._n = 0
        self.counts = {"samples": 0, "ok": 0, "failed": 0, "filtered": 0}
        self.bad = 0
        self.asked: dict[str, Counter[str]] = {"scenario_type": Counter(), "response_type": Counter()}
        self.got: dict[str, Counter[str]] = {"scenario_type": Counter(), "response_type": Counter()}
        self.filtered: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.verdicts = {"checked": 0, "agree": 0, "unanswered": 0}
        self.cards: list[JournalRecord] = []  # plan order
        self.shown_ids: set[str] = set()
        self.by_episode: dict[int, EpisodeTally] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Saved without the dataset's episodes (a run's checkpoint of its pass: the run has them, and gives
        them back: :meth:`restore`)."""
        return {**self.__dict__, "_eps": {}}

    def restore(self, episodes: Mapping[int, Any]) -> None:
        """The dataset's episodes again, after the tally was read back from a checkpoint."""
        self._eps = episodes

    def add(self, r: JournalRecord, task_index: Any = ...) -> None:
        """One more record, as the file has it (``task_index``: its ``task_index_high_level`` in the file
        when the record given is the run's, which has none)."""
        i = self._n
        self._n += 1
        shown = i in self._shown
        if shown:
            r = _as_card(r, task_index)
        status = r.status
        c = self.counts
        c["samples"] += 1
        c[status if status in c else "failed"] += 1
        if status != "ok":
            self.bad += 1
        for kind, value in (("scenario_type", r.scenario_type), ("response_type", r.response_type)):
            if value:
                self.asked[kind][value] += 1
                if status == "ok":
                    self.got[kind][value] += 1
        if status == "filtered":
            self.filtered[(r.error or "").removeprefix("filtered: ")] += 1
        elif status == "failed":
            self.failures[(r.error or "unknown").split(":")[0]] += 1
        if r.verified is not None:
            self.verdicts["checked"] += 1
            self.verdicts["agree"] += bool(r.verified.get("agrees"))
            self.verdicts["unanswered"] += r.verified.get("skill") is None
        if self.meter is not None:
            self.meter.add(replace(r, status="ok") if status == "filtered" else r)
        if shown:
            self.cards.append(r)
            self.shown_ids.add(r.sample_id)
        e = r.episode_index
        if e is None:
            return
        ep = self.by_episode.get(e)
        if ep is None:
            ep = self.by_episode[e] = EpisodeTally()
        ep.samples += 1
        ep.statuses[status] += 1
        key = (r.frame_index if r.frame_index is not None else -1, r.sample_id)
        if r.frame_index is not None and (self.mark_all or shown):
            ep.markers.append((key, Marker(r.sample_id, status, r.frame_index, r.skill_current, shown)))
        if shown:
            ep.cards.append((key, r))
        if self._coverage and status == "ok" and r.frame_start is not None and r.frame_end is not None:
            if ep.covered is None:
                ep.covered = np.zeros(self._eps[e].length, dtype=bool)
            ep.covered[max(0, r.frame_start):min(len(ep.covered), r.frame_end)] = True

    def show(self, r: JournalRecord, task_index: Any = ...) -> None:
        """A record given to :meth:`add` before which records get a card was known (a run whose pass went
        alongside generation, hub_pgen.run.running_pass: its tally has no ``shown`` places): its card
        now, as :meth:`add` would have made it. Called in plan order, once every record has passed."""
        r = _as_card(r, task_index)
        self.cards.append(r)
        self.shown_ids.add(r.sample_id)
        e = r.episode_index
        if e is None:
            return
        ep = self.by_episode[e]
        key = (r.frame_index if r.frame_index is not None else -1, r.sample_id)
        if r.frame_index is not None:
            if self.mark_all:  # its dot is there already: it links to the card now
                k = next(k for k, (_, m) in enumerate(ep.markers) if m.sample_id == r.sample_id)
                ep.markers[k] = (key, replace(ep.markers[k][1], shown=True))
            else:
                ep.markers.append((key, Marker(r.sample_id, r.status, r.frame_index, r.skill_current, True)))
        ep.cards.append((key, r))

    def verdict_summary(self) -> dict[str, Any] | None:
        """The verifier's figures over the records that carry a verdict (None: none does)."""
        v = self.verdicts
        if not v["checked"]:
            return None
        return {"checked": v["checked"], "agree": v["agree"], "disagree": v["checked"] - v["agree"] - v["unanswered"],
                "unanswered": v["unanswered"], "agreement": round(v["agree"] / v["checked"], 4)}


def _as_card(r: JournalRecord, task_index: Any) -> JournalRecord:
    """A shown record as the file has it: no fingerprint, its task index (``...``: the record's own)."""
    if task_index is not ... or r.fingerprint:
        return replace(r, fingerprint="", task_index_high_level=r.task_index_high_level if task_index is ...
                       else task_index)
    return r
