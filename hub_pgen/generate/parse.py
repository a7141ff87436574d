"""Turn a model's raw answer into a validated :class:`~hub_pgen.data.Dialogue`, or say why not.

Runs on every answer, constrained or not: constrained decoding guarantees the shape only when the
grammar was applied to the whole answer (a truncated answer, ``--no-constrained`` or a server that
ignores ``response_format`` still needs this), and unconstrained models wrap JSON in code fences,
prose, ``<think>`` blocks or trailing commas. Parsing is forgiving about the wrapping and strict
about the content: four non-empty strings within the schema's length bounds, free of control
characters, known types, and — when the schedule assigned types — exactly those types, because a
dataset whose mix drifts to the model's favourite scenario is not the mix the run reported.

The answer is hostile input (a server may send anything), so the work is bounded whatever it holds:

- an answer longer than :func:`max_answer_chars` of the schema's longest answer is refused unread
  (:data:`DIALOGUE_ANSWER_CHARS` for a dialogue: 48 x 510 = 24,480 characters);
- the search for the JSON object is one pass over the text that tracks strings and brace depth and
  yields the balanced ``{...}`` spans; at most :data:`MAX_DECODES` of them are decoded, outermost
  first, so the cost is linear in the answer's length (the old search re-decoded from every ``{``:
  30,000 braces took 45 s);
- decoding is strict: a key given twice, ``NaN``/``Infinity``, a number out of float range
  (``1e999``), an integer of more than :data:`MAX_INT_DIGITS` digits and nesting past Python's
  recursion limit make that object unusable, with the reason;
- text fields may not hold control characters other than whitespace (tabs and newlines become one
  space, like every run of whitespace), lone UTF-16 surrogates, bidirectional overrides or U+FEFF:
  such an answer is refused, not cleaned (:func:`text_problem`);
- what is kept of a raw answer for the journal is bounded and always valid Unicode (:func:`keep_raw`).
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any, overload

from hub_pgen.data import Dialogue, GenerationResult
from hub_pgen.errors import GenerationError
from hub_pgen.generate.schema import DEFAULT_BOUNDS, AnswerBounds
from hub_pgen.plan.taxonomy import RESPONSE_TYPES, SCENARIO_TYPES

KEYS: tuple[str, ...] = ("scenario_type", "response_type", "user_prompt", "robot_utterance")
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_SIGNIFICANT = re.compile(r'[{}"\\]')
_PLACEHOLDERS = {"...", "…", "<user prompt>", "<robot utterance>", "string"}
_SHOWN = 200  # characters of raw text quoted in an error message

# An answer may be this many times the longest answer its schema allows: x6 because JSON may write any
# character as a six-character \uXXXX escape, x8 for the prose, code fence or <think> text around it.
ANSWER_ROOM = 48
MAX_DECODES = 32  # JSON decodes tried per answer (each is linear in its span): the parse stays linear
MAX_RESCANS = 2  # scans started again after a brace that never closes (each is one pass)
MAX_INT_DIGITS = 19  # an int64; no answer needs a longer integer (and int() of 5,000 digits raises)
# what a text field may not hold: control characters that are not whitespace (NUL, ESC, DEL, C1),
# lone surrogates (not Unicode text: no UTF-8 writer encodes them), bidirectional embeddings,
# overrides and isolates (text that displays other than it reads), and U+FEFF (a byte-order mark)
_BAD_CHAR = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufeff]")


def max_answer_chars(longest_answer_bytes: int) -> int:
    """The most characters of an answer that are read, for a schema whose longest answer is
    ``longest_answer_bytes`` (a character count, not a token count: no tokenizer is involved)."""
    return ANSWER_ROOM * longest_answer_bytes


DIALOGUE_ANSWER_CHARS = max_answer_chars(DEFAULT_BOUNDS.max_answer_bytes)


class _Problem(ValueError):
    """JSON that decodes in Python but cannot be trusted (the message says why)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Problem(f"the JSON gives key {_short(repr(key))} twice in one object (which one is meant?)")
        out[key] = value
    return out


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _Problem(f"the JSON holds an integer of {digits:,} digits ({text[:12]}…)")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Problem(f"the JSON number {_short(text)} is out of range")
    return value


def _constant(name: str) -> Any:
    raise _Problem(f"the JSON holds {name}, which is not a number (JSON has no NaN or Infinity)")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant)


