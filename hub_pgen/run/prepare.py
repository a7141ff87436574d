"""Everything known before generation starts (:class:`Prepared`): the source opened, the skills
resolved, the plan made, the identity and fingerprint; the checks a run makes before it touches a folder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hub_pgen import layout
from hub_pgen.config import RunConfig, file_digest, fingerprint
from hub_pgen.data import Sample, SourceDataset
from hub_pgen.errors import SkillsError, SourceError, UsageError
from hub_pgen.generate.base import Backend
from hub_pgen.generate.prompt import prompt_template_hash
from hub_pgen.generate.registry import get_backend
from hub_pgen.notices import Notices
from hub_pgen.plan import planner
from hub_pgen.plan.table import episode_set
from hub_pgen.plan.taxonomy import assign_types
from hub_pgen.progress import Reporter
from hub_pgen.run.dry_run import labelling_cost
from hub_pgen.run.provenance import public_identity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """Everything known before generation starts."""

    source: SourceDataset | None
    samples: Sequence[Sample]  # a dataset's: the plan's columns (hub_pgen.plan.table); JSONL input's: a tuple
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
    shard: dict[str, Any] | None = None  # --num-shards: {"index", "count", "episodes", "samples"} (hub_pgen.run.shards)
    merged_from: dict[str, Any] | None = None  # hub-pgen merge: {"shards": N} (its samples come from them)
    page_ids: tuple[str, ...] = ()  # a shard: its samples the merged page will likely show (it makes their thumbnails)

    @property
    def dataset(self) -> SourceDataset:
        """The source dataset, for the steps that read one (an ``--input-jsonl`` run has none and never
        reaches them)."""
        if self.source is None:
            raise RuntimeError("this step reads a dataset; an --input-jsonl run has none")
        return self.source

    def folder_key(self) -> tuple[str, dict[str, Any]]:
        """What the output folder is keyed by: the fingerprint (and identity), plus the shard of a shard run."""
        if self.shard is None:
            return self.fingerprint, self.identity
        from hub_pgen.run import shards

        return (shards.folder_key(self.fingerprint, self.shard["index"], self.shard["count"]),
                {**self.identity, "shard": shards.label(self.shard["index"], self.shard["count"])})


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
    assert config.repo_id is not None  # the source is a folder, a file or a repo: RunConfig checks one is given
    meta = hub.open_hub_metadata(config.repo_id, revision=config.revision, image_keys=config.image_keys,
                                 num_views=config.num_image_views)
    data = needs.plan_data(meta, config.episodes)
    ahead = None
    if data is None and config.num_shards > 1 and not needs.has_language(meta):
        from hub_pgen.run import shards

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

    wanted = set(episodes) if episodes is not None else episode_set(prep.samples)
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
        from hub_pgen.run import shards

        differ = shards.ahead_differs(ahead, prep.plan, prep.source)
        if differ:
            from hub_pgen.source import hub

            logger.warning("episode(s) %s: the data's frame times are not the ones meta/episodes' timestamp stats "
                           "describe, so this shard cannot plan the other shards' episodes from the stats: reading "
                           "every data file", planner.format_episode_list(differ))
            prep = _prepare_dataset(config, reporter, hub.fetch(prep.dataset, data=None))
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
        prep = Prepared(source, (), (), cameras, public_identity(identity), fingerprint(identity), name, None, None,
                        annotate=True)
        if config.skills == "auto":
            prep = replace(prep, labelling=labelling_cost(config, prep))
            notices += (_labelling_notice(config, prep.labelling or {}),)
        for line in notices:
            logger.warning("%s", line)
        return replace(prep, notices=notices)
    identity = config.identity(cameras=cameras, source_id=source_identity(source),
                               backend_id=backend_identity(config), prompt_hash=prompt_template_hash(config.prompt_template),
                               skills_id=skill_set.identity())
    prep = Prepared(source, (), (), cameras, public_identity(identity), fingerprint(identity), name, None, None,
                    skills=skill_set)
    return plan_samples(config, prep, skill_set, reporter)


def _refuse_labelling_here(config: RunConfig, source: SourceDataset) -> None:
    """``--skills auto`` came to labelling in a run that cannot label (a shard, a Ray run): say so
    before anything exists, with the two commands that do it."""
    from hub_pgen.run.engine import get_engine

    why = ("a shard cannot label: every shard needs every episode's skills for the plan's type schedule"
           if config.num_shards > 1 else get_engine(config.engine).cannot_label())
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
    """What ``--skills auto`` tells the user, up front, when it comes to labelling (``cost``: labelling_cost)."""
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
        prep.dataset,
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

    assert config.input_jsonl is not None
    path = Path(config.input_jsonl)
    samples, bad = load_labeled_jsonl(path)
    if config.num_image_views is not None:
        samples = [replace(s, images=s.images[: config.num_image_views]) for s in samples]
    types = assign_types(len(samples), seed=config.seed, scenario_mix=config.scenario_mix,
                         response_mix=config.response_mix)
    samples = [replace(s, scenario_type=a, response_type=b) for s, (a, b) in zip(samples, types)]
    identity = config.identity(cameras=(), source_id={"jsonl": file_digest(path)},
                               backend_id=backend_identity(config), prompt_hash=prompt_template_hash(config.prompt_template))
    return Prepared(None, tuple(samples), tuple(bad), (), public_identity(identity), fingerprint(identity), path.stem, None,
                    path.parent)


def check_local_source(config: RunConfig) -> None:
    from hub_pgen.source.jsonl import require_file
    from hub_pgen.source.lerobot import require_folder

    if config.root is not None:
        require_folder(config.root)
    if config.input_jsonl is not None:
        require_file(config.input_jsonl)


def resolve_for_plan(config: RunConfig, spec: Any) -> tuple[RunConfig, str | None]:
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
