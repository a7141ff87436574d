"""Turn a model's raw answer into a validated :class:`~hub_pgen.data.Dialogue`, or say why not.

Runs on every answer, constrained or not: constrained decoding guarantees the shape only when the
grammar was applied to the whole answer (a truncated answer or ``--no-constrained`` still needs
this), and unconstrained models wrap JSON in code fences, prose, ``<think>`` blocks or trailing
commas. Parsing is forgiving about the wrapping and strict about the content: four non-empty
strings, known types, and — when the schedule assigned types — exactly those types, because a
dataset whose mix drifts to the model's favourite scenario is not the mix the run reported.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hub_pgen.data import Dialogue
from hub_pgen.errors import GenerationError
from hub_pgen.plan.taxonomy import RESPONSE_TYPES, SCENARIO_TYPES

KEYS: tuple[str, ...] = ("scenario_type", "response_type", "user_prompt", "robot_utterance")
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_PLACEHOLDERS = {"...", "…", "<user prompt>", "<robot utterance>", "string"}
_SHOWN = 200  # characters of raw text quoted in an error message


def parse_dialogue(
    raw: str, *, scenario_type: str | None = None, response_type: str | None = None
) -> Dialogue:
    """The dialogue in ``raw``; ``scenario_type``/``response_type`` are the assigned types (``None``:
    any known type). Raises :class:`GenerationError` (with ``raw_text``) when there is none."""
    obj = extract_object(raw)
    return validate_object(obj, raw, scenario_type=scenario_type, response_type=response_type)


def extract_object(raw: str) -> dict[str, Any]:
    """The JSON object in ``raw``: the first one that has any of the four keys, else the first one."""
    if not isinstance(raw, str) or not raw.strip():
        raise GenerationError(
            "the model returned an empty answer",
            raw_text=raw if isinstance(raw, str) else None,
            hint="check --max-new-tokens and the prompt; see raw_text in the journal",
        )
    objects = list(_candidate_objects(raw))
    for obj in objects:
        if any(_norm_key(k) in KEYS for k in obj):
            return obj
    if objects:
        return objects[0]
    raise GenerationError(
        _no_object_reason(raw),
        raw_text=raw,
        hint="keep --constrained on, or raise --max-new-tokens if answers are cut off",
    )


def validate_object(
    obj: dict[str, Any], raw: str, *, scenario_type: str | None = None, response_type: str | None = None
) -> Dialogue:
    fields = {_norm_key(k): v for k, v in obj.items()}
    missing = [k for k in KEYS if k not in fields]
    if missing:
        raise GenerationError(
            f"JSON answer lacks key(s) {', '.join(missing)}; has {sorted(obj)}", raw_text=raw
        )
    values: dict[str, str] = {}
    for key in KEYS:
        value = fields[key]
        if not isinstance(value, str):
            raise GenerationError(
                f"{key} must be a string, got {type(value).__name__} {_short(repr(value))}", raw_text=raw
            )
        text = " ".join(value.split())  # one line: it becomes a tasks.parquet index string
        if not text:
            raise GenerationError(f"{key} is empty", raw_text=raw)
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


def _check_type(key: str, value: str, known: dict[str, str], assigned: str | None, raw: str) -> str:
    name = _norm_key(value)
    if name not in known:
        raise GenerationError(f"{key} {value!r} is not a known type ({', '.join(known)})", raw_text=raw)
    if assigned is not None and name != assigned:
        raise GenerationError(f"{key} is {name!r} but this sample was assigned {assigned!r}", raw_text=raw)
    return name


def _candidate_objects(raw: str) -> list[dict[str, Any]]:
    """JSON objects found in ``raw``, most likely first: inside code fences, then anywhere."""
    text = _THINK.sub("", raw)
    sources = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    found: list[dict[str, Any]] = []
    for source in sources:
        for obj in _objects_in(source):
            if obj not in found:
                found.append(obj)
    return found


def _objects_in(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    pos = text.find("{")
    while pos != -1:
        obj, end = _decode_at(decoder, text, pos)
        if isinstance(obj, dict):
            out.append(obj)
            pos = text.find("{", end)
        else:
            pos = text.find("{", pos + 1)
    return out


def _decode_at(decoder: json.JSONDecoder, text: str, pos: int) -> tuple[Any, int]:
    """Decode a value starting at ``pos``; on failure retry with trailing commas removed from the
    balanced ``{...}`` span there. Returns ``(None, pos)`` when neither works."""
    try:
        return decoder.raw_decode(text, pos)
    except json.JSONDecodeError:
        pass
    end = _balanced_end(text, pos)
    if end is None:
        return None, pos
    span = _TRAILING_COMMA.sub(r"\1", text[pos:end])
    try:
        obj = json.loads(span)
    except json.JSONDecodeError:
        return None, pos
    return obj, end


def _balanced_end(text: str, pos: int) -> int | None:
    """Index after the ``}`` that closes the ``{`` at ``pos`` (string-aware), or None if it never closes."""
    depth, in_string, escaped = 0, False, False
    for i in range(pos, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _no_object_reason(raw: str) -> str:
    text = _THINK.sub("", raw)
    start = text.find("{")
    if start == -1:
        return f"no JSON object in the answer: {_short(raw)!r}"
    if _balanced_end(text, start) is None:
        return (
            f"the JSON answer is cut off before its closing brace (raise --max-new-tokens?): {_short(raw)!r}"
        )
    return f"the answer holds malformed JSON: {_short(raw)!r}"


def _norm_key(name: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _short(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
