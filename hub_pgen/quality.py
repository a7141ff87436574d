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
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hub_pgen.data import JournalRecord
from hub_pgen.textsafe import digest

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

    @classmethod
    def from_dict(cls, d: Any) -> Quality | None:
        """The measures a provenance holds (:meth:`as_dict`), or None when it holds none, or not of these
        fields and types (an older or edited file: the caller measures the records instead)."""
        if not isinstance(d, dict) or set(d) != set(cls.__dataclass_fields__):
            return None
        for name, f in cls.__dataclass_fields__.items():
            value = d[name]
            if f.type == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
                return None
            if f.type == "float" and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
                return None
            if f.type.startswith("dict") and not (
                    isinstance(value, dict) and set(value) == {"min", "median", "max"}
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())):
                return None
        return cls(**d)

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


def measure(records: Iterable[JournalRecord]) -> Quality:
    """The measures of ``records``' ok dialogues, in one pass (:class:`Meter`)."""
    meter = Meter()
    for r in records:
        meter.add(r)
    return meter.result()


class Meter:
    """The measures, accumulated one record at a time: each record's flags are computed once, and what
    is kept grows with the distinct words, not with the records or the dialogues: the distinct dialogues
    and n-grams are counted as 8-byte values (:class:`_Distinct`), the lengths as counts, and the
    near-duplicates of the current episode only (records come in plan order). A model writes a dialogue
    of its own for nearly every sample: sets of texts and word tuples held ~2 KB a sample (issue 23)."""

    def __init__(self) -> None:
        self.samples = 0
        self._dialogues = _Distinct()
        self._vocab: dict[str, int] = {}
        self._grams = {(side, n): _Grams() for side in ("prompt", "reply") for n in (1, 2)}
        self._lengths: dict[str, Counter[int]] = {"prompt": Counter(), "reply": Counter()}
        self._flags: Counter[str] = Counter()
        self._near = _NearDuplicates()
        # what a dialogue's measures are, by dialogue: a dialogue seen again costs a lookup, not its words
        # split and its flags matched again (bounded: a model's dialogues are mostly each one's own)
        self._seen: dict[tuple[str, str], _Measured] = {}

    def add(self, record: JournalRecord) -> None:
        """Count ``record`` if it is an ok dialogue (anything else is not measured)."""
        if record.status != "ok" or record.user_prompt is None or record.robot_utterance is None:
            return
        prompt, reply = record.user_prompt or "", record.robot_utterance or ""
        self.samples += 1
        key = (prompt, reply)
        m = self._seen.get(key)
        if m is None:
            self._dialogues.extend((int.from_bytes(digest(prompt, reply, size=8), "little"),))
            words = (prompt.lower().split(), reply.lower().split())
            vocab = self._vocab
            for side, w in zip(("prompt", "reply"), words):
                ids = [vocab.setdefault(x, len(vocab)) for x in w]  # a word looked up once for both counts
                for n in (1, 2):
                    self._grams[(side, n)].add(ids, n)
            m = _Measured(len(words[0]), len(words[1]), *_text_flags(prompt, reply), prompt.lower(),
                          frozenset(words[0]))
            if len(self._seen) < MEASURED_KEPT:
                self._seen[key] = m
        else:  # its n-grams are in the sets already: only their count grows
            for side, count in (("prompt", m.prompt_words), ("reply", m.reply_words)):
                for n in (1, 2):
                    self._grams[(side, n)].total += max(0, count - n + 1)
        self._lengths["prompt"][len(prompt)] += 1
        self._lengths["reply"][len(reply)] += 1
        if m.degenerate:
            self._flags[DEGENERATE] += 1
        if _copies(record.skill_current, m.prompt_lower):
            self._flags[COPIES_SKILL] += 1
        if m.refusal:
            self._flags[REFUSAL] += 1
        self._near.add(record.episode_id, m.words)

    def result(self) -> Quality:
        g = {key: grams.ratio() for key, grams in self._grams.items()}
        return Quality(
            samples=self.samples, distinct_dialogues=self._dialogues.count(),
            distinct_1_prompts=g[("prompt", 1)], distinct_2_prompts=g[("prompt", 2)],
            distinct_1_replies=g[("reply", 1)], distinct_2_replies=g[("reply", 2)],
            prompt_chars=_spread(self._lengths["prompt"]), reply_chars=_spread(self._lengths["reply"]),
            degenerate=self._flags[DEGENERATE], skill_copied=self._flags[COPIES_SKILL],
            near_duplicates=self._near.count, refusals=self._flags[REFUSAL],
        )


DEGENERATE, COPIES_SKILL, REFUSAL = "degenerate text", "copies the skill", "reads like a refusal"


def flags(record: JournalRecord) -> list[str]:
    """What the per-dialogue measures say of one dialogue (the review page shows them on its card)."""
    prompt, reply = record.user_prompt or "", record.robot_utterance or ""
    degenerate, refusal = _text_flags(prompt, reply)
    out = []
    if degenerate:
        out.append(DEGENERATE)
    if _copies(record.skill_current, prompt.lower()):
        out.append(COPIES_SKILL)
    if refusal:
        out.append(REFUSAL)
    return out


def _text_flags(prompt: str, reply: str) -> tuple[bool, bool]:
    """(degenerate, refusal) of a dialogue."""
    return is_degenerate(prompt) or is_degenerate(reply), bool(_REFUSAL.search(reply))


