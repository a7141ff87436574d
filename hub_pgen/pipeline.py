"""The run: source → plan → frames → generate → journal → write (→ push).

:func:`run` is what the CLI calls; every stage is a plain function of its own module, so this file
only wires them and owns the loop that streams samples through frames, generation and the journal.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hub_pgen import __version__, faults, layout
from hub_pgen.config import RunConfig, file_digest, fingerprint
from hub_pgen.data import GenerationRequest, GenerationResult, JournalRecord, Sample, SourceDataset
from hub_pgen.errors import FrameError, Interrupted, SkillsError, SourceError, UsageError, ValidationError
from hub_pgen.generate.base import Backend, is_local_model
from hub_pgen.generate.parse import checked_result
from hub_pgen.generate.prompt import construct_prompt, prompt_template_hash
from hub_pgen.generate.registry import get_backend
from hub_pgen.notices import Notices
from hub_pgen.journal import JournalWriter, load_journal, to_record
from hub_pgen.plan import planner
from hub_pgen.plan.taxonomy import assign_types, mix_report
from hub_pgen.progress import NullReporter, Reporter
from hub_pgen.write import output as out_mod
from hub_pgen.write.card import render_card
from hub_pgen.write.lock import RunLock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    state: str  # "written" | "already-complete" | "dry-run"
    output: Path | None
    fingerprint: str
    samples: int = 0
    ok: int = 0
    failed: int = 0
    resumed: int = 0  # samples found in the journal of an earlier, interrupted run
    generated: int = 0  # samples sent to the backend by this run
    new_tasks: int = 0
    mix: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: tuple[JournalRecord, ...] = ()
    elapsed_s: float = 0.0
    plan_report: dict[str, Any] | None = None
    push: Any = None
    frames: int = 0  # frames of the new dataset
    frames_labelled: int = 0  # of them, frames with a dialogue (task_index_high_level >= 0)
    examples: tuple[JournalRecord, ...] = ()  # a few generated dialogues, to show the user
    notices: tuple[str, ...] = ()  # tolerated input problems, one line per kind
    retried: int = 0  # --retry-failed: earlier failures sent to the backend again
    output_format: str | None = None  # --format of the dataset (None: a JSONL result)
    skills: dict[str, Any] | None = None  # where the skills came from (meta/hub_pgen.json → skills)
    quality: dict[str, Any] | None = None  # hub_pgen.quality measures of the ok dialogues
    filtered: dict[str, Any] | None = None  # hub_pgen.filters: {"count", "by_reason"}
    verify: dict[str, Any] | None = None  # --verify: {"mode", "checked", "agree", ..., "agreement"}
    language: dict[str, Any] | None = None  # what the language columns got (meta/hub_pgen.json → language)
    report: Path | None = None  # the review page (meta/hub_pgen_report.html) of a dataset result
    shard: dict[str, Any] | None = None  # a shard result: {"index", "count", "episodes", "samples"}
    kind: str = "dataset"  # "dataset" (a run, a merge), or "skills" (hub-pgen label: samples are episodes)
    runs_on: str | None = None  # the model, device and dtype this run used (a backend that runs a model)


@dataclass(frozen=True)
class Prepared:
    """Everything known before generation starts."""

    source: SourceDataset | None
    samples: tuple[Sample, ...]
    bad_lines: tuple[Any, ...]  # JSONL lines that could not be read (recorded as failures)
    cameras: tuple[str, ...]
    identity: dict[str, Any]
    fingerprint: str
    source_name: str
    plan: planner.Plan | None
    base_dir: Path | None
    notices: tuple[str, ...] = ()
    skills: Any = None  # hub_pgen.skills.SkillSet the plan was made from (None: JSONL, or not labelled yet)
    annotate: bool = False  # --skills annotate: the model labels the skills after the folder is locked
    skill_records: Any = None  # --skills annotate: each episode's SegmentRecord, by episode
    labelling: dict[str, Any] | None = None  # --skills auto that comes to labelling: what it costs (said once)
    shard: dict[str, Any] | None = None  # --num-shards: {"index", "count", "episodes", "samples"} (hub_pgen.shards)
    merged_from: dict[str, Any] | None = None  # hub-pgen merge: {"shards": N} (its samples come from them)

    def folder_key(self) -> tuple[str, dict[str, Any]]:
        """What the output folder is keyed by: the fingerprint (and identity), plus the shard of a shard run."""
        if self.shard is None:
            return self.fingerprint, self.identity
        from hub_pgen import shards

        return (shards.folder_key(self.fingerprint, self.shard["index"], self.shard["count"]),
                {**self.identity, "shard": shards.label(self.shard["index"], self.shard["count"])})


# --- stages -------------------------------------------------------------------------------------


def backend_identity(config: RunConfig) -> dict[str, Any]:
    """Known before the model is loaded, so a mismatching output is refused before minutes of loading."""
    return get_backend(config.backend).identity(config)


def make_backend(config: RunConfig) -> Backend:
    return get_backend(config.backend).make(config)


def open_source(config: RunConfig, reporter: Reporter) -> tuple[SourceDataset, dict[int, int] | None]:
    """The source, with the data files its plan reads (a folder on disk has them all). A Hub source
    brings down ``meta/`` first, then only the data files the plan needs (hub_pgen.source.needs): its
    videos come later, for the episodes that have samples. Returns the source and, for a shard planned
    from the frame grid, the samples per episode that plan found (checked against the real plan)."""
    from hub_pgen.source.lerobot import load_source

    if config.root is not None:
        return load_source(config.root), None
    from hub_pgen.source import hub, needs

    reporter.stage("download", f"{config.repo_id} metadata")
    meta = hub.open_hub_metadata(config.repo_id, revision=config.revision, image_keys=config.image_keys,
                                 num_views=config.num_image_views)
    data = needs.plan_data(meta, config.episodes)
    ahead = None
    if data is None and config.num_shards > 1 and not needs.has_language(meta):
        from hub_pgen import shards

        planned = shards.plan_ahead(config, meta)
        if planned is not None:
            meta, data, ahead = planned
    where = f"{config.repo_id}@{str(meta.revision)[:8]}"
    reporter.stage("download", f"{where}: data of " + ("every episode" if data is None else
                                                         f"{len(data)} of {len(meta.episodes)} episode(s)"))
    return hub.fetch(meta, data=data), ahead


def fetch_videos(prep: Prepared, config: RunConfig, reporter: Reporter, cameras: Sequence[str],
                 episodes: Iterable[int] | None = None) -> Prepared:
    """A Hub source's videos of ``cameras`` for ``episodes`` (default: those with samples): what
    generation (or labelling) decodes, fetched before it starts. Nothing for a folder on disk."""
    source = prep.source
    cams = [c for c in cameras if source is not None and c in source.video_keys]
    if source is None or not source.repo_id or not cams:
        return prep
    from hub_pgen.source import hub

    wanted = set(episodes) if episodes is not None else {s.episode_index for s in prep.samples}
    reporter.stage("download", f"{source.repo_id}@{str(source.revision)[:8]}: videos of {', '.join(cams)} for "
                               f"{len(wanted)} episode(s)")
    return replace(prep, source=hub.fetch(source, data=(), videos=wanted, cameras=cams))


def source_identity(source: SourceDataset) -> dict[str, Any]:
    if source.repo_id and source.revision:
        return {"repo_id": source.repo_id, "sha": source.revision}
    digests = {}
    for rel in (layout.INFO_PATH, layout.TASKS_PATH, layout.SKILLS_PATH):
        p = source.root / rel
        digests[rel] = file_digest(p) if p.is_file() else None
    return {"local": digests}


def prepare(config: RunConfig, reporter: Reporter) -> Prepared:
    if config.input_jsonl is not None:
        return _prepare_jsonl(config)
    reporter.stage("source", str(config.root or config.repo_id))
    source, ahead = open_source(config, reporter)
    prep = _prepare_dataset(config, reporter, source)
    if ahead is not None and prep.plan is not None:
        from hub_pgen import shards

        differ = shards.ahead_differs(ahead, prep.plan, prep.source)
        if differ:
            from hub_pgen.source import hub

            logger.warning("episode(s) %s: the data's frame times are not the ones meta/episodes' timestamp stats "
                           "describe, so this shard cannot plan the other shards' episodes from the stats: reading "
                           "every data file", planner.format_episode_list(differ))
            prep = _prepare_dataset(config, reporter, hub.fetch(prep.source, data=None))
    return prep


def _prepare_dataset(config: RunConfig, reporter: Reporter, source: SourceDataset) -> Prepared:
    from hub_pgen import skills as skills_mod
    from hub_pgen.skills import annotate, sheets

    skill_set = skills_mod.resolve(config.skills, source, config.skills_file)
    cameras = planner.choose_cameras(source, image_keys=config.image_keys, num_views=config.num_image_views)
    name = (source.repo_id or source.root.name).split("/")[-1]
    if skill_set is None:  # --skills annotate (or auto on a dataset without skills): labelled once the output
        # is locked and the backend is up
        unknown = [e for e in (config.episodes or ()) if e not in source.episodes]
        if unknown:
            raise UsageError(f"--episodes: {', '.join(map(str, unknown[:10]))} not in the dataset (it has "
                             f"{len(source.episodes)} episodes)", hint="episodes are named by their episode_index")
        if config.skills == "auto":
            _refuse_labelling_here(config, source)
        if not cameras and get_backend(config.backend).needs_images:
            raise UsageError("--skills annotate shows the model contact sheets of a camera, and this run shows none",
                             hint="drop --num-image-views-per-sample 0 (the first camera the model sees is the one "
                                  "labelled), or use --backend template")
        skills_id = {"source": "annotate", "camera": cameras[0] if cameras else None,
                     "min_skill_seconds": config.min_skill_seconds, "sheets": sheets.PARAMS,
                     "prompt": annotate.PROMPT_VERSION}
        identity = config.identity(cameras=cameras, source_id=source_identity(source),
                                   backend_id=backend_identity(config), prompt_hash=prompt_template_hash(config.prompt_template),
                                   skills_id=skills_id)
        ignored = [what for what, there in (
            (layout.SKILLS_PATH, (source.root / layout.SKILLS_PATH).is_file()),
            ("the subtask rows of language_persistent", bool(source.language and source.language.subtasks))) if there]
        notices = tuple(f"--skills annotate: the dataset's {what} is not used; the model labels the skills anew "
                        "(the new dataset's meta/skills.json holds its labels)" for what in ignored)
        prep = Prepared(source, (), (), cameras, _public_identity(identity), fingerprint(identity), name, None, None,
                        annotate=True)
        if config.skills == "auto":
            prep = replace(prep, labelling=_labelling_cost(config, prep))
            notices += (_labelling_notice(config, prep.labelling),)
        for line in notices:
            logger.warning("%s", line)
        return replace(prep, notices=notices)
    identity = config.identity(cameras=cameras, source_id=source_identity(source),
                               backend_id=backend_identity(config), prompt_hash=prompt_template_hash(config.prompt_template),
                               skills_id=skill_set.identity())
    prep = Prepared(source, (), (), cameras, _public_identity(identity), fingerprint(identity), name, None, None,
                    skills=skill_set)
    return plan_samples(config, prep, skill_set, reporter)


def _refuse_labelling_here(config: RunConfig, source: SourceDataset) -> None:
    """``--skills auto`` came to labelling in a run that cannot label (a shard, a Ray run): say so
    before anything exists, with the two commands that do it."""
    why = ("a shard cannot label: every shard needs every episode's skills for the plan's type schedule"
           if config.num_shards > 1 else
           "--engine ray generates in its actors; the labelling runs with the local engine" if config.engine == "ray"
           else None)
    if why is None:
        return
    src = f"--repo-id {config.repo_id}" if config.repo_id else f"--root {config.root}"
    raise SkillsError(
        "the dataset has no skill annotation (no meta/skills.json, no subtask rows in language_persistent), and "
        + why, path=layout.SKILLS_PATH,
        hint=f"label the skills once first: hub-pgen label {src} --model M --output-dir labels (one machine, "
             f"{len(source.episodes)} model call(s)); then add --skills-file labels/{layout.SKILLS_PATH} to this "
             "command (and to the merge)")


def _labelling_notice(config: RunConfig, cost: dict[str, Any]) -> str:
    """What ``--skills auto`` tells the user, up front, when it comes to labelling (``cost``: _labelling_cost)."""
    calls = cost["labelling_model_calls"]
    tokens = f", about {cost['image_tokens']:,} image tokens" if cost.get("image_tokens") else ""
    extra = (f"{calls} extra model call(s) ({cost['contact_sheets']} contact sheet(s){tokens})" if calls else
             f"no model call (the {config.backend} backend labels offline)")
    return (f"--skills auto: the dataset has no skill annotation (no {layout.SKILLS_PATH}, no subtask rows), so the "
            f"model labels each episode's skills first: {cost['episodes_to_label']} episode(s), {extra} before the "
            f"dialogues; the labels are "
            f"journaled and written to the new dataset's {layout.SKILLS_PATH} (to label once and reuse them: hub-pgen "
            "label, then --skills-file)")


def plan_samples(config: RunConfig, prep: Prepared, skill_set: Any, reporter: Reporter) -> Prepared:
    """``prep`` with the plan made from ``skill_set`` (read from the dataset, or just labelled)."""
    reporter.stage("plan", f"sampling={config.sampling}, cameras={', '.join(prep.cameras) or '(none)'}, "
                           f"skills from {skill_set.origin}")
    plan = planner.build_plan(
        prep.source,
        skill_set.skills,
        strategy=config.sampling,
        interval=config.sample_interval,
        episodes=config.episodes,
        cameras=prep.cameras,
        seed=config.seed,
        scenario_mix=config.scenario_mix,
        response_mix=config.response_mix,
    )
    if not plan.samples:
        _no_samples(config, plan, skill_set)
    notices = Notices(list(plan.notices))
    notices.log()
    return replace(prep, samples=plan.samples, plan=plan, notices=prep.notices + tuple(notices.lines()),
                   skills=skill_set)


def _no_samples(config: RunConfig, plan: planner.Plan, skill_set: Any) -> None:
    """A plan with nothing to generate would write a dataset of -1 and exit 0 (and push it)."""
    skills = skill_set.skills
    if plan.taken:
        raise SourceError(
            f"every sampled frame ({len(plan.taken)}) already has a dialogue in the source's language_events, "
            "so there is nothing to generate",
            path=config.root, hint="hub-pgen adds dialogues only where a frame has none: run it on the original "
                                   "dataset, or sample other frames (e.g. --sampling interval --sample-interval 0.5)")
    annotated = sorted(e for e, ep in skills.episodes.items() if ep.skills)
    shown = ", ".join(map(str, annotated[:10])) + (", …" if len(annotated) > 10 else "")
    where = {"file": layout.SKILLS_PATH, "language": "language_persistent (its subtask rows)",
             "annotate": "the skills the model labelled"}[skill_set.origin]
    if config.episodes is not None and annotated:
        raise UsageError(
            f"--episodes: none of the chosen episodes has skills in {where}, so there is nothing to generate",
            hint=f"choose episodes that have skills ({shown})",
        )
    if skill_set.origin == "annotate":
        raise SkillsError("the model labelled no usable skills for any episode, so there is nothing to generate",
                          path=layout.SKILL_ANNOTATIONS_PATH,
                          hint="every episode's answer and why it was refused is in OUT.partial/skills.jsonl; try "
                               "another --model, or rerun with --retry-failed to ask again")
    raise SkillsError(
        "no skill covers any frame, so there is nothing to generate"
        + (f" (skills start after their episodes end in {', '.join(map(str, annotated[:10]))})" if annotated else
           ": no episode has skills"),
        path=config.root and Path(config.root) / layout.SKILLS_PATH or layout.SKILLS_PATH,
        hint=f"the skills came from {where}: fix them there, or let the model label them: --skills annotate",
    )


def _prepare_jsonl(config: RunConfig) -> Prepared:
    from hub_pgen.source.jsonl import load_labeled_jsonl

    path = Path(config.input_jsonl)
    samples, bad = load_labeled_jsonl(path)
    if config.num_image_views is not None:
        samples = [replace(s, images=s.images[: config.num_image_views]) for s in samples]
    types = assign_types(len(samples), seed=config.seed, scenario_mix=config.scenario_mix,
                         response_mix=config.response_mix)
    samples = [replace(s, scenario_type=a, response_type=b) for s, (a, b) in zip(samples, types)]
    identity = config.identity(cameras=(), source_id={"jsonl": file_digest(path)},
                               backend_id=backend_identity(config), prompt_hash=prompt_template_hash(config.prompt_template))
    return Prepared(None, tuple(samples), tuple(bad), (), _public_identity(identity), fingerprint(identity), path.stem, None,
                    path.parent)


def plan_report(config: RunConfig, prep: Prepared) -> dict[str, Any]:
    """What ``--dry-run`` prints: the plan under every strategy, and the cost of the chosen one."""
    report: dict[str, Any] = {"fingerprint": prep.fingerprint, "cameras": list(prep.cameras)}
    if prep.shard is not None:
        from hub_pgen import shards

        report["shard"] = shards.label(prep.shard["index"], prep.shard["count"])
        report["shard_episodes"] = len(prep.shard["episodes"])
    if prep.source is not None:
        report["format"] = config.output_format
        report["skills"] = prep.skills.origin if prep.skills is not None else "annotate"
    from hub_pgen.plan import cost

    if prep.annotate:
        labelling = prep.labelling or _labelling_cost(config, prep)
        report.update(labelling)
        report["cost"] = cost.of_run(config, prep, labelling=labelling)
        return report
    if prep.plan is None:
        report.update(samples=len(prep.samples), bad_lines=len(prep.bad_lines), model_calls=len(prep.samples))
        return report
    plan = prep.plan
    interval = config.sample_interval or 1.0
    per_strategy = {
        "segment": planner.count_samples(plan.segments, "segment", None),
        f"interval {interval:g}s": planner.count_samples(plan.segments, "interval", interval),
        "frame": planner.count_samples(plan.segments, "frame", None),
    }
    report.update(
        episodes=len(plan.episodes),
        episodes_without_skills=list(plan.episodes_without_skills),
        segments=len(plan.segments),
        frames=plan.frames_total,
        frames_in_skills=plan.frames_in_skills,
        samples_per_strategy=per_strategy,
        sampling=config.sampling,
        samples=len(prep.samples),
        **({"kept_source_dialogues": len(plan.taken)} if plan.taken else {}),
        model_calls=(len(prep.samples) * (2 if config.verify else 1)  # --verify asks once more per sample
                     if get_backend(config.backend).uses_model else 0),
        batches=-(-len(prep.samples) // config.batch_size),
        mix=mix_report([(s.scenario_type, s.response_type) for s in prep.samples]),
        cost=cost.of_run(config, prep),
    )
    if config.show_prompt:  # one rendered prompt per scenario type, with the images it would show
        prompts = {}
        for s in prep.samples:
            if s.scenario_type not in prompts:
                prompts[s.scenario_type] = {"sample_id": s.sample_id, "images": [i.label() for i in s.images],
                                            "prompt": construct_prompt(s, config.prompt_template)}
        report["prompts"] = prompts
    return report


def sample_seed(seed: int, sample_id: str) -> int:
    """Per-sample seed: the same sample gets the same seed whatever batch or resume it lands in."""
    return (seed * 1_000_003 + zlib.crc32(sample_id.encode())) & 0x7FFFFFFF


def iter_images(
    samples: Sequence[Sample], prep: Prepared, backend: Backend, max_pixels: int | None
) -> Iterator[tuple[Sample, list[Any] | FrameError]]:
    if not backend.needs_images:
        for s in samples:
            yield s, []
        return
    from hub_pgen.frames import iter_sample_images

    yield from iter_sample_images(samples, source=prep.source, base_dir=prep.base_dir, max_pixels=max_pixels)


def batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def generate_all(
    pending: Sequence[Sample], prep: Prepared, config: RunConfig, backend: Backend, writer: JournalWriter,
    journal: dict[str, JournalRecord], reporter: Reporter,
) -> int:
    """Stream pending samples through frames → backend → journal. Returns samples sent to the backend.
    ``--engine ray`` runs the same batches on a Ray cluster instead (hub_pgen.engines)."""
    if config.engine != "local":
        from hub_pgen import engines

        return engines.get(config.engine)(pending, prep, config, backend, writer, journal, reporter)
    sent = 0
    per_call = get_backend(config.backend).samples_per_call(config)
    for batch in batched(iter_images(pending, prep, backend, config.max_pixels), per_call):
        records, n = generate_batch(batch, prep, config, backend, tries(journal, [s for s, _ in batch]))
        sent += n
        record_batch(records, writer, journal, reporter)
    return sent


def tries(journal: dict[str, JournalRecord], samples: Sequence[Sample]) -> dict[str, int]:
    """Attempts each sample already had (a failure being retried with --retry-failed), by sample id."""
    out = {}
    for s in samples:
        before = journal.get(s.sample_id)
        out[s.sample_id] = (before.attempts + sum(int(e.get("attempts") or 0) for e in before.earlier)) if before else 0
    return out


def generate_batch(
    batch: Sequence[tuple[Sample, list[Any] | FrameError]], prep: Prepared, config: RunConfig, backend: Backend,
    tried: dict[str, int],
) -> tuple[list[JournalRecord], int]:
    """One batch of (sample, images) → one journal record per sample, and how many went to the backend."""
    requests: list[GenerationRequest] = []
    records: list[JournalRecord] = []
    for sample, images in batch:
        if isinstance(images, FrameError):
            records.append(to_record(sample, GenerationResult(sample.sample_id, None, error=f"frames: {images}"),
                                     prep.fingerprint))
            continue
        requests.append(GenerationRequest(sample, construct_prompt(sample, config.prompt_template), tuple(images),
                                          sample_seed(config.seed, sample.sample_id),
                                          first_attempt=tried.get(sample.sample_id, 0)))
    faults.point("frames")
    if requests:
        results = backend.generate(requests)
        faults.point("generate")
        by_id = {res.sample_id: checked_result(res) for res in results}
        missing = [req.sample.sample_id for req in requests if req.sample.sample_id not in by_id]
        if missing:
            raise RuntimeError(f"backend {backend.name} returned no result for {missing[:5]}")
        records += [to_record(req.sample, by_id[req.sample.sample_id], prep.fingerprint) for req in requests]
    return records, len(requests)


def record_batch(records: list[JournalRecord], writer: JournalWriter, journal: dict[str, JournalRecord],
                 reporter: Reporter) -> None:
    """A batch's records into the journal (fsync'ed), then into the run's view of it."""
    records = [_with_earlier(r, journal.get(r.sample_id)) for r in records]
    writer.append(records)
    journal.update((r.sample_id, r) for r in records)  # at once: an interrupt after this counts them
    faults.point("journal")
    reporter.samples_advance(sum(r.status == "ok" for r in records), sum(r.status != "ok" for r in records))


