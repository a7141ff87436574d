"""Read D_labeled samples from a JSONL file (the seed's input format).

One sample a line: ``{"episode_id", "t", "images": [paths], "skill_current", "skill_history",
"task_description"}``. A line that is not such an object does not stop the run: it becomes a
recorded failure naming its line number (a string with a lone UTF-16 surrogate too, naming its
key), and the other lines go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub_pgen.data import ImageRef, Sample
from hub_pgen.errors import InputJsonlError
from hub_pgen.source.jsonfile import refuse_lone_surrogates


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str

    @property
    def sample_id(self) -> str:
        return f"L{self.line:06d}"


def require_file(path: Path) -> None:
    """An ``--input-jsonl`` that is not a file stops here (also checked before a model stack is looked for)."""
    if not Path(path).is_file():
        raise InputJsonlError("file not found", path=path, hint="give the D_labeled JSONL file with --input-jsonl")


def load_labeled_jsonl(path: Path) -> tuple[list[Sample], list[BadLine]]:
    """Samples (without assigned types yet) and the lines that could not be read."""
    path = Path(path)
    require_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputJsonlError(f"not UTF-8 text ({e})", path=path) from e
    samples: list[Sample] = []
    bad: list[BadLine] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            refuse_lone_surrogates(d, line)  # a LoneSurrogate is a ValueError: that line's failure
            samples.append(_sample(d, n))
        except json.JSONDecodeError as e:
            bad.append(BadLine(n, f"not JSON ({e.msg} at column {e.colno})"))
        except RecursionError:
            bad.append(BadLine(n, "nested too deeply to be a sample"))
        except ValueError as e:
            bad.append(BadLine(n, str(e)))
    if not samples and not bad:
        raise InputJsonlError("holds no samples", path=path,
                              hint="one JSON object per line, in the D_labeled format (see the README)")
    return samples, bad


def _sample(d: Any, line: int) -> Sample:
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, got {type(d).__name__}")
    missing = [k for k in ("episode_id", "skill_current", "images") if k not in d]
    if missing:
        raise ValueError(f"missing key(s) {missing}")
    skill = d["skill_current"]
    if not isinstance(skill, str) or not skill.strip():
        raise ValueError(f"'skill_current' must be a non-empty string, got {skill!r}")
    images = d["images"]
    if not isinstance(images, list) or not all(isinstance(p, str) and p for p in images):
        raise ValueError("'images' must be a list of file paths")
    history = d.get("skill_history") or []
    if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
        raise ValueError("'skill_history' must be a list of strings")
    task = d.get("task_description") or ""
    if not isinstance(task, str):
        raise ValueError("'task_description' must be a string")
    t = d.get("t")
    if t is not None and (isinstance(t, bool) or not isinstance(t, int)):
        raise ValueError(f"'t' must be an integer frame index, got {t!r}")
    return Sample(
        sample_id=f"L{line:06d}",
        episode_index=None,
        episode_id=str(d["episode_id"]),
        frame_index=t,
        timestamp=None,
        skill_current=skill.strip(),
        skill_history=tuple(history),
        task_description=task,
        scenario_type="",
        response_type="",
        images=tuple(ImageRef(path=p) for p in images),
    )
