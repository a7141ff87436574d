"""``--skills annotate``: the model labels each episode's skills before any dialogue is generated.

The Hi Robot pipeline has two steps: label the skills, then write the dialogues. For a dataset that
carries neither ``meta/skills.json`` nor lerobot subtask rows, this is the first step. For each
episode the model sees contact sheets of one camera (:mod:`hub_pgen.skills.sheets`), the task,
and is asked for ``{"skills": [{"name", "start", "end"}, ...]}`` under a JSON schema:

- ``name``: printable ASCII starting with a letter, at most 60 characters (the seed's style: "robot
  arm picks up pink lego brick");
- ``start`` / ``end``: one of the times printed on the tiles (an ``enum``), so a boundary is always
  a frame the model saw, and every answer has a bounded length: the call's token budget is the
  answer's longest possible byte length plus a stop token, whatever the tokenizer.

Every answer, constrained or not, is then validated and repaired where that is safe — times snapped
to the nearest shown frame and clipped to the episode, spans sorted and stitched end to start so
they cover the episode from its first frame to its end (as lerobot's plan module stitches its
spans), a span shorter than ``--min-skill-seconds`` merged into its neighbour — and what was
repaired is recorded. An answer with no JSON, no skills or no names is retried with a new seed (as
dialogues are), then recorded as a failure; that episode gets no skills and no samples.

Each episode's result is one line of its own journal (``OUT.partial/skills.jsonl``), so a killed
run resumes without asking the model again, and the dataset comes out the same bytes. The
template backend answers with equal spans named from the task, through the same checks.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hub_pgen.data import Skill
from hub_pgen.errors import GenerationError
from hub_pgen.generate.parse import extract_object, max_answer_chars, one_line, text_problem
from hub_pgen.generate.schema import string_pattern

logger = logging.getLogger(__name__)

SCHEMA_TITLE = "hub_pgen_skills"
MAX_SKILLS = 12
MAX_NAME_CHARS = 60
DEFAULT_MIN_SKILL_SECONDS = 1.0
PROMPT_VERSION = 1  # part of the fingerprint: a changed prompt is another configuration

PROMPT = """You are labelling the skills of one episode of a robot demonstration, to train a robot policy.
Task of the episode: {task}
The images are contact sheets of the episode's frames in time order (left to right, then top to bottom). \
Each frame shows its time in seconds in its top-left corner. The episode runs from {first} s to {end} s.
Split the whole episode into the consecutive skills the robot performs, in order. For each skill give:
- "name": what the robot arm does, lower case, at most {name_chars} characters, like \
"robot arm picks up pink lego brick";
- "start" and "end": times in seconds, chosen from the times shown on the frames (or {end} for the end).
The first skill starts at {first}, each next skill starts where the previous one ended, the last one ends \
at {end}, and each lasts at least {min_s} s. Use at most {max_skills} skills.
Answer with one JSON object and nothing else: {{"skills": [{{"name": "...", "start": {first}, "end": ...}}, ...]}}"""


class SegmentationError(ValueError):
    """An answer that is not a usable segmentation (the reason is the message)."""


@dataclass(frozen=True)
class EpisodeRequest:
    """What the model is asked about one episode."""

    episode_index: int
    task: str
    times: tuple[float, ...]  # the shown frames' timestamps, as the parquet has them
    frames: tuple[int, ...]  # their frame indices
    end: float  # the episode's end: its last frame's timestamp plus one frame
    min_seconds: float
    row_start: int = 0  # global index of the episode's first row (image features stored in the parquet)

    @property
    def sample_id(self) -> str:
        return f"ep{self.episode_index:06d}-skills"

    @property
    def decimals(self) -> int:
        """Two decimals, or three where two would print two frames the same (above 100 fps)."""
        return 2 if len({round(t, 2) for t in self.bounds}) == len(self.bounds) else 3

    @property
    def bounds(self) -> tuple[float, ...]:
        """Where a skill may start or end: the shown frames, and the episode's end."""
        return (*self.times, self.end) if self.end > self.times[-1] else self.times

    def labels(self) -> list[float]:
        return [round(t, self.decimals) for t in self.bounds]

    def max_skills(self) -> int:
        span = self.end - self.times[0]
        return max(1, min(MAX_SKILLS, len(self.bounds) - 1, math.floor(span / self.min_seconds + 1e-9)))

    def schema(self) -> dict[str, Any]:
        labels = self.labels()
        return {
            "title": SCHEMA_TITLE,
            "type": "object",
            "properties": {"skills": {
                "type": "array", "minItems": 1, "maxItems": self.max_skills(),
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "pattern": string_pattern(MAX_NAME_CHARS)},
                                   "start": {"enum": labels[:-1]}, "end": {"enum": labels[1:]}},
                    "required": ["name", "start", "end"],
                    "additionalProperties": False,
                }}},
            "required": ["skills"],
            "additionalProperties": False,
        }

    def max_new_tokens(self) -> int:
        """The longest answer the schema allows, in bytes (no token holds less than a byte), plus a stop
        token: ``{"skills":[`` + items ``{"name":"…","start":T,"end":T}`` joined by commas + ``]}``."""
        longest = max(len(json.dumps(v)) for v in self.labels())
        item = len('{"name":""') + MAX_NAME_CHARS + len(',"start":') + longest + len(',"end":') + longest + 1
        return len('{"skills":[') + self.max_skills() * (item + 1) + len("]}") + 1

    def max_answer_chars(self) -> int:
        """The most characters of an answer that are read: the schema's longest answer (the budget less
        its stop token), times :data:`~hub_pgen.generate.parse.ANSWER_ROOM`."""
        return max_answer_chars(self.max_new_tokens() - 1)

    def prompt(self) -> str:
        labels = self.labels()
        return PROMPT.format(task=self.task or "(not given)", first=labels[0], end=labels[-1],
                             name_chars=MAX_NAME_CHARS, min_s=f"{self.min_seconds:g}", max_skills=self.max_skills())

    def offline_answer(self) -> str:
        """The template backend's answer: equal spans, named from the task's clauses."""
        names = _task_clauses(self.task)
        labels, bounds = self.labels(), self.bounds
        n = max(1, min(len(names), self.max_skills()))
        while True:  # as many equal spans as there are names, each at least --min-skill-seconds
            cuts = _even_cuts(bounds, n)
            if n == 1 or all(bounds[b] - bounds[a] >= self.min_seconds for a, b in zip(cuts[:-1], cuts[1:])):
                break
            n -= 1
        if n == 1:  # one span is the whole task: its name is as many whole clauses of it as fit
            names = [_whole_clauses(self.task or "the task")]
        skills = [{"name": names[k], "start": labels[a], "end": labels[b]}
                  for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]
        return json.dumps({"skills": skills}, separators=(",", ":"))