def parse_dialogue(
    raw: str, *, scenario_type: str | None = None, response_type: str | None = None,
    bounds: AnswerBounds = DEFAULT_BOUNDS,
) -> Dialogue:
    """The dialogue in ``raw``; ``scenario_type``/``response_type`` are the assigned types (``None``:
    any known type), ``bounds`` the string bounds the schema stated (:func:`~hub_pgen.generate.schema.answer_limits`).
    Raises :class:`GenerationError` (with a bounded ``raw_text``) when there is none."""
    obj = extract_object(raw)
    return validate_object(obj, raw, scenario_type=scenario_type, response_type=response_type, bounds=bounds)


def extract_object(raw: str, *, max_chars: int = DIALOGUE_ANSWER_CHARS) -> dict[str, Any]:
    """The JSON object in ``raw``: the first one that has any of the four keys, else the first one.
    ``max_chars``: the longest answer read (:func:`max_answer_chars` of its schema)."""
    if not isinstance(raw, str) or not raw.strip():
        raise GenerationError(
            "the model returned an empty answer",
            raw_text=raw if isinstance(raw, str) else None,
            hint="check --max-new-tokens and the prompt; see raw_text in the journal",
        )
    if len(raw) > max_chars:
        raise GenerationError(
            f"the answer is {len(raw):,} characters; at most {max_chars:,} are read (the schema's longest answer "
            f"is {max_chars // ANSWER_ROOM:,}): did the server ignore the token budget?",
            raw_text=keep_raw(raw, max_chars), hint="check that the server honours max_tokens and response_format")
    where = surrogate_at(raw)
    if where is not None:
        raise GenerationError(f"the answer holds a lone UTF-16 surrogate (U+{ord(raw[where]):04X}) at character "
                              f"{where:,}: it is not Unicode text", raw_text=keep_raw(raw, max_chars))
    scan = _Search()
    objects = scan.candidates(raw)
    for obj in objects:
        if any(_norm_key(k) in KEYS for k in obj):
            return obj
    if objects:
        return objects[0]
    raise GenerationError(
        scan.problem or scan.no_object_reason(raw),
        raw_text=raw,
        hint="keep --constrained on, or raise --max-new-tokens if answers are cut off",
    )