def _with_earlier(record: JournalRecord, before: JournalRecord | None) -> JournalRecord:
    """A retried sample's new record keeps the earlier failed tries (oldest first)."""
    if before is None or before.status == "ok":
        return record
    return replace(record, earlier=before.earlier + (before.as_earlier(),))


def provenance(config: RunConfig, prep: Prepared, backend: Backend | None, journal: dict[str, JournalRecord],
               started_at: str) -> dict[str, Any]:
    src = prep.source
    ok = sum(1 for s in prep.samples if (r := journal.get(s.sample_id)) is not None and r.status == "ok")
    total = len(prep.samples) + len(prep.bad_lines)
    params = config.parameters()
    params.pop("output_dir", None)
    # no local paths in a file that gets pushed: a folder is named by its last component
    for key in ("root", "input_jsonl", "skills_file"):
        if params.get(key):
            params[key] = Path(params[key]).name
    model = public_model_name(config.model) if get_backend(config.backend).uses_model else None
    if "model" in params:
        params["model"] = model
    params = _public_parameters(params)
    return {
        "tool": {"name": "hub-pgen", "version": __version__},
        "created_at": started_at,
        "fingerprint": prep.fingerprint,
        "identity": prep.identity,
        "source": {
            "repo_id": src.repo_id if src else None,
            "sha": src.revision if src else None,
            "requested_revision": config.revision,
            "root": src.root.name if src and not src.repo_id else None,
        },
        "generation": {
            "backend": config.backend,
            "model": model,
            "model_source": (None if model is None else "local folder" if model != config.model
                             else "server" if get_backend(config.backend).can_serve else "hub"),
            "backend_details": _public_details(backend.describe(), config) if backend is not None else None,
            "prompt_template": prompt_template_hash(config.prompt_template),
            "sampling": config.sampling,
            "sample_interval": config.sample_interval,
            "cameras": list(prep.cameras),
        },
        "parameters": params,
        "counts": {"samples": total, "ok": ok, "failed": total - ok,
                   # planned frames left to the dialogue the source already had there (not generated)
                   "kept_source_dialogues": len(prep.plan.taken) if prep.plan is not None else 0},
        "mix": mix_report([(s.scenario_type, s.response_type) for s in prep.samples]),
        "notices": list(prep.notices),
    }