def _even_cuts(bounds: Sequence[float], n: int) -> list[int]:
    """Indices into ``bounds`` that cut ``[bounds[0], bounds[-1]]`` into ``n`` spans as equal in time as
    the shown frames allow (equal in index count would leave a sliver before an end that follows the
    last shown frame closely)."""
    first, last = bounds[0], bounds[-1]
    cuts = [0]
    for j in range(1, n):
        target = first + j * (last - first) / n
        best = min(range(cuts[-1] + 1, len(bounds) - (n - j)), key=lambda i: (abs(bounds[i] - target), i),
                   default=None)
        if best is None:
            break
        cuts.append(best)
    cuts.append(len(bounds) - 1)
    return sorted(set(cuts))


def _clauses(task: str) -> list[str]:
    return [p.strip(" .") for p in re.split(r",\s*(?:and\s+)?then\s+|\s+and\s+then\s+|\s+then\s+|,\s*|\s+and\s+",
                                             task or "") if p.strip(" .")]


def _task_clauses(task: str) -> list[str]:
    parts = _clauses(task)
    if len(parts) < 2:
        what = (task or "the task").strip(" .")
        parts = [f"move towards {what}", what, f"finish {what}"]
    return [_safe_name(p) for p in parts]


def _whole_clauses(task: str) -> str:
    """``task`` as a skill name; when it is longer than a name may be, its leading clauses that fit
    ("pick up the brick and place it in the box" → "pick up the brick"), never a clause cut in two."""
    whole = _safe_name(task)
    if len(re.sub(r"\s+", " ", task.strip(" .").lower())) <= MAX_NAME_CHARS:
        return whole
    clauses = [_safe_name(p) for p in _clauses(task)]
    if len(clauses) < 2:  # one long clause: cut at a word (it cannot be helped)
        return whole
    name = clauses[0]
    for more in clauses[1:]:
        if len(f"{name} and {more}") > MAX_NAME_CHARS:
            break
        name = f"{name} and {more}"
    return name


def _safe_name(text: str) -> str:
    text = re.sub(r"[^\x20\x21\x23-\x5b\x5d-\x7e]", " ", text.lower())
    text = re.sub(r"\s+", " ", text).strip()
    if not text[:1].isalpha():
        text = "do " + text
    if len(text) > MAX_NAME_CHARS:  # cut at a word
        text = text[: MAX_NAME_CHARS + 1].rsplit(" ", 1)[0] if " " in text[:MAX_NAME_CHARS] else text[:MAX_NAME_CHARS]
    return text[:MAX_NAME_CHARS].rstrip(" ,;:")


# --- parsing and repairing an answer -------------------------------------------------------------


MAX_SECONDS = 1e9  # no episode lasts 31 years: a time past this is no time (and 10**400 is no float)