def validate_object(
    obj: dict[str, Any], raw: str, *, scenario_type: str | None = None, response_type: str | None = None,
    bounds: AnswerBounds = DEFAULT_BOUNDS,
) -> Dialogue:
    fields: dict[str, Any] = {}
    spelled: dict[str, Any] = {}
    for k, v in obj.items():
        name = _norm_key(k)
        if name in KEYS and name in fields:
            raise GenerationError(f"the answer gives {name} twice (as {_short(repr(spelled[name]))} and "
                                  f"{_short(repr(k))})", raw_text=raw)
        fields[name], spelled[name] = v, k
    missing = [k for k in KEYS if k not in fields]
    if missing:
        keys = ", ".join(_short(repr(k)) for k in list(obj)[:8]) + (f", … ({len(obj):,} keys)" if len(obj) > 8 else "")
        raise GenerationError(f"JSON answer lacks key(s) {', '.join(missing)}; has [{keys}]", raw_text=raw)
    limits = {"user_prompt": bounds.max_prompt_chars, "robot_utterance": bounds.max_utterance_chars}
    values: dict[str, str] = {}
    for key in KEYS:
        value = fields[key]
        if not isinstance(value, str):
            raise GenerationError(
                f"{key} must be a string, got {type(value).__name__} {_short(repr(value))}", raw_text=raw
            )
        problem = text_problem(value)
        if problem:
            raise GenerationError(f"{key} {problem}", raw_text=raw)
        text = one_line(value)  # one line: it becomes a tasks.parquet index string
        if not text:
            raise GenerationError(f"{key} is empty", raw_text=raw)
        limit = limits.get(key)
        if limit is not None and len(text) > limit:
            raise GenerationError(f"{key} is {len(text):,} characters; the schema allows at most {limit}", raw_text=raw)
        if text.lower() in _PLACEHOLDERS:
            raise GenerationError(f"{key} is the template placeholder {text!r}, not an answer", raw_text=raw)
        if key in ("user_prompt", "robot_utterance") and not any(c.isalpha() for c in text):
            raise GenerationError(f"{key} has no words: {_short(repr(text))}", raw_text=raw)
        values[key] = text
    values["scenario_type"] = _check_type(
        "scenario_type", values["scenario_type"], SCENARIO_TYPES, scenario_type, raw
    )
    values["response_type"] = _check_type(
        "response_type", values["response_type"], RESPONSE_TYPES, response_type, raw
    )
    return Dialogue(**values)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be a text field (``"holds …"``), or None. Whitespace of any kind is fine
    (:func:`one_line` makes each run of it one space); other control characters, lone surrogates,
    bidirectional controls and U+FEFF are not."""
    m = _BAD_CHAR.search(value)
    if m is None:
        return None
    c = m.group()
    if "\ud800" <= c <= "\udfff":
        kind = "a lone UTF-16 surrogate"
    elif c == "\ufeff":
        kind = "a byte-order mark"
    elif "\u202a" <= c:
        kind = "a bidirectional-text control"
    else:
        kind = "the control character"
    return f"holds {kind} U+{ord(c):04X} at character {m.start():,}"


def checked_result(result: GenerationResult) -> GenerationResult:
    """A backend's result held to the rules every answer keeps, whichever backend made it (the
    OpenAI and Qwen ones parse with :func:`validate_object`; a plugin may build its Dialogue itself):
    a dialogue whose text holds a character no dataset should (:func:`text_problem`) becomes a failure
    naming it, and the raw text and reason are kept so that they always encode (:func:`keep_raw`).
    Nothing hub-pgen writes from a result then holds a lone surrogate or a terminal escape."""
    error, raw = result.error, result.raw_text
    d = result.dialogue
    if d is not None:
        for key in KEYS:
            value = getattr(d, key)
            problem = text_problem(value) if isinstance(value, str) else f"is a {type(value).__name__}, not text"
            if problem:
                error, d = f"{key} {problem}", None
                raw = raw or json.dumps({k: getattr(result.dialogue, k) for k in KEYS}, ensure_ascii=True)
                break
    if d is result.dialogue and error == result.error and surrogate_at(raw or "") is None \
            and surrogate_at(error or "") is None:
        return result
    return GenerationResult(result.sample_id, d, raw_text=keep_raw(raw, max(len(raw or ""), 1)) or "",
                            error=keep_raw(error, max(len(error or ""), 1)), attempts=result.attempts)


def one_line(value: str) -> str:
    return " ".join(value.split())


def surrogate_at(text: str) -> int | None:
    """Index of the first lone surrogate in ``text`` (a code point no UTF-8 writer accepts), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None


@overload
def keep_raw(raw: str, limit: int = ...) -> str: ...
@overload
def keep_raw(raw: None, limit: int = ...) -> None: ...
@overload
def keep_raw(raw: str | None, limit: int = ...) -> str | None: ...
def keep_raw(raw: str | None, limit: int = DIALOGUE_ANSWER_CHARS) -> str | None:
    """What a journal keeps of a raw answer: all of it up to ``limit`` characters, else its first
    ``limit`` and its length; lone surrogates written as ``\\udXXX`` text, so it always encodes."""
    if raw is None:
        return None
    kept = raw if len(raw) <= limit else (
        raw[:limit] + f"\n[… cut by hub-pgen: the answer is {len(raw):,} characters; the first {limit:,} are kept]")
    if surrogate_at(kept) is not None:
        kept = kept.encode("utf-8", "backslashreplace").decode("utf-8")
    return kept


def _check_type(key: str, value: str, known: dict[str, str], assigned: str | None, raw: str) -> str:
    name = _norm_key(value)
    if name not in known:
        raise GenerationError(f"{key} {_short(repr(value))} is not a known type ({', '.join(known)})", raw_text=raw)
    if assigned is not None and name != assigned:
        raise GenerationError(f"{key} is {name!r} but this sample was assigned {assigned!r}", raw_text=raw)
    return name


_REFUSED = object()  # what _decode returns for JSON that decodes but is refused (_Problem, nesting)


