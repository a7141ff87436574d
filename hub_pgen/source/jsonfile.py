"""Strict reading of the dataset's JSON metadata (``info.json``, ``stats.json``, ``skills.json``).

Python's ``json`` accepts things that later turn into silent corruption or internal errors far from
their cause: a key given twice (the last silently wins — two annotations of one episode), ``NaN`` and
``Infinity`` (an ``fps`` of NaN), 400-digit integers (overflow wherever they reach numpy), nesting
100,000 deep (RecursionError), a lone UTF-16 surrogate (``"\\ud800"``: a string no UTF-8 file,
parquet column or terminal can hold, which crashed the first write that met it), and a UTF-8
byte-order mark (reported as "not valid JSON"). This reader refuses the first five with a
:class:`JsonProblem` that says what and where (the key, as ``episodes.0.skills[1].name``), and reads
the BOM. A dataset's text is refused rather than repaired: a skill name quietly changed would no
longer be the one its ``skill_to_task_index`` or its owner names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

MAX_INT_DIGITS = 19  # int64 holds 9_223_372_036_854_775_807 (19 digits)


class JsonProblem(ValueError):
    """The text is JSON-shaped but cannot be trusted; the message says what and (roughly) where."""


class LoneSurrogate(JsonProblem):
    """A string holds half of a UTF-16 surrogate pair (``"\\ud800"``)."""

    hint = ("write the text as UTF-8 (or as a whole \\uXXXX\\uXXXX pair): a lone \\ud800-\\udfff escape is "
            "usually text cut in the middle of a character")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonProblem(f"key {key!r} appears twice in one object (JSON keeps only the last)")
        out[key] = value
    return out


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonProblem(f"integer {text[:24]}… has {len(text.lstrip('-'))} digits; nothing here needs more "
                          f"than {MAX_INT_DIGITS}")
    return int(text)


def _constant(name: str) -> Any:
    raise JsonProblem(f"{name} is not a number (JSON has no NaN or Infinity)")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def lone_surrogate(value: Any, where: str = "") -> tuple[str, str] | None:
    """The first string (key or value) in ``value`` holding a lone UTF-16 surrogate: its key path
    (``episodes.0.skills[1].name``; ``""`` for the value itself) and the surrogate, else None."""
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, str):
            bad = next((c for c in v if "\ud800" <= c <= "\udfff"), None)
            if bad is not None:
                return path, bad
        elif isinstance(v, dict):
            for k in reversed(list(v)):
                sub = f"{path}.{k}" if path else str(k)
                bad = next((c for c in str(k) if "\ud800" <= c <= "\udfff"), None)
                if bad is not None:
                    return f"{path or '(top level)'}: a key", bad
                stack.append((sub, v[k]))
        elif isinstance(v, list):
            stack += [(f"{path}[{i}]", item) for i, item in reversed(list(enumerate(v)))]
    return None


def refuse_lone_surrogates(value: Any, text: str | None = None) -> None:
    """Raise :class:`JsonProblem` naming the key whose string holds a lone surrogate (``text``: the JSON
    it was read from; without a ``\\udXXX`` escape in it there can be none, and nothing is walked)."""
    if text is not None and not _SURROGATE_ESCAPE.search(text):
        return
    found = lone_surrogate(value)
    if found is not None:
        key, char = found
        raise LoneSurrogate(f"key {key or '(the value)'!r} holds a lone UTF-16 surrogate (\\u{ord(char):04x}, half "
                          "of a pair without its other half), which is not text: no UTF-8 file can hold it")


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys, NaN/Infinity, oversized integers, absurd nesting and
    lone surrogates. Raises :class:`json.JSONDecodeError` for malformed text and :class:`JsonProblem`
    for the rest."""
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_int=_int, parse_constant=_constant)
    except RecursionError:
        raise JsonProblem("nested too deeply to be metadata") from None
    refuse_lone_surrogates(value, text)
    return value


def read_strict(path: Path) -> Any:
    """The file's JSON value (UTF-8, with or without a byte-order mark)."""
    return loads_strict(Path(path).read_bytes().decode("utf-8-sig"))
