"""``--verify``: a second pass that asks the same backend which skill each generated user prompt leads to.

Self-consistency, as synthetic-data pipelines check it: the model is shown the user's words (text
only: the question is about the words), the episode's task and the episode's skills, and answers
``{"skill": ...}`` under a schema whose values are exactly those skills. A sample agrees when the
answer is the skill it was generated for. The agreement rate goes into the summary, provenance and
card; ``--verify filter`` also filters the samples that disagree (recorded with the skill the
verifier read, never dropped silently). Each verdict is journaled (``OUT.partial/verify.jsonl``), so a
resumed run asks nothing twice. It doubles the model calls, so it is off by default and priced in
``--dry-run``; the template backend answers with the sample's own skill (it cannot read).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hub_pgen import faults
from hub_pgen.data import JournalRecord, Sample
from hub_pgen.errors import GenerationError
from hub_pgen.generate.layer import Call, CallFailed
from hub_pgen.generate.parse import extract_object, keep_raw
from hub_pgen.generate.stream import ONE, Width, stream
from hub_pgen.journal import status_of
from hub_pgen.plan.table import sample_ids, subset

PROMPT = """A user said this to a robot: "{prompt}"
The robot's task in this episode: {task}
The skills the robot performs in this episode, in order: {skills}.
Which one of these skills does the user's request lead the robot to perform next?
Answer with one JSON object and nothing else: {{"skill": "<one of the skills, exactly as written>"}}"""


@dataclass(frozen=True)
class Verdict:
    """One line of the verify journal."""

    sample_id: str
    skill: str | None  # what the verifier read (None: no usable answer)
    agrees: bool
    raw_text: str | None = None
    error: str | None = None
    fingerprint: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def candidates(sample: Sample, segments: Sequence[Any]) -> list[str]:
    """The episode's skills in order (each once), the sample's own among them."""
    names: list[str] = []
    for seg in segments:
        if seg.episode_index == sample.episode_index and seg.skill not in names:
            names.append(seg.skill)
    if sample.skill_current not in names:
        names.append(sample.skill_current)
    return names


def call_for(sample: Sample, record: JournalRecord, names: list[str], seed: int) -> Call:
    schema = {"title": "hub_pgen_verify", "type": "object", "properties": {"skill": {"enum": names}},
              "required": ["skill"], "additionalProperties": False}
    budget = len('{"skill":}') + max(len(json.dumps(n)) for n in names) + 1  # bytes bound tokens, + a stop token
    prompt = PROMPT.format(prompt=record.user_prompt, task=sample.task_description or "(not given)",
                           skills="; ".join(names))
    return Call(sample.sample_id, prompt, (), seed, 0.0, schema=schema, max_new_tokens=max(budget, 16),
                offline=lambda: json.dumps({"skill": sample.skill_current}))


def verify(samples: Sequence[Sample], journal: Mapping[str, JournalRecord], segments: Sequence[Any], backend: Any, *,
           done: dict[str, Verdict], append: Any, fingerprint: str, seed_of: Any, seed: int,
           width: Width = ONE) -> dict[str, Verdict]:
    """Verdicts for the ok samples: those in ``done`` as they are, the others asked as a stream
    (``width``: the backend's, :mod:`hub_pgen.generate.stream`), each appended as it arrives."""
    out = dict(done)
    todo = subset(samples, np.fromiter((sid not in done and status_of(journal, sid) == "ok" for sid in sample_ids(samples)),
                                       dtype=bool, count=len(samples)))

    def ask(batch: list[Sample]) -> list[Verdict]:
        named = [(s, candidates(s, segments)) for s in batch]
        calls = [call_for(s, journal[s.sample_id], names, seed_of(seed, s.sample_id + "/verify"))
                 for s, names in named]
        answers = backend.complete_calls(calls)
        verdicts = []
        for (s, names), answer in zip(named, answers):
            if isinstance(answer, CallFailed):
                verdicts.append(Verdict(s.sample_id, None, False, error=answer.reason, fingerprint=fingerprint))
                continue
            try:
                read = extract_object(answer).get("skill")
            except GenerationError as e:  # no JSON at all
                verdicts.append(Verdict(s.sample_id, None, False, keep_raw(answer), str(e), fingerprint))
                continue
            read = read if isinstance(read, str) and read in names else None
            verdicts.append(Verdict(s.sample_id, read, read == s.skill_current, keep_raw(answer),
                                    None if read is not None else "the answer names none of the skills", fingerprint))
        return verdicts

    for _, verdicts in stream(todo, ask, width, name="hub-pgen-verify"):
        append(verdicts)
        faults.point("verify")
        out.update((v.sample_id, v) for v in verdicts)
    return out


def load(path: Path, *, fingerprint: str) -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    if not path.is_file():
        return out
    for line in path.read_bytes().split(b"\n")[:-1]:
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        if d.get("fingerprint") == fingerprint:
            out[d["sample_id"]] = Verdict(**{k: d.get(k) for k in Verdict.__dataclass_fields__})
    return out


def summary(verdicts: dict[str, Verdict]) -> dict[str, Any]:
    checked = len(verdicts)
    agree = sum(v.agrees for v in verdicts.values())
    unanswered = sum(v.skill is None for v in verdicts.values())
    return {"checked": checked, "agree": agree, "disagree": checked - agree - unanswered, "unanswered": unanswered,
            "agreement": round(agree / checked, 4) if checked else None}


def mark(record: JournalRecord, verdict: Verdict) -> JournalRecord:
    """The record with what the verifier read of it (``verified``), so every disagreement is recorded in
    ``meta/syn_annotations.jsonl`` (and shown on the review page), filtered or not."""
    return replace(record, verified={"skill": verdict.skill, "agrees": verdict.agrees})
