"""lerobot's language columns (lerobot >= 0.6.0): names, Arrow types, rows and their invariants.

``lerobot/datasets/language.py`` (lerobot 0.6.1) is the reference; nothing here needs lerobot.
Two per-frame columns of ``data/*/*.parquet``:

- ``language_persistent``: the same list on every frame of an episode; a row ``{role, content,
  style, timestamp, camera, tool_calls}`` is active from its ``timestamp`` on (styles ``subtask``,
  ``plan``, ``memory``, ``motion``, ``task_aug``).
- ``language_events``: rows ``{role, content, style, camera, tool_calls}`` on the one frame where
  the event happens (styles ``interjection``, ``vqa``, ``trace``, or none for a tool call such as
  ``say``).

Timestamps are the data parquet's own float32 values: lerobot matches events to frames by exact
timestamp. The source checks, the writer and ``validate`` all read rows through :func:`read_file`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PERSISTENT = "language_persistent"
EVENTS = "language_events"
COLUMNS = (PERSISTENT, EVENTS)
FEATURE_SPEC = {"dtype": "language", "shape": [1], "names": None}
PERSISTENT_FIELDS = ("role", "content", "style", "timestamp", "camera", "tool_calls")
EVENT_FIELDS = ("role", "content", "style", "camera", "tool_calls")
PERSISTENT_STYLES = frozenset({"subtask", "plan", "memory", "motion", "task_aug"})
EVENT_ONLY_STYLES = frozenset({"interjection", "vqa", "trace"})
VIEW_DEPENDENT_STYLES = frozenset({"vqa", "trace"})

SAY_TOOL_SCHEMA: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "say",
        "description": "Speak a short utterance to the user via the TTS executor.",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string", "description": "The verbatim text to speak."}},
            "required": ["text"],
        },
    },
}

Row = dict[str, Any]


# --- Arrow and datasets types -------------------------------------------------------------------


def _json_type() -> pa.DataType:
    return pa.json_() if hasattr(pa, "json_") else pa.string()  # pyarrow < 19 has no JSON type


def _row_fields(with_timestamp: bool, tool_type: pa.DataType) -> list[pa.Field]:
    fields = [pa.field("role", pa.string(), nullable=False), pa.field("content", pa.string()),
              pa.field("style", pa.string())]
    if with_timestamp:
        fields.append(pa.field("timestamp", pa.float32(), nullable=False))
    return fields + [pa.field("camera", pa.string()), pa.field("tool_calls", pa.list_(tool_type))]


def arrow_type(column: str) -> pa.ListType:
    """lerobot's canonical type of a language column."""
    return pa.list_(pa.struct(_row_fields(column == PERSISTENT, _json_type())))


def text_type(column: str) -> pa.ListType:
    """The same shape with ``tool_calls`` as JSON text: what Python lists can be built into."""
    return pa.list_(pa.struct(_row_fields(column == PERSISTENT, pa.string())))


def hf_feature(column: str) -> dict[str, Any]:
    """The column's ``datasets`` feature as it appears in the parquet's ``huggingface`` metadata."""
    row: dict[str, Any] = {k: {"dtype": "string", "_type": "Value"} for k in ("role", "content", "style")}
    if column == PERSISTENT:
        row["timestamp"] = {"dtype": "float32", "_type": "Value"}
    row["camera"] = {"dtype": "string", "_type": "Value"}
    row["tool_calls"] = {"feature": {"_type": "Json"}, "_type": "List"}
    return {"feature": row, "_type": "List"}


# --- rows ---------------------------------------------------------------------------------------


def subtask_row(skill: str, timestamp: float) -> Row:
    return {"role": "assistant", "content": skill, "style": "subtask", "timestamp": float(np.float32(timestamp)),
            "camera": None, "tool_calls": None}


def dialogue_rows(user_prompt: str, robot_utterance: str) -> list[Row]:
    """The user's interjection and the robot's ``say`` call, as lerobot's interjections module writes them."""
    return [
        {"role": "user", "content": user_prompt, "style": "interjection", "camera": None, "tool_calls": None},
        {"role": "assistant", "content": None, "style": None, "camera": None,
         "tool_calls": [{"type": "function", "function": {"name": "say", "arguments": {"text": robot_utterance}}}]},
    ]


def normalize_row(value: Any, column: str) -> Row:
    """A row read from a parquet (any of the types lerobot's writers produce) as plain Python, with
    ``tool_calls`` decoded from JSON where it was stored as JSON text."""
    if not isinstance(value, dict):
        raise ValueError(f"a {column} row must be a struct, got {type(value).__name__}")
    fields = PERSISTENT_FIELDS if column == PERSISTENT else EVENT_FIELDS
    row = {k: value.get(k) for k in fields}
    if column == PERSISTENT and row["timestamp"] is not None:
        row["timestamp"] = float(np.float32(row["timestamp"]))
    calls = row["tool_calls"]
    if calls is not None:
        row["tool_calls"] = [json.loads(c) if isinstance(c, str) else c for c in calls]
    return row


