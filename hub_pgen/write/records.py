"""One pass over the run's records, in plan order, for everything the new dataset and its page need of
them: the quality measures, the examples, the task rows and each sample's task index, the dialogues
of lerobot's language columns, ``meta/syn_annotations.jsonl`` itself and the review page's tally.

Each record is read back from the journal once, here (:meth:`hub_pgen.journal.JournalView.in_order`:
by plan position, a block of the file at a time), and passed to every consumer; nothing after the pass
reads a record again. The stages used to read the journal back one after another — quality, task
assignment, the language plan, each data file's dialogues, the D_syn file, the page, the statuses —
five to eight reads of every record, each by looking its id up (issue 23: the finish cost more than
generation with the template backend, and a resumed run paid it all again).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub_pgen import fsio
from hub_pgen.data import JournalRecord, Sample
from hub_pgen.journal import JournalView
from hub_pgen.plan.table import sample_ids
from hub_pgen.quality import Meter, Quality
from hub_pgen.write.tasks import TaskAssigner, TaskAssignment

EXAMPLES = 3  # the summary's dialogues, of different skills
CARD_EXAMPLES = 8  # the card's (hub_pgen.write.card.render_card's limit)


@dataclass
class Passed:
    """What the pass found: the measures and lists the run reports, and what the writer needs."""

    quality: Quality
    examples: tuple[JournalRecord, ...]  # the summary's: ok dialogues of different skills
    card_examples: tuple[JournalRecord, ...]  # the card's: the first ok dialogues the dataset keeps
    failures: tuple[JournalRecord, ...]  # the records not ok, in plan order (as the journal has them)
    ok: int
    labels: TaskAssignment  # each sample's task_index_high_level and the new tasks rows (their dialogues)


def pass_records(samples: Sequence[Sample], journal: Mapping[str, JournalRecord], *,
                 amend: Callable[[JournalRecord], JournalRecord] | None = None,
                 source_tasks: Sequence[str] = (), source_indices: Sequence[int] = (),
                 syn_path: Path | None = None, hirobot: bool = True, tally: Any = None) -> Passed:
    """Read each of ``samples``' records once, in plan order, into every consumer. ``journal``: the run's
    (the quality measures, the examples and the statuses are of its records as generated); ``amend``: the
    record as the dataset gets it (the filters' and the verifier's marks). ``syn_path``: write the D_syn
    file there (each line with its ``task_index_high_level``; null when not ``hirobot``); ``tally``: the
    review page's (:func:`hub_pgen.review.model.new_tally`), given each record as the file has it."""
    consumers = RecordPass(len(samples), source_tasks=source_tasks, source_indices=source_indices,
                           hirobot=hirobot, tally=tally)
    if syn_path is not None:
        syn_path.parent.mkdir(parents=True, exist_ok=True)
    with fsio.create(syn_path) if syn_path is not None else nullcontext() as fh:  # None: no file
        feed = consumers.feed
        for i, rec, line in _in_order(samples, journal):
            feed(i, rec, line, fh, amend)
    return consumers.result()


class RecordPass:
    """The pass's consumers and what they hold, fed one record at a time in plan order: the same pass
    whether it runs after generation (:func:`pass_records`) or alongside it (hub_pgen.run.running_pass,
    whose checkpoints are this object's state)."""

    def __init__(self, n: int, *, source_tasks: Sequence[str], source_indices: Sequence[int], hirobot: bool,
                 tally: Any) -> None:
        self.meter = Meter()
        self.examples: list[JournalRecord] = []
        self.seen_skills: set[str] = set()
        self.card: list[JournalRecord] = []
        self.failures: list[JournalRecord] = []
        self.ok = 0
        self.tasks = TaskAssigner(source_tasks, source_indices, n)
        self.hirobot = hirobot
        self.tally = tally

    def feed(self, i: int, rec: JournalRecord, line: bytes | None, out: Any,
             amend: Callable[[JournalRecord], JournalRecord] | None = None) -> None:
        """Plan position ``i``'s record ``rec`` (``line``: its journal line, or None); its D_syn line
        written to ``out`` (None: not written)."""
        if rec.status == "ok":
            self.ok += 1
            self.meter.add(rec)
            if len(self.examples) < EXAMPLES and rec.skill_current not in self.seen_skills:
                self.examples.append(rec)
                self.seen_skills.add(rec.skill_current)
        else:
            self.failures.append(rec)
        written = amend(rec) if amend is not None else rec
        if len(self.card) < CARD_EXAMPLES and written.status == "ok":
            self.card.append(written)
        tasks = self.tasks
        dialogue = written.dialogue
        if dialogue is not None:
            tasks.add(i, dialogue, written.skill_current)
        index = int(tasks.by_position[i]) if self.hirobot else None
        if out is not None:
            text = syn_line(line, rec.fingerprint, index) if line is not None and written is rec else None
            if text is None:  # amended, or a record the run holds but not its line: from the record
                obj = written.to_json()
                obj["task_index_high_level"] = index
                obj.pop("fingerprint", None)
                text = fsio.jsonl_line(obj)
            out.write(text)
        if self.tally is not None:
            self.tally.add(written, index)

    def result(self) -> Passed:
        return Passed(self.meter.result(), tuple(self.examples), tuple(self.card), tuple(self.failures), self.ok,
                      self.tasks.result())


def _in_order(samples: Sequence[Sample], journal: Mapping[str, JournalRecord]) -> Any:
    """(plan position, record, its journal line or None) of each sample with a record, in plan order."""
    if isinstance(journal, JournalView):
        return journal.in_order(samples)
    return ((i, journal[sid], None) for i, sid in enumerate(sample_ids(samples)) if sid in journal)


_NO_TASK_INDEX = b'"task_index_high_level": null'


def syn_line(line: bytes, fingerprint: str, index: int | None) -> bytes | None:
    """The D_syn line of a record as the journal's ``line`` holds it, made from that line: its
    ``fingerprint`` entry taken out and its task index put in — what ``jsonl_line`` of the record's
    ``to_json()`` less the fingerprint, with the index, gives, without parsing and writing the JSON
    again (a third of the pass). Both lines are ``jsonl_line``'s (sorted keys, ``", "`` and ``": "``), and
    an entry written like a key can only be a key: inside a JSON string every quote is escaped. None
    when the line is not of that shape (then the record is written the long way)."""
    entry = _fingerprint_entry(fingerprint)
    if line.count(entry) != 1 or line.count(_NO_TASK_INDEX) != 1 or not line.endswith(b"}\n"):
        return None
    value = b"null" if index is None else str(int(index)).encode()
    return line.replace(entry, b"", 1).replace(_NO_TASK_INDEX, b'"task_index_high_level": ' + value, 1)


@functools.lru_cache(maxsize=4)
def _fingerprint_entry(fingerprint: str) -> bytes:
    """A line's fingerprint entry (a run's records share one fingerprint: made once, not a line each)."""
    return b'"fingerprint": ' + json.dumps(fingerprint).encode() + b", "
