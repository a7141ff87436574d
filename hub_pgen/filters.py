"""Filters on the generated dialogues (``--min-chars``, ``--dedupe``, ``--drop-degenerate``).

A filtered sample is never dropped silently: its record stays in ``meta/syn_annotations.jsonl`` with
``status: "filtered"`` and the reason in ``error``; its frames keep ``-1`` and it gets no language
rows; the summary and the provenance count it by reason. The journal keeps the model's answer as it
was (``ok``): filtering happens when the dataset is written. The filters are part of the
configuration (they change the dataset), and they run where the dataset is written (a shard writes
its records unfiltered; the merge filters).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from hub_pgen.data import JournalRecord, Sample
from hub_pgen.quality import is_degenerate


def identity(config: Any) -> dict[str, Any] | None:
    """The filters in force, for the fingerprint (None: none)."""
    f = {"min_chars": config.min_chars, "dedupe": config.dedupe, "drop_degenerate": config.drop_degenerate}
    return f if (config.min_chars or config.dedupe or config.drop_degenerate) else None  # --verify: its own key


def reasons(samples: Sequence[Sample], journal: Mapping[str, JournalRecord], config: Any,
            verdicts: dict[str, Any] | None = None) -> dict[str, str]:
    """sample id → why it is filtered, for the ok records of ``samples`` (in plan order: a duplicate is
    the later one). ``verdicts`` (``--verify filter``): hub_pgen.verify's, by sample id."""
    out: dict[str, str] = {}
    if not (config.min_chars or config.drop_degenerate or verdicts is not None or config.dedupe):
        return out  # no filter asked for: no record read
    seen: set[tuple[Any, str, str]] = set()
    for s in samples:
        r = journal.get(s.sample_id)
        if r is None or r.status != "ok":
            continue
        prompt, reply = (r.user_prompt or "").strip(), (r.robot_utterance or "").strip()
        short = [name for name, text in (("user prompt", prompt), ("robot reply", reply))
                 if config.min_chars and len(text) < config.min_chars]
        if short:
            out[s.sample_id] = f"{' and '.join(short)} shorter than --min-chars {config.min_chars}"
        elif config.drop_degenerate and (is_degenerate(prompt) or is_degenerate(reply)):
            out[s.sample_id] = "degenerate text (--drop-degenerate)"
        elif verdicts is not None and s.sample_id in verdicts and not verdicts[s.sample_id].agrees:
            read = verdicts[s.sample_id].skill
            out[s.sample_id] = (f"the verifier read another skill: {read}" if read is not None
                                else "the verifier gave no usable answer") + " (--verify filter)"
        elif config.dedupe:
            key = (s.episode_index, " ".join(prompt.lower().split()), " ".join(reply.lower().split()))
            if key in seen:
                out[s.sample_id] = "repeats an earlier dialogue of its episode (--dedupe)"
            seen.add(key)
    return out


def mark(record: JournalRecord, reason: str) -> JournalRecord:
    """The record as the dataset gets it when filtered for ``reason``."""
    return replace(record, status="filtered", error=f"filtered: {reason}")


def summary(why: dict[str, str]) -> dict[str, Any]:
    return {"count": len(why), "by_reason": dict(Counter(why.values()).most_common())}