def _normalized(value: Any, seen: dict[Any, Row]) -> Row:
    """:func:`normalize_row` of an event row, the same object for rows of the same values (read-only:
    the frames of one file share it)."""
    if not isinstance(value, dict):
        return normalize_row(value, EVENTS)
    calls = value.get("tool_calls")
    try:
        key = tuple(value.get(k) for k in EVENT_FIELDS if k != "tool_calls") + (
            tuple(calls) if isinstance(calls, list) else calls,)
        row = seen.get(key)
    except TypeError:  # a value that is not hashable (tool_calls as structs): read it alone
        return normalize_row(value, EVENTS)
    if row is None:
        row = seen[key] = normalize_row(value, EVENTS)
    return row


def is_say(row: Row) -> bool:
    return any(isinstance(c, dict) and isinstance(c.get("function"), dict) and c["function"].get("name") == "say"
               for c in row.get("tool_calls") or [])


def persistent_key(row: Row) -> tuple:
    return (row["timestamp"], row.get("style") or "", row.get("role") or "")


def event_key(row: Row) -> tuple:
    return (row.get("style") or "", row.get("role") or "", row.get("camera") or "")


def to_arrow(rows: Sequence[Sequence[Row]], column: str) -> pa.Array:
    """One list of rows per frame → the column in lerobot's canonical type."""
    return as_canonical(to_text_arrow(rows, column), column)


def to_text_arrow(rows: Sequence[Sequence[Row]], column: str) -> pa.Array:
    """One list of rows per frame → the column in :func:`text_type` (``tool_calls`` as JSON text)."""
    return pa.array([[_encode(r) for r in frame] for frame in rows], type=text_type(column))


def as_canonical(text: pa.Array, column: str) -> pa.Array:
    """A column in :func:`text_type` as lerobot's canonical type (:func:`arrow_type`)."""
    return text.cast(arrow_type(column))


def _encode(row: Row) -> Row:
    calls = row.get("tool_calls")
    return {**row, "tool_calls": None if calls is None else [_json(c) for c in calls]}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def dialogue_events(user_prompts: Sequence[str], robot_utterances: Sequence[str]) -> pa.Array:
    """One frame's events each, in :func:`text_type`: the rows :func:`dialogue_rows` gives for a prompt and
    its utterance, in the order a frame keeps them (``event_key``: the ``say`` call, then the
    interjection) — what :func:`to_text_arrow` of those rows gives, made column by column (a run's
    data file holds thousands: no dict a row)."""
    n = len(user_prompts)
    if len(robot_utterances) != n:
        raise ValueError(f"{n} prompts for {len(robot_utterances)} utterances")
    fields = list(text_type(EVENTS).value_type)
    pair = np.arange(2 * n) % 2  # 0: the say call, 1: the interjection
    which = pa.array(pair)
    role = pa.array(["assistant", "user"]).take(which)
    content = pa.array([p for u in user_prompts for p in (None, u)], type=pa.string())
    style = pa.array([None, "interjection"], type=pa.string()).take(which)
    calls = [_json({"type": "function", "function": {"name": "say", "arguments": {"text": t}}})
             for t in robot_utterances]
    offsets = np.repeat(np.arange(n + 1, dtype=np.int32), 2)[1:]  # one call a say row, none (null) after it
    tool_calls = pa.ListArray.from_arrays(pa.array(offsets), pa.array(calls, type=pa.string()), mask=pa.array(pair == 1))
    struct = pa.StructArray.from_arrays([role, content, style, pa.nulls(2 * n, pa.string()), tool_calls], fields=fields)
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), struct,
                                    type=text_type(EVENTS))


# --- reading and checking ----------------------------------------------------------------------


class LanguageProblem(ValueError):
    """A language column that lerobot would refuse or misread (the message names the frame)."""


@dataclass(frozen=True)
class FileLanguage:
    """One data file's language rows, read without visiting every frame in Python: the persistent
    rows once per episode (checked identical on all its frames, vectorised), the events of the
    frames that have any."""

    persistent: dict[int, list[Row]]  # episode → its rows ({} when the file has no such column)
    events: dict[int, list[Row]]  # row position in the file → its rows, only frames with events


@dataclass(frozen=True)
class SourceLanguage:
    """What a source's own language columns hold that the run must respect: the frames that already
    carry a dialogue (an interjection or a ``say`` call) and each episode's ``subtask`` rows."""

    dialogue_frames: frozenset[tuple[int, int]] = frozenset()  # (episode, frame_index)
    subtasks: dict[int, tuple[tuple[float, str], ...]] = field(default_factory=dict)  # episode → (timestamp, text)


def is_dialogue(row: Row) -> bool:
    return row.get("style") == "interjection" or is_say(row)


