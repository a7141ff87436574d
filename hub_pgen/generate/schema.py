"""The JSON a pgen answer must be, and how long it may get, for any tokenizer.

The promise of constrained decoding is that the answer is a complete JSON object — which only holds
if the longest answer the grammar allows fits in ``max_new_tokens``. Token counts depend on the
tokenizer (Qwen's holds ~4 English characters per token, a byte-level tokenizer without merges one
byte), so the bound is stated in what no tokenizer can beat: **one token carries at least one
byte**, so an answer of B bytes needs at most B tokens. The strings are printable ASCII (one byte per
character; no control characters, quotes or backslashes, so no JSON escapes either), the keys and
types are fixed text, and so the longest allowed answer has a known byte length:

    budget needed = skeleton bytes (keys, punctuation, longest type names) + prompt chars
                    + utterance chars + 1 (the stop token)

:func:`answer_bounds` derives the string bounds from the budget (the defaults, 240 and 160
characters, need 510 tokens; a smaller budget shortens both in proportion) and refuses a budget too
small for a useful answer, saying how many tokens are needed. Nothing here imports torch: the CLI
checks the budget before anything else happens.

The same bounds bind every answer, constrained or not: :func:`answer_limits` is what the answer
parser (:mod:`hub_pgen.generate.parse`) enforces, so a server that ignores the schema or the token
budget cannot hand back a longer dialogue than the grammar would have let through. The schema states
each string's bound in its ``pattern`` (one letter, then bounded repeats that add up to the limit:
:func:`pattern_max_chars` reads it back) and not as ``maxLength`` too: outlines (one of vLLM's
grammar backends) builds a string's regex from ``maxLength`` *instead of* ``pattern`` when both are
given, which would let quotes, escapes and control characters back in — and an escape is six bytes
for one character, so the budget would no longer hold — and xgrammar's ``maxLength`` lets control
characters through (xgrammar#800).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hub_pgen.plan.taxonomy import RESPONSE_TYPES, SCENARIO_TYPES

KEYS: tuple[str, ...] = ("scenario_type", "response_type", "user_prompt", "robot_utterance")
DEFAULT_MAX_PROMPT_CHARS = 240  # "one or two short sentences"
DEFAULT_MAX_UTTERANCE_CHARS = 160  # "one short sentence"
MIN_PROMPT_CHARS = 60  # below this a "natural user prompt" is hardly a sentence
MIN_UTTERANCE_CHARS = 40
STOP_TOKENS = 1
DEFAULT_MAX_NEW_TOKENS = 512  # >= default_max_new_tokens(): the default bounds fit any tokenizer
# printable ASCII minus '"' (0x22) and '\' (0x5c): one byte each, and nothing needs a JSON escape
SAFE_CHAR = r"[\x20\x21\x23-\x5b\x5d-\x7e]"
FIRST_CHAR = "[A-Za-z]"
_MAX_REPEAT = 128


@dataclass(frozen=True)
class AnswerBounds:
    """String bounds of one constrained answer, in characters (= bytes: the strings are ASCII)."""

    max_prompt_chars: int
    max_utterance_chars: int

    @property
    def max_answer_bytes(self) -> int:
        return skeleton_bytes() + self.max_prompt_chars + self.max_utterance_chars


def skeleton_bytes(scenario_types: Sequence[str] = tuple(SCENARIO_TYPES),
                   response_types: Sequence[str] = tuple(RESPONSE_TYPES)) -> int:
    """Bytes of the longest answer with empty strings: keys, quotes, colons, commas, braces and the
    longest type names — exactly what the grammar writes (``any_whitespace=False``)."""
    longest = {"scenario_type": max(scenario_types, key=len), "response_type": max(response_types, key=len),
               "user_prompt": "", "robot_utterance": ""}
    return len(json.dumps(longest, separators=(",", ":"), ensure_ascii=True).encode())


def tokens_needed(bounds: AnswerBounds) -> int:
    return bounds.max_answer_bytes + STOP_TOKENS


def min_max_new_tokens() -> int:
    """The smallest ``--max-new-tokens`` a constrained run accepts."""
    return tokens_needed(AnswerBounds(MIN_PROMPT_CHARS, MIN_UTTERANCE_CHARS))


def default_max_new_tokens() -> int:
    """The budget that fits the default string bounds (the CLI's default rounds it up)."""
    return tokens_needed(AnswerBounds(DEFAULT_MAX_PROMPT_CHARS, DEFAULT_MAX_UTTERANCE_CHARS))


DEFAULT_BOUNDS = AnswerBounds(DEFAULT_MAX_PROMPT_CHARS, DEFAULT_MAX_UTTERANCE_CHARS)


def answer_limits(max_new_tokens: int, constrained: bool) -> AnswerBounds:
    """The string bounds an answer is held to when it is parsed: the grammar's (those the server was
    sent) for a constrained run, else the schema's defaults (the prompt asks for "one or two short
    sentences" and "one short sentence"; an unconstrained answer gets no more room than a
    constrained one at the default budget)."""
    if constrained:
        try:
            return answer_bounds(max_new_tokens)
        except BudgetTooSmall:  # refused at option checking; a direct caller gets the defaults
            pass
    return DEFAULT_BOUNDS


class BudgetTooSmall(ValueError):
    def __init__(self, max_new_tokens: int) -> None:
        self.max_new_tokens = max_new_tokens
        self.needed = min_max_new_tokens()
        super().__init__(
            f"max_new_tokens {max_new_tokens} cannot hold a complete constrained answer: the JSON needs up to "
            f"{self.needed} tokens with the shortest strings allowed ({MIN_PROMPT_CHARS} and {MIN_UTTERANCE_CHARS} "
            f"characters), and {default_max_new_tokens()} with the default ones"
        )


def answer_bounds(max_new_tokens: int) -> AnswerBounds:
    """The string bounds that make every constrained answer close within ``max_new_tokens`` tokens,
    whatever the tokenizer. Raises :class:`BudgetTooSmall` when no useful answer fits."""
    if max_new_tokens < min_max_new_tokens():
        raise BudgetTooSmall(max_new_tokens)
    room = max_new_tokens - STOP_TOKENS - skeleton_bytes()
    full = DEFAULT_MAX_PROMPT_CHARS + DEFAULT_MAX_UTTERANCE_CHARS
    if room >= full:
        return AnswerBounds(DEFAULT_MAX_PROMPT_CHARS, DEFAULT_MAX_UTTERANCE_CHARS)
    prompt = max(MIN_PROMPT_CHARS, room * DEFAULT_MAX_PROMPT_CHARS // full)
    utterance = room - prompt
    if utterance < MIN_UTTERANCE_CHARS:
        prompt, utterance = room - MIN_UTTERANCE_CHARS, MIN_UTTERANCE_CHARS
    return AnswerBounds(prompt, utterance)


def string_pattern(max_chars: int) -> str:
    """A string of 1 to ``max_chars`` printable ASCII characters that starts with a letter and holds
    nothing that needs escaping, so the raw JSON text and the decoded value are the same and the string
    always closes. (A letter first: a weak model otherwise "answers" ``","``.)"""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    # xgrammar 0.2.x crashes on a bounded repeat above 128 inside a JSON string (xgrammar#863), so
    # longer bounds are written as consecutive repeats of at most 128 each: same language.
    chunks = [FIRST_CHAR]
    left = max_chars - 1
    while left > 0:
        chunks.append(f"{SAFE_CHAR}{{0,{min(left, _MAX_REPEAT)}}}")
        left -= _MAX_REPEAT
    return "^" + "".join(chunks) + "$"


def pattern_max_chars(pattern: str) -> int:
    """The longest string :func:`string_pattern` lets through (the bound the schema states)."""
    return 1 + sum(int(n) for n in re.findall(r"\{0,(\d+)\}", pattern))


def dialogue_schema(
    scenario_types: Sequence[str],
    response_types: Sequence[str],
    *,
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
    max_utterance_chars: int = DEFAULT_MAX_UTTERANCE_CHARS,
) -> dict[str, Any]:
    """The JSON schema of one pgen answer. Pass one type each to pin the row's assigned types."""
    if not scenario_types or not response_types:
        raise ValueError("dialogue_schema needs at least one scenario type and one response type")
    return {
        "type": "object",
        "properties": {
            "scenario_type": {"type": "string", "enum": list(scenario_types)},
            "response_type": {"type": "string", "enum": list(response_types)},
            "user_prompt": {"type": "string", "pattern": string_pattern(max_prompt_chars)},
            "robot_utterance": {"type": "string", "pattern": string_pattern(max_utterance_chars)},
        },
        "required": list(KEYS),
        "additionalProperties": False,
    }
