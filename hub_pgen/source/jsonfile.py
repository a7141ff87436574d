"""Strict reading of the dataset's JSON metadata (``info.json``, ``stats.json``, ``skills.json``).

Python's ``json`` accepts things that later turn into silent corruption or internal errors far from
their cause: a key given twice (the last silently wins — two annotations of one episode), ``NaN`` and
``Infinity`` (an ``fps`` of NaN), 400-digit integers (overflow wherever they reach numpy), nesting
100,000 deep (RecursionError), and a UTF-8 byte-order mark (reported as "not valid JSON"). This
reader refuses the first four with a :class:`JsonProblem` that says what and where, and reads the BOM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_INT_DIGITS = 19  # int64 holds 9_223_372_036_854_775_807 (19 digits)


class JsonProblem(ValueError):
    """The text is JSON-shaped but cannot be trusted; the message says what and (roughly) where."""


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


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys, NaN/Infinity, oversized integers and absurd nesting.
    Raises :class:`json.JSONDecodeError` for malformed text and :class:`JsonProblem` for the rest."""
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_int=_int, parse_constant=_constant)
    except RecursionError:
        raise JsonProblem("nested too deeply to be metadata") from None


def read_strict(path: Path) -> Any:
    """The file's JSON value (UTF-8, with or without a byte-order mark)."""
    return loads_strict(Path(path).read_bytes().decode("utf-8-sig"))
