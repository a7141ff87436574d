"""Independent re-statements of the output contract (SPEC), for tests to check the code against.

Written from the spec, not from hub_pgen's planner, so a planner bug cannot hide behind itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq

EPS = 1e-4


def expected_skills(skills_json: dict, episode_index: int, timestamps) -> list[str | None]:
    """Skill of each frame: start <= ts < end (1e-4 s allowance); later skill wins; None outside."""
    ep = skills_json["episodes"].get(str(episode_index))
    out: list[str | None] = []
    for ts in timestamps:
        owner = None
        if ep is not None:
            for s in sorted(ep["skills"], key=lambda s: s["start"]):
                if s["start"] - EPS <= ts < s["end"] - EPS:
                    owner = s["name"]
        out.append(owner)
    return out


def expected_segments(skills_json: dict, root: Path) -> int:
    """Number of maximal runs of frames with the same skill, over the whole dataset."""
    n = 0
    for path in sorted((root / "data").glob("chunk-*/file-*.parquet")):
        t = pq.read_table(path, columns=["episode_index", "frame_index", "timestamp"]).to_pandas()
        for e, g in t.groupby("episode_index"):
            g = g.sort_values("frame_index")
            skills = expected_skills(skills_json, int(e), g["timestamp"].astype(float).tolist())
            prev = object()
            for s in skills:
                if s is not None and s != prev:
                    n += 1
                prev = s
    return n


def tree_hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def load_skills_json(root: Path) -> dict:
    return json.loads((Path(root) / "meta" / "skills.json").read_text())


def language_rows(table, column: str) -> list[list[dict]]:
    """Each frame's rows of a language column as plain Python: a per-frame oracle, independent of
    hub_pgen.language.read_file's vectorised reading."""
    from hub_pgen.language import normalize_row

    return [[normalize_row(r, column) for r in (frame or [])] for frame in table.column(column).to_pylist()]


def persistent_by_episode(table) -> dict[int, list[dict]]:
    """Each episode's language_persistent rows, asserting they are the same on all its frames."""
    out: dict[int, list[dict]] = {}
    for e, rows in zip(table.column("episode_index").to_pylist(), language_rows(table, "language_persistent")):
        assert out.setdefault(e, rows) == rows, f"episode {e}: language_persistent differs between frames"
    return out