def _copies(skill: str, prompt_lower: str) -> bool:
    """The prompt holds a skill label of MIN_COPY_WORDS words or more, verbatim."""
    return len(skill.split()) >= MIN_COPY_WORDS and skill.lower() in prompt_lower


MEASURED_KEPT = 1 << 13  # dialogues whose measures a Meter keeps (~1 KB each: a template's repeat; a model's seldom)


@dataclass(frozen=True, slots=True)
class _Measured:
    prompt_words: int
    reply_words: int
    degenerate: bool
    refusal: bool
    prompt_lower: str
    words: frozenset[str]  # the prompt's, lower case (near-duplicates)


class _Distinct:
    """How many distinct 64-bit values were given: those seen as one sorted array, the latest as they came
    (8 bytes a value, not a Python object in a set)."""

    def __init__(self) -> None:
        self._kept: np.ndarray = np.empty(0, dtype=np.uint64)
        self._new = array("Q")

    def extend(self, values: Iterable[int]) -> None:
        self._new.extend(values)
        if len(self._new) >= max(1 << 16, len(self._kept)):
            self._merge()

    def _merge(self) -> None:
        if self._new:
            self._kept = np.union1d(self._kept, np.frombuffer(self._new, dtype=np.uint64))
            self._new = array("Q")

    def count(self) -> int:
        self._merge()
        return len(self._kept)


class _Grams:
    """Distinct and all n-grams (n = 1 or 2) of word lists, counted as they come: a word as its number in
    the Meter's vocabulary, an n-gram as a 64-bit value."""

    def __init__(self) -> None:
        self.seen = _Distinct()
        self.total = 0

    def add(self, ids: list[int], n: int) -> None:
        """The n-grams of one text, its words given as their numbers."""
        count = len(ids) - n + 1
        if count > 0:
            self.total += count
            self.seen.extend(ids if n == 1 else [a << 32 | b for a, b in zip(ids, ids[1:])])

    def ratio(self) -> float:
        return round(self.seen.count() / self.total, 4) if self.total else 0.0


def is_degenerate(text: str) -> bool:
    words = text.split()
    if not words or not any(c.isalpha() for c in text):
        return True
    known = _IS_WORD
    good = 0
    for w in words:  # words repeat across a run's texts: each one matched once (a bounded table)
        ok = known.get(w)
        if ok is None:
            ok = _WORD.match(w) is not None
            if len(known) < _IS_WORD_KEPT:
                known[w] = ok
        good += ok
    if good < 0.6 * len(words):
        return True
    if sum(map(len, words)) / len(words) > MAX_MEAN_WORD_CHARS:  # tokens glued together, not words
        return True
    run = 1
    last = words[0].lower()
    for w in words[1:]:
        low = w.lower()
        run = run + 1 if low == last else 1
        if run >= 4:
            return True
        last = low
    return False


_IS_WORD: dict[str, bool] = {}  # word → whether it is one (_WORD), for is_degenerate
_IS_WORD_KEPT = 1 << 16


def _spread(counts: Counter[int]) -> dict[str, float]:
    """min / median / max of values given as value → how many (statistics.median's figure)."""
    n = sum(counts.values())
    if not n:
        return {"min": 0, "median": 0, "max": 0}
    values = sorted(counts)
    middle = [(n - 1) // 2, n // 2]  # the two middle positions (one when n is odd)
    found: list[int] = []
    seen = 0
    for v in values:
        seen += counts[v]
        while len(found) < 2 and middle[len(found)] < seen:
            found.append(v)
    median = found[0] if n % 2 else (found[0] + found[1]) / 2
    return {"min": values[0], "median": float(median), "max": values[-1]}


NEAR_DUPLICATE_WINDOW = 50  # distinct earlier prompts of the episode compared (bounded work per sample)


class _NearDuplicates:
    """Prompts whose word set repeats, or overlaps 90 %+ with, one of the last distinct prompts of
    their episode (records taken in plan order: the later one counts). An episode's records come
    together in plan order, so only the current episode's prompts are held."""

    def __init__(self) -> None:
        self._episode: str | None = None
        self._seen: set[frozenset[str]] = set()
        self._recent: list[frozenset[str]] = []
        self.count = 0

    def add(self, episode: str, words: frozenset[str]) -> None:
        """A prompt of ``episode`` (its lower-case words)."""
        if not words:
            return
        if episode != self._episode:
            self._episode, self._seen, self._recent = episode, set(), []
        seen, recent = self._seen, self._recent
        if words in seen or _near(words, recent):
            self.count += 1
        if words not in seen:
            seen.add(words)
            recent.append(words)
            del recent[:-NEAR_DUPLICATE_WINDOW]  # only the last window is ever compared


def _near(words: frozenset[str], recent: list[frozenset[str]]) -> bool:
    """Whether ``words`` overlaps one of ``recent`` (the last window) by NEAR_DUPLICATE_JACCARD or more:
    ``len(a & b) / len(a | b)``, the union counted, not built; a set whose size alone keeps the overlap
    under the bar (it is at most the smaller size over the larger) not intersected. The same answer as
    comparing every pair: a model's prompts are each their own, and this was a third of the measures."""
    n = len(words)
    for w in recent[-NEAR_DUPLICATE_WINDOW:]:
        m = len(w)
        if (m / n if m < n else n / m) < NEAR_DUPLICATE_JACCARD:
            continue
        both = len(words & w)
        if both / (n + m - both) >= NEAR_DUPLICATE_JACCARD:
            return True
    return False
