"""Quality measures of the generated dialogues, and the alarms a run raises from them.

Synthetic dialogues fail quietly: a weak model repeats one answer, writes punctuation, copies the
skill's words, or refuses; a schema only checks the shape. These measures are computed on every
run's ok records and go into the summary, ``--json``, provenance and the card; the alarms (one line
each, with what to do) are the summary's warnings. The thresholds, and why:

- distinct dialogues / samples < 0.5 (10 samples or more): most samples repeat another's
  dialogue (739 frame samples with 5 distinct dialogues was a real run); segment sampling, or
  sampling at ``--temperature 0.7``, are the cures.
- degenerate strings > 0: an empty string, punctuation or digits only, fewer than 60 % of its words
  made of letters, words of more than 12 characters on average (tokens glued together: what a
  random-weight model writes), or a word repeated 4 times in a row.
- the user prompt contains the skill text verbatim in > 30 % of samples (skills of 4 words or more:
  "pick up brick" in a request is plain English, "robot arm picks up pink lego brick" is a label):
  the prompt asks the model not to; most of it teaches the policy to parrot labels.
- near-duplicates within an episode > 30 %: prompts of one episode whose word sets overlap 90 %+
  (Jaccard) with an earlier one there.
- refusals > 0: "I'm sorry", "as an AI", "I cannot help" and the like in a robot reply.
- distinct-2 of the prompts < 0.2 (20 samples or more): the prompts are mostly one phrasing.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hub_pgen.data import JournalRecord

MIN_DISTINCT_RATIO = 0.5
MAX_SKILL_COPY = 0.3
MAX_NEAR_DUPLICATES = 0.3
MIN_DISTINCT_2 = 0.2
NEAR_DUPLICATE_JACCARD = 0.9
MAX_MEAN_WORD_CHARS = 12  # English averages about 5 letters a word
MIN_COPY_WORDS = 4  # "pick up brick" in a request is plain English; "robot arm picks up pink lego brick" is a label

_WORD = re.compile(r"^[\"'(]*[A-Za-z][A-Za-z'-]*[.,!?;:\"')]*$")
_REFUSAL = re.compile(r"\b(i'?m sorry|i am sorry|as an ai|i cannot help|i can'?t help|i am unable to|"
                      r"i'?m unable to|i won'?t be able)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Quality:
    samples: int
    distinct_dialogues: int
    distinct_1_prompts: float
    distinct_2_prompts: float
    distinct_1_replies: float
    distinct_2_replies: float
    prompt_chars: dict[str, float]  # min / median / max
    reply_chars: dict[str, float]
    degenerate: int
    skill_copied: int
    near_duplicates: int
    refusals: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def alarms(self, sampling: str | None = None) -> list[str]:
        """One line per alarming measure, with what to do (``sampling``: the run's ``--sampling``, so the
        advice fits it)."""
        out: list[str] = []
        n = self.samples
        if n >= 10 and self.distinct_dialogues / n < MIN_DISTINCT_RATIO:
            out.append(f"{n} samples, {self.distinct_dialogues} distinct dialogues: consider --temperature 0.7"
                       + ("" if sampling == "segment" else
                          ", or segment sampling (frames of one segment share one dialogue anyway)"))
        if self.degenerate:
            out.append(f"{self.degenerate} of {n} dialogues hold a degenerate string (empty, punctuation, not words, "
                       "or one word repeated): check the model and --max-new-tokens")
        if n and self.skill_copied / n > MAX_SKILL_COPY:
            out.append(f"{self.skill_copied} of {n} user prompts copy the skill text verbatim: the policy would learn "
                       "to parrot labels; try another model or --temperature")
        if n and self.near_duplicates / n > MAX_NEAR_DUPLICATES:
            out.append(f"{self.near_duplicates} of {n} prompts nearly repeat an earlier one of their episode")
        if self.refusals:
            out.append(f"{self.refusals} robot replies read like refusals (\"I'm sorry\", \"as an AI\"): see them in "
                       "meta/syn_annotations.jsonl")
        if n >= 20 and self.distinct_2_prompts < MIN_DISTINCT_2:
            out.append(f"the user prompts are mostly one phrasing (distinct-2 {self.distinct_2_prompts:.2f})")
        return out


def measure(records: Sequence[JournalRecord]) -> Quality:
    ok = [r for r in records if r.status == "ok" and r.user_prompt is not None and r.robot_utterance is not None]
    prompts = [r.user_prompt or "" for r in ok]
    replies = [r.robot_utterance or "" for r in ok]
    return Quality(
        samples=len(ok),
        distinct_dialogues=len({(p, u) for p, u in zip(prompts, replies)}),
        distinct_1_prompts=distinct_n(prompts, 1), distinct_2_prompts=distinct_n(prompts, 2),
        distinct_1_replies=distinct_n(replies, 1), distinct_2_replies=distinct_n(replies, 2),
        prompt_chars=_spread([len(p) for p in prompts]), reply_chars=_spread([len(u) for u in replies]),
        degenerate=sum(1 for r in ok if DEGENERATE in flags(r)),
        skill_copied=sum(1 for r in ok if COPIES_SKILL in flags(r)),
        near_duplicates=_near_duplicates(ok),
        refusals=sum(1 for r in ok if REFUSAL in flags(r)),
    )


DEGENERATE, COPIES_SKILL, REFUSAL = "degenerate text", "copies the skill", "reads like a refusal"


def flags(record: JournalRecord) -> list[str]:
    """What the per-dialogue measures say of one dialogue (the review page shows them on its card)."""
    prompt, reply = record.user_prompt or "", record.robot_utterance or ""
    out = []
    if is_degenerate(prompt) or is_degenerate(reply):
        out.append(DEGENERATE)
    skill = record.skill_current
    if len(skill.split()) >= MIN_COPY_WORDS and skill.lower() in prompt.lower():
        out.append(COPIES_SKILL)
    if _REFUSAL.search(reply):
        out.append(REFUSAL)
    return out


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the texts' words (0 when there are none)."""
    grams = [tuple(words[i : i + n]) for t in texts for words in [t.lower().split()] for i in range(len(words) - n + 1)]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


def is_degenerate(text: str) -> bool:
    words = text.split()
    if not words or not any(c.isalpha() for c in text):
        return True
    if sum(1 for w in words if _WORD.match(w)) < 0.6 * len(words):
        return True
    if sum(len(w) for w in words) / len(words) > MAX_MEAN_WORD_CHARS:  # tokens glued together, not words
        return True
    run = 1
    for a, b in zip(words, words[1:]):
        run = run + 1 if a.lower() == b.lower() else 1
        if run >= 4:
            return True
    return False


def _spread(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(values), "median": float(statistics.median(values)), "max": max(values)}


NEAR_DUPLICATE_WINDOW = 50  # distinct earlier prompts of the episode compared (bounded work per sample)


def _near_duplicates(records: Sequence[JournalRecord]) -> int:
    seen: dict[str, set[frozenset[str]]] = defaultdict(set)
    recent: dict[str, list[frozenset[str]]] = defaultdict(list)
    count = 0
    for r in records:
        words = frozenset((r.user_prompt or "").lower().split())
        if not words:
            continue
        if words in seen[r.episode_id] or any(len(words & w) / len(words | w) >= NEAR_DUPLICATE_JACCARD
                                                for w in recent[r.episode_id][-NEAR_DUPLICATE_WINDOW:]):
            count += 1
        if words not in seen[r.episode_id]:
            seen[r.episode_id].add(words)
            recent[r.episode_id].append(words)
    return count