class _Search:
    """One answer's search for JSON objects: linear in its length, :data:`MAX_DECODES` decodes at most.
    Remembers the first reason an object could not be used (:attr:`problem`) and whether an object was
    opened and never closed (a cut-off answer)."""

    def __init__(self) -> None:
        self.decodes = 0
        self.problem: str | None = None
        self.unclosed = False
        self.closed = False

    def candidates(self, raw: str) -> list[dict[str, Any]]:
        """JSON objects found in ``raw``, most likely first: inside code fences, then anywhere."""
        text = _THINK.sub("", raw)
        sources = [m.group(1) for m in _FENCE.finditer(text)] + [text]
        found: list[dict[str, Any]] = []
        for source in sources:
            for obj in self._objects_in(source):
                if obj not in found:
                    found.append(obj)
        return found

    def _objects_in(self, text: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        covered = -1
        for start, end in _balanced_spans(text, self):
            if start < covered:
                continue  # inside an object already decoded
            if self.decodes >= MAX_DECODES:
                break
            obj = self._decode(text[start:end])
            if isinstance(obj, dict):
                out.append(obj)
            if obj is not None:  # an object, or well-formed JSON refused as untrustworthy: not its parts either
                covered = end
        return out

    def _decode(self, span: str) -> Any:
        """The value of ``span``, else (once) of ``span`` without trailing commas; None when neither
        decodes, :data:`_REFUSED` when it decodes but cannot be trusted (:attr:`problem` says why)."""
        for attempt in range(2):
            if attempt:
                fixed = _TRAILING_COMMA.sub(r"\1", span)
                if fixed == span:
                    return None
                span = fixed
            if self.decodes >= MAX_DECODES:
                return None
            self.decodes += 1
            try:
                return _DECODER.decode(span)
            except _Problem as e:
                self.problem = self.problem or str(e)
                return _REFUSED
            except RecursionError:
                self.problem = self.problem or "the JSON is nested too deeply to be an answer"
                return _REFUSED
            except ValueError:  # json.JSONDecodeError, and int() refusals: malformed
                continue
        return None

    def no_object_reason(self, raw: str) -> str:
        if "{" not in _THINK.sub("", raw):
            return f"no JSON object in the answer: {_short(raw)!r}"
        if self.unclosed and not self.closed:
            return f"the JSON answer is cut off before its closing brace (raise --max-new-tokens?): {_short(raw)!r}"
        return f"the answer holds malformed JSON: {_short(raw)!r}"


def _balanced_spans(text: str, search: _Search) -> list[tuple[int, int]]:
    """Every balanced ``{...}`` span of ``text``, in order of its opening brace (outer before inner),
    in one pass. Quotes count only inside braces (prose may hold an apostrophe or a lone quote), and
    inside a string neither braces nor escaped quotes do. A ``{`` that never closes leaves the spans
    inside it; when it holds none (prose such as ``{maybe "this``, whose quote hides what follows, or an
    answer cut off), the scan starts again after it, :data:`MAX_RESCANS` times at most, so the whole
    stays linear (old-style, from every ``{``, it was quadratic)."""
    spans: list[tuple[int, int]] = []
    pos = text.find("{")
    rescans = 0
    while pos != -1:
        stack: list[int] = []
        in_string, skip = False, -1
        found_before = len(spans)
        for m in _SIGNIFICANT.finditer(text, pos):
            i = m.start()
            if i < skip:
                continue
            ch = text[i]
            if in_string:
                if ch == "\\":
                    skip = i + 2
                elif ch == '"':
                    in_string = False
            elif ch == "{":
                stack.append(i)
            elif not stack:
                continue  # prose between objects: quotes and stray braces mean nothing there
            elif ch == '"':
                in_string = True
            elif ch == "}":
                spans.append((stack.pop(), i + 1))
        if not stack:
            break
        search.unclosed = True
        rescans += 1
        if len(spans) > found_before or rescans > MAX_RESCANS:
            break  # the open brace held objects (they are candidates), or enough rescans
        pos = text.find("{", stack[0] + 1)  # the opening brace was prose ("{maybe") or a cut-off answer
    search.closed = search.closed or bool(spans)
    spans.sort()
    return spans


def _norm_key(name: Any) -> str:
    text = name if isinstance(name, str) else str(name)
    return _norm_short_key(text) if len(text) <= _CACHED_KEY else _normalized_key(text)


def _normalized_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


_CACHED_KEY = 64  # characters: an answer's own keys; a hostile answer's long ones are not kept
_norm_short_key = functools.lru_cache(maxsize=256)(_normalized_key)  # asked with every answer and merged record


def _short(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