def _public_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the provenance, card and review page show them (they get pushed): a command
    (``--serve-command``) by its redacted form, every other string without tokens or URL credentials
    (hub_pgen.redact; the README's rule). The run itself used them as given."""
    from hub_pgen.redact import redact_command, redact_value

    out = {k: redact_value(v) for k, v in params.items()}
    if isinstance(params.get("serve_command"), str):
        out["serve_command"] = redact_command(params["serve_command"])
    return out


def public_model_name(model: str) -> str:
    """A Hub id as it is; a local model folder by its folder name only (the path is the user's business,
    and the provenance and card get pushed)."""
    return Path(model).expanduser().name if is_local_model(model) else model


def _public_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity as written to files (run.json, provenance): a local model folder by name only.
    The fingerprint is made from the full identity, so two folders of the same name still differ."""
    backend = identity.get("backend")
    if isinstance(backend, dict) and isinstance(backend.get("model"), str):
        identity = {**identity, "backend": {**backend, "model": public_model_name(backend["model"])}}
    return identity


def _public_details(details: dict[str, Any], config: RunConfig) -> dict[str, Any]:
    ident = details.get("identity")
    if isinstance(ident, dict) and config.model and ident.get("model") == config.model:
        details = {**details, "identity": {**ident, "model": public_model_name(config.model)}}
    return details


# --- the run ------------------------------------------------------------------------------------


def run(
    config: RunConfig,
    *,
    backend: Backend | None = None,
    reporter: Reporter | None = None,
    dry_run: bool = False,
    wait: bool = False,
    retry_failed: bool = False,
) -> RunResult:
    """Run the whole job. ``wait``: if another run holds the output folder, wait for it instead of
    refusing. ``retry_failed``: generate the failed samples of an existing result (or journal) again."""
    t0 = time.monotonic()
    reporter = reporter or NullReporter()
    spec = get_backend(config.backend)
    _check_local_source(config)  # a wrong --root is said before a missing model stack (which it would hide)
    stops = None
    if backend is None and dry_run:  # the plan and its cost need no model stack, no GPU, no server
        config, stops = _resolve_for_plan(config, spec)
    elif backend is None:
        from hub_pgen import engines

        engines.check(config)  # --engine ray without ray
        if config.engine == "local" or config.ray_address is None:  # a remote cluster's nodes are not this one
            spec.check(config)  # e.g. --device cuda without a GPU: before any download or folder
        config = spec.resolve(config)  # e.g. the served model's name
    prep = prepare(config, reporter)
    faults.point("plan")
    output = config.output_dir or out_mod.default_output_dir(prep.source_name, prep.fingerprint)
    if config.num_shards > 1:
        from hub_pgen import shards

        samples, episodes = shards.select(prep.samples, config.num_shards, config.shard_index)
        planned = len({s.episode_index for s in prep.samples})
        prep = replace(prep, samples=samples, shard={"index": config.shard_index, "count": config.num_shards,
                                                     "episodes": list(episodes), "samples": len(samples)})
        output = config.output_dir or shards.default_dir(output, config.shard_index, config.num_shards)
        reporter.stage("shard", f"{shards.label(config.shard_index, config.num_shards)}: {len(samples)} of the "
                                f"plan's samples, {len(episodes)} episode(s)")
        if not samples:
            logger.warning("shard %s has no samples: the plan's %d episode(s) with samples fill fewer than %d shards "
                           "(it still writes an empty shard, so the merge finds every shard); fewer shards would do",
                           shards.label(config.shard_index, config.num_shards), planned, config.num_shards)
    images = backend.needs_images if backend is not None else spec.needs_images
    if not dry_run and not prep.annotate and images:  # what generation decodes, before it starts
        prep = fetch_videos(prep, config, reporter, prep.cameras)
    paths = out_mod.OutputPaths.for_output(output)
    source_root = prep.source.root if prep.source else None
    folder_fp, folder_identity = prep.folder_key()
    if dry_run:
        report = plan_report(config, prep)
        report.update(backend=config.backend,
                      model=public_model_name(config.model) if spec.uses_model and config.model else None,
                      output=str(paths.output), output_state=_output_state(paths, prep, source_root))
        if stops:
            report["real_run"] = stops
        return RunResult("dry-run", None, prep.fingerprint, samples=len(prep.samples),
                         plan_report=report, elapsed_s=time.monotonic() - t0, notices=prep.notices)

    # refuse another configuration's folder before taking anything (read-only)
    first_look = out_mod.inspect_output(paths, fingerprint=folder_fp, identity=folder_identity,
                                        source_root=source_root)
    if retry_failed and first_look not in ("complete", "resume"):
        raise UsageError(f"--retry-failed: {paths.output} holds no result or journal of this configuration, so "
                         "there is no failed sample to retry (a typo in --output-dir?)",
                         hint="give the --output-dir of the earlier run, or drop --retry-failed to run the whole job")
    lock = RunLock(paths.work)
    lock.acquire(wait=wait)
    made: Backend | None = None  # a backend this run made (and so closes)
    runs_on: str | None = None
    committed = False  # run.json written: from here on OUT.partial is a resumable run
    try:
        # again under the lock: a run that held it may have finished (or started) this folder
        state = out_mod.inspect_output(paths, fingerprint=folder_fp, identity=folder_identity,
                                       source_root=source_root)
        earlier: dict[str, JournalRecord] = {}
        if state == "complete":
            earlier = _earlier_records(paths.output, prep.fingerprint) if retry_failed else {}
            if not any(r.status != "ok" for r in earlier.values()):
                out_mod.cleanup_work(paths)
                reporter.stage("done", f"{paths.output} is already complete for this configuration"
                               + (" (no failed samples to retry)" if retry_failed else ""))
                return _result_from_output("already-complete", paths.output, prep, t0)
        elif state == "stale":
            logger.info("%s holds a run of another configuration that generated nothing; replacing it", paths.work)
            out_mod.discard_state(paths)

        reporter.stage("load", f"backend {config.backend}"
                       + (f", model {config.model}" if spec.uses_model else ""))
        if backend is None and config.engine == "ray":  # the model loads in the Ray actors
            from hub_pgen.engines import RayBackendInfo

            if prep.annotate:
                raise UsageError("--skills annotate runs with the local engine",
                                 hint="label the skills once first: hub-pgen label (the same source and model "
                                      "options) --output-dir labels; then --engine ray with --skills-file "
                                      "labels/meta/skills.json")
            backend = RayBackendInfo(config.backend, spec.needs_images)
        if backend is None:
            backend = make_backend(config)  # before run.json: a typo in --model leaves nothing behind
            made = backend
            runs_on = say_where(backend, reporter)
            start = getattr(backend, "start", None)
            if start is not None:  # servers it starts (logs beside the journal), and a first look at them
                start(paths.work / layout.SERVERS_NAME, lambda msg: reporter.stage("serve", msg))
        started = out_mod.start_run(paths, fingerprint=folder_fp, identity=folder_identity,
                                    started_at=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat())
        committed = True
        if prep.annotate:
            prep = _label_skills(config, prep, paths, backend, reporter, retry_failed=retry_failed,
                                 from_output=state == "complete")
            if images:
                prep = fetch_videos(prep, config, reporter, prep.cameras)
        result = _generate_and_write(config, prep, paths, backend, reporter, t0, started,
                                     earlier=earlier, retry_failed=retry_failed, replace_output=state == "complete")
        return replace(result, runs_on=runs_on)
    finally:
        close = getattr(made, "close", None)
        if close is not None:
            close()  # connections, and servers this run started (also on Ctrl-C and errors)
        if committed:
            lock.release()
        else:
            lock.abandon()


def _resolve_for_plan(config: RunConfig, spec: Any) -> tuple[RunConfig, str | None]:
    """A dry run's checks and config. What the real run would refuse is refused here too (a model
    folder that is not there, a device that cannot work) — except what a plan does not need: a
    missing model stack and a server that is not up yet are said (the second value, also a warning),
    and the plan is made without them."""
    from hub_pgen.errors import HubPgenError, MissingPackagesError, ModelLoadError

    stops = None
    try:
        spec.check(config)
    except MissingPackagesError as e:
        stops = f"the real run would stop here (exit {e.exit_code}): {e}" + (f"; {e.hint}" if e.hint else "")
        logger.warning("--dry-run: %s", stops)
    except (UsageError, ModelLoadError):
        raise
    except HubPgenError as e:
        stops = f"the real run would stop here (exit {e.exit_code}): {e}"
        logger.warning("--dry-run: %s", stops)
    try:
        return spec.resolve(config), stops
    except HubPgenError as e:
        logger.warning("--dry-run: %s (the plan is made without it)", e)
        return config, stops or f"the real run asks the server for its model first, which failed here: {e}"


def say_where(backend: Any, reporter: Reporter) -> str | None:
    """The model, device and dtype a run uses, in its log and result (a backend that runs a model says it)."""
    runs_on = getattr(backend, "runs_on", None)
    if runs_on is None:
        return None
    line = runs_on()
    reporter.stage("model", line)
    logger.info("model: %s", line)
    return line


def _check_local_source(config: RunConfig) -> None:
    from hub_pgen.source.jsonl import require_file
    from hub_pgen.source.lerobot import require_folder

    if config.root is not None:
        require_folder(config.root)
    if config.input_jsonl is not None:
        require_file(config.input_jsonl)


class _Replay:
    """The backend of a merge: every sample is in the shards' records, so it is never asked; it
    describes the backend the shards ran (for the provenance)."""

    name = "replay"
    needs_images = False

    def __init__(self, details: dict[str, Any] | None) -> None:
        self._details = details or {}

    def describe(self) -> dict[str, Any]:
        return self._details

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        raise RuntimeError(f"merge: {len(requests)} sample(s) are in no shard")  # check_coverage refuses that first

    def complete_calls(self, calls: list[Any]) -> list[Any]:
        raise RuntimeError("merge: a shard result has no skills to label")


def merge(
    shard_paths: Sequence[Path], *, root: Path | None, repo_id: str | None, revision: str | None,
    output_dir: Path | None, push: dict[str, Any], reporter: Reporter | None = None, wait: bool = False,
) -> tuple[RunConfig, RunResult]:
    """``hub-pgen merge``: the dataset of a sharded job, as a one-machine run would write it."""
    from hub_pgen import merge as merge_mod

    t0 = time.monotonic()
    reporter = reporter or NullReporter()
    loaded = [merge_mod.load_shard(Path(p)) for p in shard_paths]
    merge_mod.check_shards(loaded)
    first = loaded[0]
    config = merge_mod.merge_config(first, root=root, repo_id=repo_id, revision=revision, output_dir=output_dir,
                                    push=push)
    reporter.stage("merge", f"{len(loaded)} shard(s) of job {first.fingerprint[:8]}")
    prep = prepare(config, reporter)
    if prep.identity != first.identity:
        from hub_pgen.config import diff_identity

        diff = diff_identity(first.identity, prep.identity)
        shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
        raise UsageError(f"the shards were made from another source or configuration than this merge's ({shown})",
                         hint="give the merge the source the shards ran on (--root / --repo-id and --revision)")
    merge_mod.check_source_files(loaded, prep.source.root if prep.source and not prep.source.repo_id else None)
    # the job's fingerprint (a local model is named, not located, in files); the shards it is merged from
    prep = replace(prep, fingerprint=first.fingerprint, merged_from={"shards": first.count})
    records = merge_mod.check_coverage(loaded, prep.samples, prep.fingerprint)
    output = config.output_dir or out_mod.default_output_dir(prep.source_name, prep.fingerprint)
    paths = out_mod.OutputPaths.for_output(output)
    source_root = prep.source.root if prep.source else None
    out_mod.inspect_output(paths, fingerprint=prep.fingerprint, identity=prep.identity, source_root=source_root)
    lock = RunLock(paths.work)
    lock.acquire(wait=wait)
    committed = False
    try:
        state = out_mod.inspect_output(paths, fingerprint=prep.fingerprint, identity=prep.identity,
                                       source_root=source_root)
        if state == "complete":
            out_mod.cleanup_work(paths)
            reporter.stage("done", f"{paths.output} is already complete for this job")
            return config, _result_from_output("already-complete", paths.output, prep, t0)
        if state == "stale":
            out_mod.discard_state(paths)
        started = out_mod.start_run(paths, fingerprint=prep.fingerprint, identity=prep.identity,
                                    started_at=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat())
        committed = True
        if not load_journal(paths.journal, fingerprint=prep.fingerprint):
            with JournalWriter(paths.journal) as writer:
                writer.append(records)
        backend = _Replay((first.provenance.get("generation") or {}).get("backend_details"))
        return config, _generate_and_write(config, prep, paths, backend, reporter, t0, started, earlier={},
                                           retry_failed=False, replace_output=False)
    finally:
        if committed:
            lock.release()
        else:
            lock.abandon()


def _label_skills(config: RunConfig, prep: Prepared, paths: out_mod.OutputPaths, backend: Backend, reporter: Reporter,
                  *, retry_failed: bool, from_output: bool) -> Prepared:
    """--skills annotate: each episode's skills from the model (or from the journal of an earlier
    try), then the plan made from them."""
    from hub_pgen.skills import SkillSet

    prep, result = label_episodes(config, prep, paths, backend, reporter, retry_failed=retry_failed,
                                  from_output=from_output)
    return plan_samples(config, prep, SkillSet(result.skills, "annotate"), reporter)


def label_episodes(config: RunConfig, prep: Prepared, paths: out_mod.OutputPaths, backend: Backend,
                   reporter: Reporter, *, retry_failed: bool, from_output: bool) -> tuple[Prepared, Any]:
    """Each episode's skills from the model (or from the journal of an earlier try, in
    ``OUT.partial/skills.jsonl``): ``prep`` with the records and notices, and the AnnotateResult."""
    from hub_pgen.skills.annotate import AnnotateOptions, annotate_episodes, load_records

    journal_path = paths.work / layout.SKILLS_JOURNAL_NAME
    done = load_records(journal_path, fingerprint=prep.fingerprint)
    earlier: dict[int, Any] = {}
    if from_output and not done:  # --retry-failed on a finished result: its labels, as they were
        earlier = {e: replace(r, fingerprint=prep.fingerprint) for e, r in
                   load_records(paths.output / layout.SKILL_ANNOTATIONS_PATH, fingerprint=None).items()}
        done = dict(earlier)
    tried = {e: r.attempts for e, r in done.items() if r.status != "ok"}
    if retry_failed:
        done = {e: r for e, r in done.items() if r.status == "ok"}
    episodes = list(config.episodes) if config.episodes is not None else sorted(prep.source.episodes)
    pending = [e for e in episodes if e not in done]
    if pending and getattr(backend, "needs_images", True):  # the labelled camera's videos, of what is left
        prep = fetch_videos(prep, config, reporter, prep.cameras[:1], pending)
    reporter.stage("skills", f"{len(episodes) - len(pending)} episode(s) labelled already, {len(pending)} to label "
                             f"with the {config.backend} backend")
    options = AnnotateOptions(camera=prep.cameras[0] if prep.cameras else None,
                              min_seconds=config.min_skill_seconds, seed=config.seed,
                              temperature=config.temperature, max_retries=config.max_retries,
                              batch_size=config.batch_size)
    with JournalWriter(journal_path) as writer:
        if earlier and not journal_path.stat().st_size:
            writer.append([earlier[e] for e in sorted(earlier)])
        try:
            result = annotate_episodes(prep.source, episodes, backend, options, done=done, append=writer.append,
                                       fingerprint=prep.fingerprint, tried=tried)
        except KeyboardInterrupt:
            raise Interrupted(len(load_records(journal_path, fingerprint=None)), len(episodes), journal_path,
                              "labelled episodes") from None
    failed = sorted(e for e, r in result.records.items() if r.status != "ok" and e in set(episodes))
    if not result.skills.episodes:
        raise SkillsError(f"the model labelled no usable skills for any of the {len(episodes)} episode(s), so there "
                          "is nothing to generate", path=journal_path,
                          hint="each answer and why it was refused is in that file: rerun with --retry-failed to ask "
                               "again (new seeds, sampling), or try another --model (that replaces this run)")
    notices = Notices()
    for e in failed:
        notices.add("the model labelled no usable skills for an episode (it gets no samples)", e,
                    str(result.records[e].error)[:160])
    for e, r in sorted(result.records.items()):
        for repair in r.repairs:
            notices.add(f"a labelled episode was repaired: {repair}", e)
    notices.log()
    return replace(prep, skill_records=result.records, notices=prep.notices + tuple(notices.lines())), result


def _labelling_cost(config: RunConfig, prep: Prepared) -> dict[str, Any]:
    """--dry-run of --skills annotate: what the labelling asks of the model, before any sample exists."""
    import math

    from hub_pgen.skills import sheets
    from hub_pgen.skills.annotate import episode_requests

    episodes = list(config.episodes) if config.episodes is not None else sorted(prep.source.episodes)
    requests = episode_requests(prep.source, episodes, config.min_skill_seconds)
    per_episode = [sheets.sheets_needed(len(r.times)) for r in requests]
    from hub_pgen.plan import cost

    camera = prep.cameras[0] if prep.cameras else None
    shape = cost.camera_shape(prep.source.features.get(camera)) if camera else None
    tokens = None
    uses_model = get_backend(config.backend).uses_model
    if shape:  # each sheet as laid out, through the model's image processor (hub_pgen.plan.cost)
        proc = cost.processor_for(config.model if uses_model else None, config.model_revision)
        tile_h = max(1, round(shape[0] * sheets.TILE_WIDTH / shape[1]))
        per = sheets.COLUMNS * sheets.ROWS
        tokens = 0
        for r in requests:
            for start in range(0, len(r.times), per):
                rows = math.ceil(min(per, len(r.times) - start) / sheets.COLUMNS)
                tokens += proc.image_tokens(rows * tile_h, sheets.COLUMNS * sheets.TILE_WIDTH)
    return {
        "episodes_to_label": len(requests),
        "labelling_camera": camera,
        "frames_shown_per_episode": f"{min((len(r.times) for r in requests), default=0)}-"
                                    f"{max((len(r.times) for r in requests), default=0)}",
        "contact_sheets": sum(per_episode),
        "image_tokens": tokens,  # all sheets, as laid out (Qwen2/2.5-VL: 28 px a token)
        "labelling_model_calls": len(requests) if uses_model else 0,
        "samples": "after labelling: one per skill (segment sampling), or per --sample-interval",
        "skills_per_episode_at_most": max((r.max_skills() for r in requests), default=0),
    }


def _skills_provenance(prep: Prepared, config: RunConfig | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"source": prep.skills.origin,
                           "episodes_with_skills": sum(1 for ep in prep.skills.skills.episodes.values() if ep.skills),
                           "skills": sum(len(ep.skills) for ep in prep.skills.skills.episodes.values())}
    if config is not None:
        out["requested"] = config.skills  # auto that came to labelling says so
    path = prep.skills.path
    if path is not None and prep.source is not None and Path(path).resolve() != (
            prep.source.root / layout.SKILLS_PATH).resolve():
        out["skills_file"] = Path(path).name  # --skills-file: by name (the path is the user's business)
    if prep.skills.origin == "annotate":
        out["labelled_by"] = prep.identity.get("backend", {}).get("backend") or "model"
    if prep.skill_records is not None:
        records = prep.skill_records.values()
        out.update(labelled=sum(r.status == "ok" for r in records),
                   failed=sorted(r.episode_index for r in records if r.status != "ok"),
                   repaired=sum(1 for r in records if r.repairs), file=layout.SKILL_ANNOTATIONS_PATH)
    return out


def _output_state(paths: out_mod.OutputPaths, prep: Prepared, source_root: Path | None) -> str:
    """What a real run would do with the output folder (read-only: for --dry-run)."""
    from hub_pgen.errors import HubPgenError

    try:
        folder_fp, folder_identity = prep.folder_key()
        state = out_mod.inspect_output(paths, fingerprint=folder_fp, identity=folder_identity,
                                       source_root=source_root)
    except HubPgenError as e:
        return f"would be refused (exit {e.exit_code}): {e}"
    return {"fresh": "new", "stale": "new (replaces a run that generated nothing)",
            "resume": "would resume the interrupted run in its journal",
            "complete": "already complete for this configuration (nothing to do)"}[state]


def _generate_and_write(
    config: RunConfig, prep: Prepared, paths: out_mod.OutputPaths, backend: Backend, reporter: Reporter,
    t0: float, started: str, *, earlier: dict[str, JournalRecord], retry_failed: bool, replace_output: bool,
) -> RunResult:
    journal = dict(earlier)
    journal.update(load_journal(paths.journal, fingerprint=prep.fingerprint))
    retry_ids = {sid for sid, r in journal.items() if r.status != "ok"} if retry_failed else set()
    with JournalWriter(paths.journal) as writer:
        if earlier and not paths.journal.stat().st_size:
            # --retry-failed on a finished result: its records are this run's journal from now on,
            # so a kill mid-retry resumes here and loses nothing
            writer.append([replace(r, fingerprint=prep.fingerprint) for r in earlier.values()])
        resumed = sum(1 for s in prep.samples if s.sample_id in journal and s.sample_id not in retry_ids)
        pending = [s for s in prep.samples if s.sample_id not in journal or s.sample_id in retry_ids]
        if resumed:
            reporter.stage("merge" if prep.merged_from else "resume",
                           f"{resumed} samples from {prep.merged_from['shards']} shards" if prep.merged_from
                           else f"{resumed} samples already in {paths.journal}")
        if retry_ids:
            reporter.stage("retry", f"{len(retry_ids)} failed sample(s) generated again")
        bad = [b for b in prep.bad_lines if b.sample_id not in journal]
        if bad:
            records = [_bad_line_record(b, prep.fingerprint) for b in bad]
            writer.append(records)
            journal.update({r.sample_id: r for r in records})
        reporter.samples_start(len(prep.samples), resumed)
        try:
            sent = generate_all(pending, prep, config, backend, writer, journal, reporter)
        except KeyboardInterrupt:
            # counted from the file: an interrupt between a batch's fsync and the run's view of it
            # would otherwise say one batch fewer than the resume finds
            safe = {**earlier, **load_journal(paths.journal, fingerprint=prep.fingerprint)}
            raise Interrupted(len(safe), len(prep.samples) + len(prep.bad_lines), paths.journal) from None

    if prep.source is not None and prep.source.repo_id and prep.shard is None:
        from hub_pgen.source.hub import fetch_rest

        reporter.stage("download", f"{prep.source.repo_id}: the rest of the dataset (every data file and camera), "
                                   "for the new dataset")
        prep = replace(prep, source=fetch_rest(prep.source))
    notes = list(getattr(backend, "notes", list)())  # what the backend noticed (a server ignoring the schema)
    from hub_pgen.quality import measure

    quality = measure([journal[s.sample_id] for s in prep.samples if s.sample_id in journal])
    alarms = quality.alarms(config.sampling if prep.source is not None else None)
    if get_backend(config.backend).uses_model:
        notes += alarms
    elif alarms:  # the template backend writes set phrasings on purpose: its measures advise nothing
        logger.info("quality alarms not raised for the %s backend (no model to change): %s", config.backend,
                    "; ".join(alarms))
    for line in notes:
        logger.warning("%s", line)
    from hub_pgen import filters

    verdicts = _verify(config, prep, paths, backend, journal, reporter) if config.verify else None
    why = filters.reasons(prep.samples, journal, config,  # shards: the merge filters
                          verdicts if config.verify == "filter" else None) if prep.shard is None else {}
    if why:
        logger.warning("%d dialogue(s) filtered (%s): recorded in %s with their reason", len(why),
                       "; ".join(f"{n} {r}" for r, n in filters.summary(why)["by_reason"].items()),
                       layout.SYN_ANNOTATIONS_PATH if prep.source is not None else layout.JSONL_RESULT_NAME)
    reporter.stage("write", f"{paths.output}")
    prov = provenance(config, prep, backend, journal, started)
    prov["notices"] = list(prep.notices) + notes
    prov["quality"] = quality.as_dict()
    prov["filtered"] = filters.summary(why)
    if verdicts is not None:
        from hub_pgen import verify as verify_mod

        prov["verify"] = {"mode": config.verify, **verify_mod.summary(verdicts)}
    if prep.skills is not None:
        prov["skills"] = _skills_provenance(prep, config)
    if prep.shard is not None:  # a shard result: keyed by the shard, merged by the job's fingerprint
        prov["fingerprint"], _ = prep.folder_key()
        prov["plan_fingerprint"] = prep.fingerprint
        prov["shard"] = dict(prep.shard)
        if prep.source is not None and not prep.source.repo_id:  # a Hub source is pinned by its sha
            from hub_pgen.merge import source_files

            prov["source_files"] = source_files(prep.source.root)  # the merge checks it ran on these
    if retry_ids:
        prov["retried"] = _retry_history(paths.output, retry_ids, journal, started)
    if prep.merged_from is not None:
        prov["merged_from"] = dict(prep.merged_from)
    staging = out_mod.fresh_staging(paths)
    written = filters.apply(journal, why)
    if verdicts is not None:
        written = verify_mod.annotate(written, verdicts)
    summary = _write(prep, written, staging, prov, config.output_format, paths.output.resolve().name)
    if prep.source is not None and prep.shard is None:
        _check_staged(staging, paths)
    faults.point("finalize")
    out_mod.finalize(paths, replace=replace_output)
    records = [journal[s.sample_id] for s in prep.samples if s.sample_id in journal]
    failures = tuple(r for r in records if r.status != "ok") + tuple(
        journal[b.sample_id] for b in prep.bad_lines if b.sample_id in journal)
    return RunResult(
        "written", paths.output, prep.fingerprint,
        samples=len(prep.samples) + len(prep.bad_lines),
        ok=sum(r.status == "ok" for r in records),
        failed=len(failures),
        resumed=0 if prep.merged_from else resumed,  # a merge's samples come from its shards, not a resume
        generated=sent,
        new_tasks=summary.get("new_tasks", 0),
        mix=prov["mix"],
        failures=failures,
        elapsed_s=time.monotonic() - t0,
        frames=summary.get("frames", 0),
        frames_labelled=summary.get("frames_labelled", 0),
        examples=_examples(records),
        notices=prep.notices + tuple(notes) + tuple(summary.get("notes", ())),
        retried=len(retry_ids),
        output_format=config.output_format if prep.source is not None else None,
        language=summary.get("language"),
        skills=prov.get("skills"),
        quality=prov.get("quality"),
        filtered=prov.get("filtered"),
        verify=prov.get("verify"),
        report=_report_path(paths.output),
        shard=dict(prep.shard) if prep.shard is not None else None,
    )


def _report_path(output: Path) -> Path | None:
    path = output / layout.REPORT_PATH
    return path if path.is_file() else None


def _check_staged(staging: Path, paths: out_mod.OutputPaths) -> None:
    """The folder about to become ``OUT`` passes ``hub-pgen validate`` — never "written" for a result
    that the validator (and the push) would refuse. Costs a read of the metadata and of one int64
    column per data file (docs/benchmarks.md)."""
    import shutil

    from hub_pgen.validate import problems

    found = problems(staging)
    if found:
        shutil.rmtree(staging, ignore_errors=True)
        raise ValidationError(staging, found + [f"(nothing was moved to {paths.output}; the journal is kept: "
                                                "report this with the command you ran)"])


def _earlier_records(output: Path, fp: str) -> dict[str, JournalRecord]:
    """The records of a finished result (its D_syn file: the journal's lines, with task indices), as
    journal records of this configuration."""
    for path in (output / layout.SYN_ANNOTATIONS_PATH, output / layout.JSONL_RESULT_NAME):
        if path.is_file():
            return {sid: replace(r, fingerprint=fp, task_index_high_level=None, verified=None)
                    for sid, r in load_journal(path).items()}
    return {}


def _retry_history(output: Path, retry_ids: set[str], journal: dict[str, JournalRecord], at: str) -> list[dict]:
    """Every --retry-failed pass over this result: when, how many were retried, how many recovered."""
    history: list[dict] = []
    prov_path = output / layout.PROVENANCE_PATH
    if prov_path.is_file():
        from hub_pgen.provenance_file import read_provenance

        try:
            history = list(read_provenance(output).get("retried", []))
        except SourceError as e:
            logger.warning("the earlier --retry-failed passes are not kept: %s", e.message)
            history = []
    recovered = sum(1 for sid in retry_ids if journal.get(sid) is not None and journal[sid].status == "ok")
    return history + [{"at": at, "retried": len(retry_ids), "recovered": recovered}]


def _examples(records: Sequence[JournalRecord], n: int = 3) -> tuple[JournalRecord, ...]:
    """A few dialogues from different skills, to show what was made."""
    picked: list[JournalRecord] = []
    seen: set[str] = set()
    for r in records:
        if r.status == "ok" and r.skill_current not in seen:
            picked.append(r)
            seen.add(r.skill_current)
        if len(picked) >= n:
            break
    return tuple(picked)


def _write(prep: Prepared, journal: dict[str, JournalRecord], staging: Path, prov: dict[str, Any],
           output_format: str, output_name: str) -> dict[str, Any]:
    """Write the result into ``staging``; returns its counts (new tasks rows, frames, labelled frames)
    and what to tell the user about the source's own language rows (``notes``)."""
    from hub_pgen.write.dataset import write_dataset, write_jsonl_result

    examples = [journal[s.sample_id] for s in prep.samples if s.sample_id in journal]
    origin = prep.skills.origin if prep.skills is not None else "file"
    if prep.source is None or prep.shard is not None:  # a JSONL run, or a shard: the D_syn records alone
        skills_file = _skills_to_write(prep, origin) if prep.shard is not None else None
        write_jsonl_result(prep.samples, prep.bad_lines, journal, staging, provenance=prov,
                           skills_file=skills_file if isinstance(skills_file, Path) else None)
        return {}

    summary = write_dataset(prep.source, prep.samples, journal, staging, provenance=prov,
                            card=lambda final: render_card(final, examples),
                            segments=prep.plan.segments if prep.plan is not None else (),
                            output_format=output_format,
                            skills_json=_skills_to_write(prep, origin),
                            skill_records=[r.to_json() for _, r in sorted((prep.skill_records or {}).items())])
    notes = summary.language.lines() if summary.language is not None else []
    language = summary.language.as_dict() if summary.language is not None else None
    for line in notes:
        logger.warning("%s", line)
    from hub_pgen.review import write_report

    # part of the result (and so pushed with it): the dataset as written, named as OUT will be
    try:
        report = write_report(staging, name=output_name)
    except Exception as e:  # noqa: BLE001 — a view of the dataset: failing to draw it must not cost the dataset
        line = (f"the review page could not be written ({type(e).__name__}: {e}); the dataset is complete: "
                f"hub-pgen report OUT tries again (HUB_PGEN_DEBUG=1 shows why)")
        logger.warning("%s", line, exc_info=bool(os.environ.get("HUB_PGEN_DEBUG")))
        notes.append(line)
    else:
        if report.unreadable_images:
            notes.append(f"the review page shows {report.unreadable_images} frame(s) as unavailable (they could not "
                         f"be decoded): see {layout.REPORT_PATH}")
    return {"new_tasks": summary.new_tasks, "frames": summary.frames, "frames_labelled": summary.frames_labelled,
            "notes": notes, "language": language}


def _verify(config: RunConfig, prep: Prepared, paths: out_mod.OutputPaths, backend: Backend,
            journal: dict[str, JournalRecord], reporter: Reporter) -> dict[str, Any]:
    """--verify: a verdict for every ok sample (journaled: a resumed run asks nothing twice)."""
    from hub_pgen import verify as verify_mod

    path = paths.work / "verify.jsonl"
    done = verify_mod.load(path, fingerprint=prep.fingerprint)
    reporter.stage("verify", f"asking the {config.backend} backend which skill each user prompt leads to "
                             f"({len(done)} verdict(s) from an earlier try)")
    with JournalWriter(path) as writer:
        return verify_mod.verify(prep.samples, journal, prep.plan.segments if prep.plan else (), backend, done=done,
                                 append=writer.append, fingerprint=prep.fingerprint, seed_of=sample_seed,
                                 seed=config.seed, batch_size=config.batch_size)


def _skills_to_write(prep: Prepared, origin: str) -> Any:
    """What the new dataset's meta/skills.json is: the source's own file as it is (None: copied with the
    rest), a skills file from elsewhere as it is (its path), or the skills in the seed's format."""
    from hub_pgen import skills as skills_mod

    if origin != "file":
        return skills_mod.to_json(prep.skills.skills)
    path = prep.skills.path if prep.skills is not None else None
    if path is None or Path(path).resolve() == (prep.source.root / layout.SKILLS_PATH).resolve():
        return None
    return Path(path)


def _bad_line_record(bad: Any, fp: str) -> JournalRecord:
    return JournalRecord(
        sample_id=bad.sample_id, status="failed", episode_id="", t=None, images=(), skill_current="",
        skill_history=(), task_description="", user_prompt=None, robot_utterance=None, scenario_type="",
        response_type="", error=f"input line {bad.line}: {bad.reason}", fingerprint=fp,
    )


def _result_from_output(state: str, output: Path, prep: Prepared, t0: float) -> RunResult:
    """What an already-complete output holds, from its provenance and its D_syn records."""
    from hub_pgen.provenance_file import read_provenance

    prov = read_provenance(output)
    counts = prov.get("counts", {})
    records = list(_earlier_records(output, prep.fingerprint).values())
    failures = tuple(r for r in records if r.status == "failed")  # not the filtered ones (counted apart)
    return RunResult(state, output, prep.fingerprint, samples=counts.get("samples", 0), ok=counts.get("ok", 0),
                     failed=counts.get("failed", 0), new_tasks=counts.get("new_tasks", 0), mix=prov.get("mix", {}),
                     failures=failures, elapsed_s=time.monotonic() - t0, frames=counts.get("frames", 0),
                     frames_labelled=counts.get("frames_labelled", 0), examples=_examples(records),
                     notices=prep.notices,
                     output_format=prov.get("format", "hirobot") if prep.source is not None else None,
                     language=prov.get("language"), skills=prov.get("skills"), quality=prov.get("quality"),
                     filtered=prov.get("filtered"), verify=prov.get("verify"), report=_report_path(output))
