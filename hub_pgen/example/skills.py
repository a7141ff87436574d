"""The example's ``meta/skills.json``: a pick-and-place story, with the edge cases a real annotation has.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from hub_pgen.example.spec import COARSE_DESCRIPTION, SKILL_NAMES, ExampleSpec, episode_task

logger = logging.getLogger(__name__)



def _boundaries(spec: ExampleSpec, episode_index: int, length: int, n_skills: int) -> list[int]:
    """First frame of each skill, plus ``length``: near even fractions, jittered per episode
    (seeded), at least two frames a skill."""
    rng = np.random.default_rng([spec.seed, episode_index, 7])
    base = np.array([0.0, 0.2, 0.45, 0.65, 0.85, 1.0][: n_skills] + [1.0])
    fracs = base + np.concatenate([[0.0], rng.uniform(-0.03, 0.03, n_skills - 1), [0.0]])
    b = [int(round(f * length)) for f in fracs]
    b[0], b[-1] = 0, length
    for i in range(1, n_skills):
        b[i] = max(b[i], b[i - 1] + 2)
    for i in range(n_skills - 1, 0, -1):
        b[i] = min(b[i], b[i + 1] - 2)
    return b


def _t(frame_boundary: float, fps: int) -> float:
    """Skill boundaries fall half-way between two frames, so no frame is within rounding of one."""
    return round(max(0.0, frame_boundary - 0.5) / fps, 4)


def _episode_skills(spec: ExampleSpec, e: int, length: int, case: str) -> dict[str, Any]:
    n_skills = 4 if case == "regular" and e % 4 == 3 else len(SKILL_NAMES)
    b = _boundaries(spec, e, length, n_skills)
    skills: list[dict[str, Any]] = [
        {"name": SKILL_NAMES[i], "start": _t(b[i], spec.fps), "end": _t(b[i + 1], spec.fps)} for i in range(n_skills)]
    skills[0]["start"] = 0.0
    skills[-1]["end"] = round(length / spec.fps, 4)
    if case == "gap":  # "pick up brick" stops early: its last frames belong to no skill
        gap = max(1, (b[2] - b[1]) // 3)
        skills[1]["end"] = _t(b[2] - gap, spec.fps)
    elif case == "past_end":
        skills[-1]["end"] = round(length / spec.fps + 0.5, 4)
    elif case == "rounding_overlap":  # starts 0.4 ms before the previous skill ends
        skills[2]["start"] = round(skills[1]["end"] - 0.0004, 4)
    entry: dict[str, Any] = {"episode_index": e, "description": episode_task(e), "skills": skills}
    if case == "no_description":
        del entry["description"]
    return entry


_EDGE_CASES = ("regular", "gap", "past_end", "rounding_overlap", "no_description")


def example_skills(spec: ExampleSpec, lengths: Sequence[int]) -> dict[str, Any]:
    """The ``meta/skills.json`` content (``{}`` for ``skills="none"``, where none is written).

    ``"regular"``: every episode, contiguous skills, 5 of them (4 — no "retract" — when
    ``episode % 4 == 3``), boundaries half-way between frames. ``"edge_cases"``: episode ``e``
    gets case ``e % 5`` of

    0. regular (5 contiguous skills);
    1. a gap: "pick up brick" ends a third of its length early, so those frames have no skill;
    2. the last skill ends 0.5 s past the episode's end;
    3. "move to box" starts 0.4 ms (< 1e-3 s) before "pick up brick" ends — a rounding overlap
       that holds no frame;
    4. no ``description`` key: the episode falls back to ``coarse_description`` (and its own task
       is the *other* task string, so a fallback to the task would show);

    and the last episode (when there are 2+) is absent from the file. With the default 6 episodes
    each case occurs exactly once.
    """
    if spec.skills == "none":
        return {}
    episodes: dict[str, Any] = {}
    for e, length in enumerate(lengths):
        if spec.skills == "edge_cases":
            if e == len(lengths) - 1 and len(lengths) > 1:
                continue
            case = _EDGE_CASES[e % len(_EDGE_CASES)]
        else:
            case = "regular"
        episodes[str(e)] = _episode_skills(spec, e, length, case)
    return {
        "coarse_description": COARSE_DESCRIPTION,
        "skill_to_task_index": {name: i for i, name in enumerate(SKILL_NAMES)},
        "episodes": episodes,
    }
