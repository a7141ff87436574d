"""The labelling stage: each episode's request (contact sheets of one camera) through a backend,
answers parsed and repaired (:mod:`hub_pgen.skills.annotate`), each episode's outcome journaled as a
:class:`SegmentRecord` (a killed run resumes without asking twice), the skills gathered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from hub_pgen import faults
from hub_pgen.data import EpisodeSkills, ImageRef, Sample, Skill, SkillsFile, SourceDataset
from hub_pgen.generate.layer import RETRY_TEMPERATURE, Call, CallFailed
from hub_pgen.generate.parse import keep_raw, text_problem
from hub_pgen.generate.stream import ONE, Width, stream
from hub_pgen.skills import sheets
from hub_pgen.skills.annotate import (
    DEFAULT_MIN_SKILL_SECONDS,
    EpisodeRequest,
    SegmentationError,
    finite_seconds,
    parse_segmentation,
)

logger = logging.getLogger(__name__)

logger = logging.getLogger(__name__)


# --- the journal of one run's segmentations -----------------------------------------------------


@dataclass(frozen=True)
class SegmentRecord:
    """One line of ``OUT.partial/skills.jsonl`` and of the new dataset's ``meta/hub_pgen_skills.jsonl``."""

    sample_id: str
    episode_index: int
    status: Literal["ok", "failed"]
    skills: tuple[dict[str, Any], ...] = ()  # {"name", "start", "end"}
    repairs: tuple[str, ...] = ()
    raw_text: str | None = None
    error: str | None = None
    attempts: int = 1
    frames_shown: int = 0
    fingerprint: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["skills"], d["repairs"] = [dict(s) for s in self.skills], list(self.repairs)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SegmentRecord:
        """A journal line back; :class:`SegmentationError` when it is not one this module wrote (an
        edited or damaged line: its episode is asked again). Its times go through :func:`finite_seconds`."""
        if not isinstance(d, dict):
            raise SegmentationError("a journal line is not an object")
        kw = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if (isinstance(kw.get("episode_index"), bool) or not isinstance(kw.get("episode_index"), int)
                or kw.get("status") not in ("ok", "failed") or not isinstance(kw.get("skills", []), list)):
            raise SegmentationError("a journal line lacks its episode, status or skills")
        skills = []
        for i, sk in enumerate(kw.get("skills", ())):
            if not isinstance(sk, dict) or not isinstance(sk.get("name"), str) or text_problem(sk["name"]):
                raise SegmentationError(f"skills[{i}] of a journal line has no usable name")
            start, end = (finite_seconds(sk.get(k), f"skills[{i}].{k}") for k in ("start", "end"))
            if not end > start:
                raise SegmentationError(f"skills[{i}] of a journal line ends before it starts")
            skills.append({"name": sk["name"], "start": start, "end": end})
        kw["skills"] = tuple(skills)
        kw["repairs"] = tuple(str(r) for r in kw.get("repairs", ()) or ())
        return cls(**kw)

    def episode_skills(self) -> EpisodeSkills:
        return EpisodeSkills(self.episode_index, None,
                             tuple(Skill(s["name"], float(s["start"]), float(s["end"])) for s in self.skills))


# --- the stage ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotateOptions:
    camera: str | None  # the camera whose frames the sheets show (None: a model-free backend)
    min_seconds: float = DEFAULT_MIN_SKILL_SECONDS
    seed: int = 0
    temperature: float = 0.0
    max_retries: int = 2
    width: Width = ONE  # how many calls at once, of how many episodes (the backend's: hub_pgen.generate.stream)


@dataclass
class AnnotateResult:
    skills: SkillsFile
    records: dict[int, SegmentRecord] = field(default_factory=dict)
    asked: int = 0  # episodes sent to the model by this run (the others came from the journal)


def episode_requests(source: SourceDataset, episodes: Sequence[int], min_seconds: float) -> list[EpisodeRequest]:
    from hub_pgen.plan.planner import read_frame_times

    times = read_frame_times(source, episodes)
    out = []
    for e in episodes:
        ts, first_task = times[e]
        if len(ts) == 0:
            continue
        shown = sheets.sheet_times(ts)
        index = {float(t): i for i, t in enumerate(ts)}
        ep = source.episodes[e]
        task = ep.tasks[0] if ep.tasks else (
            source.tasks[source.task_indices.index(first_task)] if first_task in source.task_indices else "")
        end = max(ep.length / source.fps, float(ts[-1]) + 2e-4)  # the frame after the last (the planner's rule)
        out.append(EpisodeRequest(e, task, tuple(shown), tuple(index[t] for t in shown), end, min_seconds,
                                  ep.dataset_from_index))
    return out


def annotate_episodes(
    source: SourceDataset, episodes: Sequence[int], backend: Any, options: AnnotateOptions, *,
    done: dict[int, SegmentRecord], append: Callable[[list[SegmentRecord]], object], fingerprint: str,
    progress: Callable[[int, int], None] | None = None, tried: dict[int, int] | None = None,
) -> AnnotateResult:
    """Skills for ``episodes``: those in ``done`` (the journal) as they are, the others asked of
    ``backend`` as a stream (``options.width`` calls in flight, each decoding its episodes' sheets and
    asking), each answer appended to the journal as it arrives. ``tried``: attempts an episode already
    had (``--retry-failed``): its tries go on from there, with new seeds."""
    from hub_pgen.generate.layer import sample_seed

    records = dict(done)
    requests = episode_requests(source, list(episodes), options.min_seconds)
    tasks = {r.episode_index: r.task or None for r in requests}
    pending = [r for r in requests if r.episode_index not in done]
    asked = 0
    needs_images = getattr(backend, "needs_images", True)

    def label(batch: list[EpisodeRequest]) -> dict[int, SegmentRecord]:
        images = _sheets(source, batch, options.camera) if needs_images else {}
        return _ask(backend, batch, images, options, sample_seed, tried or {})

    for batch, results in stream(pending, label, options.width, name="hub-pgen-label"):
        faults.point("skills.asked")
        new = [replace(results[r.episode_index], fingerprint=fingerprint) for r in batch]
        append(new)
        faults.point("skills.journal")
        records.update({r.episode_index: r for r in new})
        asked += len(batch)
        if progress is not None:
            progress(asked, len(pending))
    eps = {e: replace(r.episode_skills(), description=tasks.get(e))
           for e, r in sorted(records.items()) if r.status == "ok" and e in set(episodes)}
    from hub_pgen.skills import coarse_description, skill_index

    return AnnotateResult(SkillsFile(coarse_description(eps.values()), skill_index(eps.values()), eps), records, asked)


