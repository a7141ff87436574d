"""Read and check ``meta/skills.json``, the skill annotation every sample is built from.

Defined behaviour for the imperfect annotations real datasets carry (SPEC asks for it, never a
silent guess):

- end <= start, negative or non-finite times, a non-string name: an error naming episode and skill.
- an episode key that is not in the dataset: an error (the annotation belongs to another dataset).
- skills out of order: sorted by start (a warning).
- overlap with the previous skill: the later skill owns the overlapped frames (a warning when the
  overlap is more than rounding, i.e. > 1e-3 s).
- a skill ending past the episode: its frames stop at the episode's last frame (a warning).
- a skill starting at or past the episode's end: it has no frames and gets no sample (a warning).
- gaps between skills, and episodes absent from skills.json: those frames get -1.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from hub_pgen.data import EpisodeSkills, Skill, SkillsFile
from hub_pgen.errors import SkillsError
from hub_pgen.notices import Notices
from hub_pgen.plan.planner import format_episode_list
from hub_pgen.source.jsonfile import JsonProblem, read_strict

logger = logging.getLogger(__name__)

ROUNDING_OVERLAP_S = 1e-3


def load_skills(path: Path, *, known_episodes: set[int] | None = None) -> SkillsFile:
    """Parse and validate ``skills.json``. ``known_episodes`` are the dataset's episode indices."""
    path = Path(path)
    if not path.is_file():
        raise SkillsError(
            "file not found: hub-pgen needs the skill annotation of each episode",
            path=path,
            hint="annotate the dataset's skills first: meta/skills.json with, per episode, skills "
                 "[{name, start, end}] in seconds from the episode's start (format: README, 'meta/skills.json'; "
                 "hub-pgen --help shows an example), or give --input-jsonl",
        )
    try:
        raw = read_strict(path)
    except JsonProblem as e:
        raise SkillsError(str(e), path=path,
                          hint=getattr(e, "hint", None)
                          or "fix meta/skills.json: each episode once, times as plain numbers in seconds") from e
    except json.JSONDecodeError as e:
        raise SkillsError(f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})", path=path,
                          hint="the file is damaged or truncated: write it again (see the skills.json format in "
                               "README/SPEC)") from e
    except UnicodeDecodeError as e:
        raise SkillsError(f"not UTF-8 text ({e})", path=path) from e
    return parse_skills(raw, path=path, known_episodes=known_episodes)


def parse_skills(raw: Any, *, path: Path | str = "skills.json", known_episodes: set[int] | None = None) -> SkillsFile:
    if not isinstance(raw, dict):
        raise SkillsError(f"must be a JSON object, got {type(raw).__name__}", path=path)
    coarse = raw.get("coarse_description")
    if coarse is not None and not isinstance(coarse, str):
        raise SkillsError("must be a string", path=path, key="coarse_description")
    s2t = raw.get("skill_to_task_index", {})
    if not isinstance(s2t, dict) or not all(isinstance(v, int) for v in s2t.values()):
        raise SkillsError("must map skill names to integers", path=path, key="skill_to_task_index")
    if "episodes" not in raw:
        raise SkillsError("missing", path=path, key="episodes")
    episodes_raw = raw["episodes"]
    if not isinstance(episodes_raw, dict):
        raise SkillsError(
            f"must be an object keyed by episode index, got {type(episodes_raw).__name__}", path=path, key="episodes"
        )
    episodes: dict[int, EpisodeSkills] = {}
    notices = Notices()
    for key, entry in episodes_raw.items():
        ep = _parse_episode(key, entry, path, notices)
        if ep.episode_index in episodes:
            raise SkillsError("episode listed twice", path=path, episode=ep.episode_index)
        if known_episodes is not None and ep.episode_index not in known_episodes:
            raise SkillsError(
                f"unknown episode: the dataset has episodes {format_episode_list(sorted(known_episodes))}",
                path=path,
                episode=ep.episode_index,
                hint="skills.json seems to belong to another dataset or revision",
            )
        episodes[ep.episode_index] = ep
    return SkillsFile(
        coarse_description=coarse.strip() if isinstance(coarse, str) and coarse.strip() else None,
        skill_to_task_index=dict(s2t),
        episodes=dict(sorted(episodes.items())),
        notices=tuple(notices.items),
    )


def _parse_episode(key: str, entry: Any, path: Path | str, notices: Notices) -> EpisodeSkills:
    if not isinstance(entry, dict):
        raise SkillsError(f"must be an object, got {type(entry).__name__}", path=path, episode=key)
    index = entry.get("episode_index", key)
    try:
        index = int(index)
        if str(key).strip() != str(index):
            raise ValueError
    except (TypeError, ValueError):
        raise SkillsError(
            f"key {key!r} and episode_index {entry.get('episode_index')!r} disagree or are not integers",
            path=path,
            episode=key,
        ) from None
    description = entry.get("description")
    if description is not None and not isinstance(description, str):
        raise SkillsError("must be a string", path=path, episode=index, key="description")
    skills_raw = entry.get("skills")
    if not isinstance(skills_raw, list):
        raise SkillsError("missing or not a list", path=path, episode=index, key="skills")
    skills = [_parse_skill(i, s, index, path) for i, s in enumerate(skills_raw)]
    if any(a.start > b.start for a, b in zip(skills, skills[1:])):
        notices.add("skills not in time order in meta/skills.json (sorted by start)", index)
        skills.sort(key=lambda s: (s.start, s.end))
    for a, b in zip(skills, skills[1:]):
        if b.start < a.end - ROUNDING_OVERLAP_S:
            notices.add("skills overlap (the later skill owns the overlapped frames)", index,
                        f"episode {index}: {a.name!r} ({a.start:.3f}-{a.end:.3f} s) and {b.name!r} from {b.start:.3f} s")
    return EpisodeSkills(
        episode_index=index,
        description=description.strip() if isinstance(description, str) and description.strip() else None,
        skills=tuple(skills),
    )


def _parse_skill(i: int, raw: Any, episode: int, path: Path | str) -> Skill:
    where = f"skills[{i}]"
    if not isinstance(raw, dict):
        raise SkillsError("must be an object", path=path, episode=episode, key=where)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SkillsError(f"'name' must be a non-empty string, got {name!r}", path=path, episode=episode, key=where)
    times = {}
    for field in ("start", "end"):
        value = raw.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SkillsError(
                f"{field!r} must be a finite number of seconds, got {value!r}", path=path, episode=episode, key=where
            )
        times[field] = float(value)
    if times["start"] < 0:
        raise SkillsError(
            f"{name!r} starts at a negative time ({times['start']} s)", path=path, episode=episode, key=where
        )
    if times["end"] <= times["start"]:
        raise SkillsError(
            f"{name!r} ends at {times['end']} s, not after its start {times['start']} s",
            path=path,
            episode=episode,
            key=where,
        )
    return Skill(name=name.strip(), start=times["start"], end=times["end"])
