"""Reading a result's ``meta/hub_pgen.json`` (its provenance) when the folder may come from anyone.

``hub-pgen report``, ``push``, ``--retry-failed`` and the card rewrite read the provenance of a folder
someone may have handed over. Each of them used to trust its shape (``prov["counts"]["ok"]`` an
int, ``prov["tool"]`` an object): a ``null`` there was an internal error, a 10^18 a page of noise.
:func:`read_provenance` reads it strictly (hub_pgen.source.jsonfile) and checks every key a reader
uses against :data:`SHAPE` — the type hub-pgen writes, every count bounded — and says which key is
wrong. Keys it does not know are left alone (a newer hub-pgen may add some); keys a reader needs and
an older hub-pgen did not write stay absent, and readers default them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hub_pgen import layout
from hub_pgen.errors import HubPgenError, SourceError
from hub_pgen.source.jsonfile import JsonProblem, loads_strict

MAX_BYTES = 64 << 20  # real ones are a few KiB (a shard's lists its source's files)
MAX_COUNT = 10**12  # samples, frames, episodes: no dataset has more
MAX_LIST = 1_000_000
MAX_TEXT = 1 << 20

# A spec: a type name ("text", "count", "number", "bool", "any"), "?" + a spec (may be null), a dict
# (an object whose known keys have these specs), ["list", spec] or ["map", spec] (text keys).
_OPT_TEXT = "?text"
SHAPE: dict[str, Any] = {
    "tool": {"name": "text", "version": "text"},
    "created_at": "text",
    "fingerprint": "text",
    "plan_fingerprint": "text",
    "identity": "object",
    "source": {"repo_id": _OPT_TEXT, "sha": _OPT_TEXT, "requested_revision": _OPT_TEXT, "root": _OPT_TEXT},
    "generation": {"backend": _OPT_TEXT, "model": _OPT_TEXT, "model_source": _OPT_TEXT,
                   "backend_details": "?object", "prompt_template": _OPT_TEXT, "sampling": _OPT_TEXT,
                   "sample_interval": "?number", "cameras": ["list", "text"]},
    "parameters": "object",
    "counts": ["map", "count"],
    "mix": ["map", ["map", "count"]],
    "notices": ["list", "text"],
    "quality": {"samples": "count", "distinct_dialogues": "count", "distinct_1_prompts": "number",
                "distinct_2_prompts": "number", "distinct_1_replies": "number", "distinct_2_replies": "number",
                "prompt_chars": ["map", "number"], "reply_chars": ["map", "number"], "degenerate": "count",
                "skill_copied": "count", "near_duplicates": "count", "refusals": "count"},
    "filtered": {"count": "count", "by_reason": ["map", "count"]},
    "skills": {"source": _OPT_TEXT, "episodes_with_skills": "?count", "skills": "?count", "requested": _OPT_TEXT},
    "format": "text",
    "language": {"subtask_rows": "count", "dialogues": "count", "kept_source_rows": ["map", "count"],
                 "already_there": "count", "episodes_with_source_subtasks": ["list", "count"],
                 "dialogues_not_added": ["list", "any"]},
    "verify": "?object",
    "shard": {"index": "count", "count": "count", "episodes": ["list", "count"]},
    "merged_from": {"shards": "count"},
    "retried": ["list", "object"],
    "source_files": ["map", "text"],
}


def read_provenance(root: Path) -> dict[str, Any]:
    """``root/meta/hub_pgen.json``, checked against :data:`SHAPE`; a :class:`SourceError` (exit 3) naming
    the key otherwise."""
    path = Path(root) / layout.PROVENANCE_PATH
    prov = read_json(path, limit=MAX_BYTES, error=SourceError, hint=_HINT)
    problem = _check(prov, SHAPE, "")
    if problem:
        raise SourceError(f"{path}: {problem}", path=path, hint=_HINT)
    return prov


def read_json(path: Path, *, limit: int, error: type[HubPgenError], hint: str) -> Any:
    """A provenance-like JSON file hub-pgen wrote (this result's, a shard's), read strictly: at most
    ``limit`` bytes, UTF-8, one JSON value with no duplicate keys, NaN or absurd numbers; an ``error``
    naming the file otherwise."""
    def fail(message: str) -> HubPgenError:
        return error(message, hint=hint, **({"path": path} if issubclass(error, SourceError) else {}))

    try:
        size = path.stat().st_size
        if size > limit:
            raise fail(f"{path}: {size:,} bytes; a provenance is a few KiB (at most {limit:,})")
        return loads_strict(path.read_bytes().decode("utf-8-sig"))
    except OSError as e:
        raise fail(f"{path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise fail(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (json.JSONDecodeError, JsonProblem) as e:
        raise fail(f"{path} is not readable JSON ({e})") from None


_HINT = ("this folder's meta/hub_pgen.json is not as hub-pgen writes it (edited, or damaged): rerun the run that "
         "made it (the same command rewrites it from its journal), or get the folder again")


def _check(value: Any, spec: Any, key: str) -> str | None:
    """The first problem of ``value`` against ``spec``, as "KEY must be …, got …"; None when it fits."""
    where = key or "the file"
    if isinstance(spec, str) and spec.startswith("?"):
        return None if value is None else _check(value, spec[1:], key)
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{where} must be an object, got {_kind(value)}"
        for k, sub in spec.items():
            if k in value:
                problem = _check(value[k], sub, f"{key}.{k}" if key else k)
                if problem:
                    return problem
        return None
    if isinstance(spec, list):
        kind, sub = spec
        if kind == "list":
            if not isinstance(value, list):
                return f"{where} must be a list, got {_kind(value)}"
            if len(value) > MAX_LIST:
                return f"{where} lists {len(value):,} items (at most {MAX_LIST:,})"
            for n, item in enumerate(value):
                problem = _check(item, sub, f"{key}[{n}]")
                if problem:
                    return problem
            return None
        if not isinstance(value, dict):
            return f"{where} must be an object, got {_kind(value)}"
        for k, item in value.items():
            problem = _check(item, sub, f"{key}.{k}")
            if problem:
                return problem
        return None
    if spec == "text":
        if not isinstance(value, str):
            return f"{where} must be text, got {_kind(value)}"
        if len(value) > MAX_TEXT:
            return f"{where} is {len(value):,} characters (at most {MAX_TEXT:,})"
        return None
    if spec == "count":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
            return f"{where} must be a whole number from 0 to {MAX_COUNT:,}, got {_kind(value)}"
        return None
    if spec == "number":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or abs(value) > 1e15:
            return f"{where} must be a number, got {_kind(value)}"
        return None
    if spec == "object":
        return None if isinstance(value, dict) else f"{where} must be an object, got {_kind(value)}"
    if spec == "bool":
        return None if isinstance(value, bool) else f"{where} must be true or false, got {_kind(value)}"
    return None  # "any"


def _kind(value: Any) -> str:
    """The value as JSON, shortened: what the message shows of it."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."
