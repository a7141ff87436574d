"""Warnings about the input that a run goes on with, counted by kind instead of one line per episode.

A dataset with sloppy end times has the same problem in hundreds of episodes; a user needs one line
per kind of problem — how many episodes, the first few, one example — not a screenful that repeats
on every rerun. Stages add :class:`Notice` entries to a :class:`Notices` collector; the run logs one
WARNING per kind (:meth:`Notices.lines`) and puts the same lines in the summary and provenance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from hub_pgen.textsafe import inline

logger = logging.getLogger(__name__)

SHOWN_EPISODES = 5


@dataclass(frozen=True)
class Notice:
    kind: str  # what happened and what hub-pgen did about it, the same text for every episode
    episode: int | None
    detail: str = ""  # this episode's particulars (names, times)


@dataclass
class Notices:
    items: list[Notice] = field(default_factory=list)

    def add(self, kind: str, episode: int | None = None, detail: str = "") -> None:
        self.items.append(Notice(kind, episode, detail))

    def by_kind(self) -> dict[str, list[Notice]]:
        out: dict[str, list[Notice]] = {}
        for n in self.items:
            out.setdefault(n.kind, []).append(n)
        return out

    def lines(self) -> list[str]:
        """One line per kind: count, the first episodes, and the first example's particulars."""
        out = []
        for kind, notes in self.by_kind().items():
            episodes = sorted({n.episode for n in notes if n.episode is not None})
            shown = ", ".join(map(str, episodes[:SHOWN_EPISODES])) + (", …" if len(episodes) > SHOWN_EPISODES else "")
            where = f"{len(episodes)} episode(s) ({shown})" if episodes else f"{len(notes)} time(s)"
            example = next((n.detail for n in notes if n.detail), "")
            # one line, whatever the particulars hold (a skill name with a line break, an answer's ESC)
            out.append(f"{kind}: {where}" + (f"; e.g. {inline(example)}" if example else ""))
        return out

    def log(self) -> None:
        for line in self.lines():
            logger.warning("%s", line)
