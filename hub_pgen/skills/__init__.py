"""Skills stage: where each episode's skills come from (``--skills auto|file|language|annotate``).

- ``file``: ``meta/skills.json`` (the seed's format; :mod:`hub_pgen.source.skills` reads it).
- ``language``: the ``subtask`` rows of lerobot's ``language_persistent`` (what ``lerobot-annotate``
  writes): each row is a skill from its timestamp to the next row's, the last to the episode's end.
- ``annotate``: the model labels them, episode by episode (:mod:`hub_pgen.skills.annotate`); this
  runs after the output folder is locked and the backend is up, with its own journal.
- ``auto`` (default): the first of ``file`` and ``language`` that the dataset has, else ``annotate``
  (most public datasets have neither: the card's one command labels them first, and says so, with
  the extra model calls it costs, before it starts).

The new dataset carries the skills the run used: ``meta/skills.json`` in the seed's format (the
source's own file, byte for byte, when that is where they came from).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub_pgen import layout
from hub_pgen.data import EpisodeSkills, Skill, SkillsFile, SourceDataset
from hub_pgen.errors import SkillsError

SOURCES = ("auto", "file", "language", "annotate")


@dataclass(frozen=True)
class SkillSet:
    skills: SkillsFile
    origin: str  # "file" | "language" | "annotate"
    path: Path | None = None  # the skills.json read (origin "file")

    def identity(self) -> dict[str, Any]:
        """What goes into the configuration fingerprint: where the skills came from and what they are."""
        return {"source": self.origin, "digest": digest(self.skills)}


def resolve(choice: str, source: SourceDataset, skills_file: Path | None = None) -> SkillSet | None:
    """The skills of ``file`` / ``language`` / ``auto``; None for ``annotate`` (labelled later, by the
    model), which is also what ``auto`` comes to on a dataset with neither a skills.json nor subtask rows.
    ``skills_file`` (``--skills-file``): a skills.json elsewhere than the dataset's ``meta/``."""
    from hub_pgen.source.skills import load_skills

    path = Path(skills_file) if skills_file is not None else source.root / layout.SKILLS_PATH
    if choice == "annotate":
        return None
    if choice == "file" and skills_file is None and not path.is_file():
        where = (f"dataset repo {source.repo_id} at {str(source.revision)[:8]}" if source.repo_id
                 else f"dataset {source.root}")
        raise SkillsError(f"--skills file: {where} has no {layout.SKILLS_PATH}", path=layout.SKILLS_PATH,
                          hint=f"let the model label the skills first: --skills annotate (or leave --skills out: auto "
                               f"does that when the dataset has no skills; {len(source.episodes)} episode(s), one "
                               "model call each), or give a skills.json with --skills-file FILE")
    if choice == "file" or (choice == "auto" and path.is_file()):
        return SkillSet(load_skills(path, known_episodes=set(source.episodes)), "file", path)
    found = from_language(source)
    if found is not None:
        return SkillSet(found, "language")
    episodes = len(source.episodes)
    if choice == "language":
        raise SkillsError("the dataset's language_persistent has no subtask rows"
                          + ("" if source.language is not None else " (it has no language columns at all)"),
                          path=source.root / layout.DATA_DIR,
                          hint=f"let the model label the skills: --skills annotate ({episodes} episode(s), one model "
                               "call each), or give meta/skills.json and --skills file")
    return None  # auto, and nothing to read: the model labels them


def static_file(choice: str, root: Path, skills_file: Path | None) -> Path | None:
    """The skills.json a run reads, when that is known from ``meta/`` alone (before any data file):
    ``--skills-file``, or the dataset's own under ``file``/``auto``. None otherwise (language, annotate)."""
    if choice not in ("auto", "file"):
        return None
    path = Path(skills_file) if skills_file is not None else Path(root) / layout.SKILLS_PATH
    return path if path.is_file() else None


def from_language(source: SourceDataset) -> SkillsFile | None:
    """Skills from the source's ``subtask`` rows; None when it has none."""
    subtasks = source.language.subtasks if source.language is not None else {}
    if not subtasks:
        return None
    episodes: dict[int, EpisodeSkills] = {}
    for e, rows in sorted(subtasks.items()):
        if e not in source.episodes:
            continue
        end = source.episodes[e].length / source.fps  # the last frame's timestamp + one frame
        times = [t for t, _ in rows]
        if len(set(times)) != len(times):
            t = next(t for t in times if times.count(t) > 1)
            raise SkillsError(f"two subtask rows start at {t:g} s", path=source.root / layout.DATA_DIR, episode=e,
                              hint="lerobot's own resolver (active_at) refuses that too: fix the episode's "
                                   "language_persistent, or use --skills annotate")
        bounds = times[1:] + [max(end, times[-1] + 1.0 / source.fps)]
        skills = tuple(Skill(name, t, b) for (t, name), b in zip(rows, bounds))
        ep = source.episodes[e]
        episodes[e] = EpisodeSkills(e, ep.tasks[0] if ep.tasks else None, skills)
    if not episodes:
        return None
    return SkillsFile(coarse_description(episodes.values()), skill_index(episodes.values()), episodes)


def coarse_description(episodes: Any) -> str | None:
    """The task every episode shares, if they share one (else each episode's description says it)."""
    tasks = {ep.description for ep in episodes}
    return tasks.pop() if len(tasks) == 1 else None


def skill_index(episodes: Any) -> dict[str, int]:
    """``skill_to_task_index``: each distinct skill name, numbered in order of first appearance."""
    out: dict[str, int] = {}
    for ep in sorted(episodes, key=lambda ep: ep.episode_index):
        for s in ep.skills:
            out.setdefault(s.name, len(out))
    return out


def to_json(skills: SkillsFile) -> dict[str, Any]:
    """``meta/skills.json`` in the seed's format."""
    return {
        "coarse_description": skills.coarse_description,
        "skill_to_task_index": dict(skills.skill_to_task_index) or skill_index(skills.episodes.values()),
        "episodes": {
            str(e): {"episode_index": e, "description": ep.description,
                     "skills": [{"name": s.name, "start": s.start, "end": s.end} for s in ep.skills]}
            for e, ep in sorted(skills.episodes.items())
        },
    }


def digest(skills: SkillsFile) -> str:
    return hashlib.sha256(json.dumps(to_json(skills), sort_keys=True).encode()).hexdigest()[:16]


def origin_text(skills: dict[str, Any] | None) -> str:
    """Where a result's skills came from, in words (the summary, the card, the review page), from its
    provenance's ``skills`` record."""
    skills = skills or {}
    source = skills.get("source")
    if source == "file":
        name = skills.get("skills_file")
        return f"--skills-file {name}" if name else layout.SKILLS_PATH
    if source == "language":
        return "lerobot's subtask rows (language_persistent)"
    if source == "annotate":
        by = f"labelled by the {skills.get('labelled_by', 'model')} backend"
        return by + (" (the dataset had none (--skills auto); each answer: meta/hub_pgen_skills.jsonl)"
                     if skills.get("requested") == "auto" else " (--skills annotate; each answer: "
                                                               "meta/hub_pgen_skills.jsonl)")
    return str(source or layout.SKILLS_PATH)