def finite_seconds(value: Any, where: str) -> float:
    """``value`` as a time in seconds, or :class:`SegmentationError` naming ``where``: a JSON number
    (not a boolean, a string or null), finite, and at most :data:`MAX_SECONDS` either side of zero.
    Every time the model or a journal gives goes through here before any arithmetic."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SegmentationError(f"{where} must be a number of seconds, got {type(value).__name__} {_short(value)}")
    if isinstance(value, int) and abs(value) > MAX_SECONDS:  # before float(): 10**400 overflows it
        raise SegmentationError(f"{where} is {_short(value)} s: no episode is that long")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise SegmentationError(f"{where} is {seconds}, not a number of seconds")
    if abs(seconds) > MAX_SECONDS:
        raise SegmentationError(f"{where} is {seconds:g} s: no episode is that long")
    return seconds


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[:n] + "…"


def parse_segmentation(raw: str, req: EpisodeRequest) -> tuple[tuple[Skill, ...], tuple[str, ...]]:
    """The episode's skills in ``raw`` and what was repaired; :class:`SegmentationError` when unusable.

    Refused (the attempt fails, is retried, and is recorded with the reason): an answer longer than
    :func:`~hub_pgen.generate.parse.max_answer_chars` of the schema's longest, more skills than the
    schema's ``maxItems``, a name that is not text (:func:`~hub_pgen.generate.parse.text_problem`), a
    time that is not a finite number of seconds (:func:`finite_seconds`). Repaired, and recorded as
    repaired: a name over :data:`MAX_NAME_CHARS` (cut), a time off the shown frames (snapped to the
    nearest) or outside the episode (clipped to it), spans out of order (sorted), gaps and overlaps
    (stitched end to start), empty spans (dropped), spans under the minimum (merged)."""
    try:
        obj = extract_object(raw, max_chars=req.max_answer_chars())
    except GenerationError as e:
        raise SegmentationError(e.message) from None
    items = obj.get("skills")
    if not isinstance(items, list) or not items:
        raise SegmentationError('the answer has no "skills" list')
    if len(items) > req.max_skills():
        raise SegmentationError(f"the answer has {len(items):,} skills; this episode allows at most "
                                f"{req.max_skills()} (the schema's maxItems)")
    repairs: list[str] = []
    spans: list[tuple[str, float, float]] = []
    bounds = np.asarray(req.bounds, dtype=np.float64)
    first, last = float(bounds[0]), float(bounds[-1])
    slack = 10 ** -req.decimals
    for i, item in enumerate(items):
        where = f"skills[{i}]"
        if not isinstance(item, dict):
            raise SegmentationError(f"{where} is not an object: {_short(item)}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SegmentationError(f"{where} has no name: {_short(item)}")
        problem = text_problem(name)
        if problem:
            raise SegmentationError(f"{where}.name {problem}")
        clean = one_line(name)
        if len(clean) > MAX_NAME_CHARS:
            clean = clean[:MAX_NAME_CHARS].rstrip()
            repairs.append("name shortened")
        start, end = (finite_seconds(item.get(k), f"{where}.{k}") for k in ("start", "end"))
        if min(start, end) < first - slack or max(start, end) > last + slack:
            repairs.append("a time outside the episode clipped to it")
        snapped = [float(bounds[int(np.argmin(np.abs(bounds - v)))]) for v in (start, end)]
        if any(abs(a - b) > slack for a, b in zip(snapped, (start, end))):
            repairs.append("time snapped to a shown frame")
        if snapped[1] <= snapped[0]:  # the model said nothing about where this skill is
            repairs.append("a span that ends where it starts dropped")
            continue
        spans.append((clean, snapped[0], snapped[1]))
    if not spans:
        raise SegmentationError("every skill ends where it starts (or before): no span to keep")
    ordered = sorted(spans, key=lambda s: (s[1], s[2]))
    if ordered != spans:
        repairs.append("skills sorted by start")
    spans = ordered
    # stitch: one after the other, from the first frame to the episode's end
    starts = [first] + [s[1] for s in spans[1:]]
    ends = starts[1:] + [last]
    if starts[0] != spans[0][1] or any(e != s[2] for e, s in zip(ends, spans)):
        repairs.append("spans stitched end to start over the whole episode")
    stitched = [(name, a, b) for (name, _, _), a, b in zip(spans, starts, ends) if b > a]
    if len(stitched) < len(spans):
        repairs.append("empty spans dropped")
    if not stitched:
        raise SegmentationError("no skill spans any time")
    # a span shorter than the minimum joins its neighbour (the previous one; the first joins the next)
    while len(stitched) > 1:
        short = next((i for i, (_, a, b) in enumerate(stitched) if b - a < req.min_seconds - 1e-9), None)
        if short is None:
            break
        name, a, b = stitched.pop(short)
        if short == 0:
            n2, _, b2 = stitched[0]
            stitched[0] = (n2, a, b2)
        else:
            n0, a0, _ = stitched[short - 1]
            stitched[short - 1] = (n0, a0, b)
        repairs.append(f"a span under {req.min_seconds:g} s merged into its neighbour")
    skills = tuple(Skill(name, a, b) for name, a, b in stitched)
    return skills, tuple(dict.fromkeys(repairs))