def read_file(table: pa.Table) -> FileLanguage:
    """``table`` needs ``episode_index`` and ``frame_index`` and may hold either language column.
    Raises :class:`LanguageProblem` naming the episode and frames at fault."""
    episodes = table.column("episode_index").to_numpy()
    uniq, first, inverse = np.unique(episodes, return_index=True, return_inverse=True)
    persistent: dict[int, list[Row]] = {}
    events: dict[int, list[Row]] = {}
    has_p, has_e = PERSISTENT in table.column_names, EVENTS in table.column_names
    try:
        if has_p:
            col = table.column(PERSISTENT).combine_chunks()
            ref = first[inverse]
            same = _same(col, np.arange(len(col)), ref)
            if not same.all():
                i = int(np.flatnonzero(~same)[0])
                frames = table.column("frame_index").to_numpy()
                raise LanguageProblem(
                    f"episode {int(episodes[i])}'s language_persistent differs between frames "
                    f"{int(frames[ref[i]])} and {int(frames[i])} (lerobot requires the same rows on every frame)")
            heads = col.take(pa.array(first)).to_pylist()
            persistent = {int(e): [normalize_row(r, PERSISTENT) for r in (rows or [])] for e, rows in zip(uniq, heads)}
        if has_e:
            col = table.column(EVENTS).combine_chunks()
            lengths = np.asarray(pc.fill_null(pc.list_value_length(col), 0))
            at = np.flatnonzero(lengths > 0)
            rows = col.take(pa.array(at, type=pa.int64())).to_pylist()
            seen: dict[Any, Row] = {}  # a row met again is the one already read (dialogues repeat)
            events = {int(i): [_normalized(r, seen) for r in frame] for i, frame in zip(at, rows)}
    except LanguageProblem:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, pa.ArrowException) as e:  # JSONDecodeError: ValueError
        raise LanguageProblem(f"the language columns cannot be read as lerobot language rows ({e})") from None
    return FileLanguage(persistent, events)


def _same(a: pa.Array, pos: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``a[pos] == a[ref]`` element by element, for nested types (null equals null): vectorised."""
    if isinstance(a.type, pa.BaseExtensionType):  # the JSON type: compare its text
        a = a.storage
    t = a.type
    valid = np.asarray(a.is_valid())
    same = valid[pos] == valid[ref]
    both = same & valid[pos]
    if pa.types.is_null(t) or not both.any():
        return same
    if pa.types.is_struct(t):
        for k in range(t.num_fields):
            field = a.field(k)  # the struct's own slice applied
            same &= _same(field, pos, ref) | ~both
        return same
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = np.asarray(pc.fill_null(pc.list_value_length(a), 0))
        offsets = np.asarray(a.offsets)
        same &= lengths[pos] == lengths[ref]
        sel = np.flatnonzero(same & both & (lengths[pos] > 0))
        if len(sel):
            p, r = pos[sel], ref[sel]
            n = lengths[p]
            pair = np.repeat(np.arange(len(sel)), n)
            k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
            child = _same(a.values, offsets[p][pair] + k, offsets[r][pair] + k)
            bad = np.bincount(pair[~child], minlength=len(sel)) > 0
            same[sel[bad]] = False
        return same
    eq = np.asarray(pc.fill_null(pc.equal(a.take(pa.array(pos)), a.take(pa.array(ref))), False))
    return same & (eq | ~both)


def row_problems(row: Row, column: str) -> list[str]:
    """The invariants lerobot's writer enforces on one row (an empty list when it is fine)."""
    found: list[str] = []
    style = row.get("style")
    if not isinstance(row.get("role"), str):
        found.append(f"role must be a string, got {row.get('role')!r}")
    if column == PERSISTENT:
        if style not in PERSISTENT_STYLES:
            found.append(f"style {style!r} does not belong in {PERSISTENT} (one of {sorted(PERSISTENT_STYLES)})")
        if row.get("timestamp") is None:
            found.append("a persistent row needs a timestamp")
    elif style is not None and style not in EVENT_ONLY_STYLES:
        found.append(f"style {style!r} does not belong in {EVENTS} (none, or one of {sorted(EVENT_ONLY_STYLES)})")
    if style in VIEW_DEPENDENT_STYLES:
        if not row.get("camera"):
            found.append(f"style {style!r} needs a camera")
    elif row.get("camera") is not None:
        found.append(f"style {style!r} must have camera null, got {row.get('camera')!r}")
    if row.get("content") is None and row.get("tool_calls") is None:
        found.append("a row needs content or tool_calls")
    if style is None and column == EVENTS:
        calls = row.get("tool_calls") or []
        if not calls:
            found.append("a row without a style must carry tool_calls")
        elif is_say(row):
            fn = calls[0].get("function") if isinstance(calls[0], dict) else None
            args = fn.get("arguments") if isinstance(fn, dict) else None
            if row.get("role") != "assistant" or row.get("content") is not None:
                found.append("a say call must be role assistant with content null")
            if not isinstance(args, dict) or not isinstance(args.get("text"), str):
                found.append("a say call must carry arguments.text (a string)")
    return found


def frame_problems(events: Sequence[Row]) -> list[str]:
    """One frame's events: every interjection has its say call (lerobot's pairing check)."""
    if any(r.get("style") == "interjection" for r in events) and not any(is_say(r) for r in events):
        return ["an interjection without a say call at the same frame"]
    return []
