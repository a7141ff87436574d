"""What a run returns (:class:`RunResult`), and the result of a folder that is already complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub_pgen import layout
from hub_pgen.data import JournalRecord
from hub_pgen.journal import load_journal

if TYPE_CHECKING:
    from hub_pgen.run.prepare import Prepared

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    state: str  # "written" | "already-complete" | "dry-run"
    output: Path | None
    fingerprint: str
    samples: int = 0
    ok: int = 0
    failed: int = 0
    resumed: int = 0  # samples found in the journal of an earlier, interrupted run
    generated: int = 0  # samples sent to the backend by this run
    new_tasks: int = 0
    mix: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: tuple[JournalRecord, ...] = ()
    elapsed_s: float = 0.0
    plan_report: dict[str, Any] | None = None
    push: Any = None
    frames: int = 0  # frames of the new dataset
    frames_labelled: int = 0  # of them, frames with a dialogue (task_index_high_level >= 0)
    examples: tuple[JournalRecord, ...] = ()  # a few generated dialogues, to show the user
    notices: tuple[str, ...] = ()  # tolerated input problems, one line per kind
    retried: int = 0  # --retry-failed: earlier failures sent to the backend again
    output_format: str | None = None  # --format of the dataset (None: a JSONL result)
    skills: dict[str, Any] | None = None  # where the skills came from (meta/hub_pgen.json → skills)
    quality: dict[str, Any] | None = None  # hub_pgen.quality measures of the ok dialogues
    filtered: dict[str, Any] | None = None  # hub_pgen.filters: {"count", "by_reason"}
    verify: dict[str, Any] | None = None  # --verify: {"mode", "checked", "agree", ..., "agreement"}
    language: dict[str, Any] | None = None  # what the language columns got (meta/hub_pgen.json → language)
    report: Path | None = None  # the review page (meta/hub_pgen_report.html) of a dataset result
    shard: dict[str, Any] | None = None  # a shard result: {"index", "count", "episodes", "samples"}
    kind: str = "dataset"  # "dataset" (a run, a merge), or "skills" (hub-pgen label: samples are episodes)
    runs_on: str | None = None  # the model, device and dtype this run used (a backend that runs a model)


def examples(records: Iterable[JournalRecord], n: int = 3) -> tuple[JournalRecord, ...]:
    """A few dialogues from different skills, to show what was made."""
    picked: list[JournalRecord] = []
    seen: set[str] = set()
    for r in records:
        if r.status == "ok" and r.skill_current not in seen:
            picked.append(r)
            seen.add(r.skill_current)
        if len(picked) >= n:
            break
    return tuple(picked)


def report_path(output: Path) -> Path | None:
    path = output / layout.REPORT_PATH
    return path if path.is_file() else None


def earlier_records(output: Path, fp: str) -> dict[str, JournalRecord]:
    """The records of a finished result (its D_syn file: the journal's lines, with task indices), as
    journal records of this configuration."""
    for path in (output / layout.SYN_ANNOTATIONS_PATH, output / layout.JSONL_RESULT_NAME):
        if path.is_file():
            return {sid: replace(r, fingerprint=fp, task_index_high_level=None, verified=None)
                    for sid, r in load_journal(path).items()}
    return {}


def result_from_output(state: str, output: Path, prep: Prepared, t0: float) -> RunResult:
    """What an already-complete output holds, from its provenance and its D_syn records."""
    from hub_pgen.provenance_file import read_provenance

    prov = read_provenance(output)
    counts = prov.get("counts", {})
    records = list(earlier_records(output, prep.fingerprint).values())
    failures = tuple(r for r in records if r.status == "failed")  # not the filtered ones (counted apart)
    return RunResult(state, output, prep.fingerprint, samples=counts.get("samples", 0), ok=counts.get("ok", 0),
                     failed=counts.get("failed", 0), new_tasks=counts.get("new_tasks", 0), mix=prov.get("mix", {}),
                     failures=failures, elapsed_s=time.monotonic() - t0, frames=counts.get("frames", 0),
                     frames_labelled=counts.get("frames_labelled", 0), examples=examples(records),
                     notices=prep.notices,
                     output_format=prov.get("format", "hirobot") if prep.source is not None else None,
                     language=prov.get("language"), skills=prov.get("skills"), quality=prov.get("quality"),
                     filtered=prov.get("filtered"), verify=prov.get("verify"), report=report_path(output))