def _ask(backend: Any, batch: Sequence[EpisodeRequest], images: dict[int, list[Any] | str],
         options: AnnotateOptions, seed_of: Callable[[int, str], int],
         tried: dict[int, int]) -> dict[int, SegmentRecord]:
    out: dict[int, SegmentRecord] = {}
    last: dict[int, tuple[str, str | None]] = {}
    todo = []
    for r in batch:
        shown = images.get(r.episode_index, [])
        if isinstance(shown, str):  # its frames could not be decoded
            out[r.episode_index] = SegmentRecord(r.sample_id, r.episode_index, "failed", error=shown, attempts=0,
                                                 frames_shown=len(r.times))
        else:
            todo.append(r)
    for attempt in range(options.max_retries + 1):
        if not todo:
            break
        calls = []
        for r in todo:
            n = tried.get(r.episode_index, 0) + attempt  # a retried failure goes on with new seeds, sampling
            temperature = options.temperature if n == 0 or options.temperature > 0 else RETRY_TEMPERATURE
            calls.append(Call(r.sample_id, r.prompt(), tuple(images.get(r.episode_index, ())),
                              seed_of(options.seed, r.sample_id) + n, temperature, schema=r.schema(),
                              max_new_tokens=r.max_new_tokens(), offline=r.offline_answer))
        answers = backend.complete_calls(calls)
        retry = []
        for r, answer in zip(todo, answers):
            if isinstance(answer, CallFailed):
                out[r.episode_index] = SegmentRecord(r.sample_id, r.episode_index, "failed", error=answer.reason,
                                                     attempts=tried.get(r.episode_index, 0) + attempt + 1,
                                                     frames_shown=len(r.times))
                continue
            kept = keep_raw(answer, r.max_answer_chars())  # bounded, valid Unicode
            try:
                skills, repairs = parse_segmentation(answer, r)
            except SegmentationError as e:
                logger.debug("episode %d attempt %d: %s", r.episode_index, attempt + 1, e)
                last[r.episode_index] = (str(e), kept)
                retry.append(r)
                continue
            out[r.episode_index] = SegmentRecord(
                r.sample_id, r.episode_index, "ok", tuple({"name": s.name, "start": s.start, "end": s.end}
                                                          for s in skills),
                repairs, kept, attempts=tried.get(r.episode_index, 0) + attempt + 1, frames_shown=len(r.times))
        todo = retry
    for r in todo:
        reason, raw = last[r.episode_index]
        out[r.episode_index] = SegmentRecord(r.sample_id, r.episode_index, "failed", raw_text=raw, error=reason,
                                             attempts=tried.get(r.episode_index, 0) + options.max_retries + 1,
                                             frames_shown=len(r.times))
    return out


def _sheets(source: SourceDataset, batch: Sequence[EpisodeRequest], camera: str | None) -> dict[int, list[Any] | str]:
    """Each episode's contact sheets, or the reason its frames could not be decoded."""
    from hub_pgen.errors import FrameError
    from hub_pgen.frames import iter_sample_images

    if camera is None:
        return {}
    video = camera in source.video_keys
    samples = [Sample(sample_id=r.sample_id, episode_index=r.episode_index, episode_id=str(r.episode_index),
                      frame_index=0, timestamp=None, skill_current="", skill_history=(), task_description=r.task,
                      scenario_type="", response_type="",
                      images=tuple(ImageRef(camera=camera, timestamp=t) if video else
                                   ImageRef(camera=camera, row=r.row_start + f) for t, f in zip(r.times, r.frames)))
               for r in batch]
    by_id = {r.sample_id: r for r in batch}
    out: dict[int, list[Any] | str] = {}
    for sample, images in iter_sample_images(samples, source=source):
        r = by_id[sample.sample_id]
        if isinstance(images, FrameError):
            out[r.episode_index] = f"frames could not be decoded: {images}"
        else:
            out[r.episode_index] = sheets.make_sheets(images, r.times, decimals=r.decimals)
    return out


def load_records(path: Path, *, fingerprint: str | None) -> dict[int, SegmentRecord]:
    """The segmentation journal by episode (a torn last line is dropped; another configuration's
    records are refused, as the samples' journal does)."""
    from hub_pgen.errors import ConfigMismatchError

    out: dict[int, SegmentRecord] = {}
    if not path.is_file():
        return out
    lines = path.read_bytes().split(b"\n")
    for line in lines[:-1]:
        if not line.strip():
            continue
        try:
            rec = SegmentRecord.from_json(json.loads(line))
        except (ValueError, TypeError, RecursionError):  # malformed JSON, a 5,000-digit int, SegmentationError
            continue  # that episode is asked again
        if fingerprint is not None and rec.fingerprint != fingerprint:
            raise ConfigMismatchError(path, {"fingerprint": (rec.fingerprint, fingerprint)})
        out[rec.episode_index] = rec
    return out
