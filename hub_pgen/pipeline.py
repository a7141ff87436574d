"""The run: source → plan → frames → generate → journal → write (→ push).

:func:`run` is what the CLI calls; every stage is a plain function of its own module, so this file
only wires them and owns the loop that streams samples through frames, generation and the journal.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hub_pgen import __version__, faults, layout
from hub_pgen.config import RunConfig, file_digest, fingerprint
from hub_pgen.data import GenerationRequest, GenerationResult, JournalRecord, Sample, SourceDataset
from hub_pgen.errors import FrameError, Interrupted, UsageError
from hub_pgen.generate.base import Backend
from hub_pgen.generate.prompt import construct_prompt, prompt_template_hash
from hub_pgen.journal import JournalWriter, load_journal
from hub_pgen.plan import planner
from hub_pgen.plan.taxonomy import assign_types, mix_report
from hub_pgen.progress import NullReporter, Reporter
from hub_pgen.write import output as out_mod
from hub_pgen.write.card import render_card

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


# --- stages -------------------------------------------------------------------------------------


def backend_identity(config: RunConfig) -> dict[str, Any]:
    """Known before the model is loaded, so a mismatching output is refused before minutes of loading."""
    if config.backend == "template":
        return {"backend": "template", "version": 1}
    return {"backend": "transformers", "model": config.model, "revision": config.model_revision, "dtype": config.dtype}


def make_backend(config: RunConfig) -> Backend:
    if config.backend == "template":
        from hub_pgen.generate.template import TemplateBackend

        return TemplateBackend()
    if config.backend == "transformers":
        from hub_pgen.generate.qwen import TransformersBackend

        return TransformersBackend.load(
            config.model,
            device=config.device,
            dtype=config.dtype,
            attn_implementation=config.attn_implementation,
            trust_remote_code=config.trust_remote_code,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            constrained=config.constrained,
            max_retries=config.max_retries,
            max_pixels=config.max_pixels,
            revision=config.model_revision,
        )
    raise UsageError(f"unknown backend {config.backend!r}; choose template or transformers")


def open_source(config: RunConfig, reporter: Reporter, *, videos: bool = True) -> SourceDataset:
    """The source dataset; from the Hub, ``videos=False`` (a dry run) fetches metadata and data only."""
    from hub_pgen.source.lerobot import load_source

    if config.root is not None:
        return load_source(config.root)
    from hub_pgen.source import hub

    reporter.stage("download", f"{config.repo_id} metadata")
    # first what generation looks at: the chosen cameras' videos (none for the template backend);
    # the other cameras follow just before the dataset is written (fetch_remaining_videos)
    return hub.open_hub_source(config.repo_id, revision=config.revision, reporter=reporter,
                               image_keys=config.image_keys, num_views=config.num_image_views,
                               videos=videos and config.backend != "template", only_cameras_used=True)


def source_identity(source: SourceDataset) -> dict[str, Any]:
    if source.repo_id and source.revision:
        return {"repo_id": source.repo_id, "sha": source.revision}
    digests = {}
    for rel in (layout.INFO_PATH, layout.TASKS_PATH, layout.SKILLS_PATH):
        p = source.root / rel
        digests[rel] = file_digest(p) if p.is_file() else None
    return {"local": digests}


def prepare(config: RunConfig, reporter: Reporter, *, videos: bool = True) -> Prepared:
    if config.input_jsonl is not None:
        return _prepare_jsonl(config)
    from hub_pgen.source.skills import load_skills

    reporter.stage("source", str(config.root or config.repo_id))
    source = open_source(config, reporter, videos=videos)
    skills = load_skills(source.root / layout.SKILLS_PATH, known_episodes=set(source.episodes))
    cameras = planner.choose_cameras(source, image_keys=config.image_keys, num_views=config.num_image_views)
    reporter.stage("plan", f"sampling={config.sampling}, cameras={', '.join(cameras) or '(none)'}")
    plan = planner.build_plan(
        source,
        skills,
        strategy=config.sampling,
        interval=config.sample_interval,
        episodes=config.episodes,
        cameras=cameras,
        seed=config.seed,
        scenario_mix=config.scenario_mix,
        response_mix=config.response_mix,
    )
    identity = config.identity(cameras=cameras, source_id=source_identity(source),
                               backend_id=backend_identity(config), prompt_hash=prompt_template_hash())
    name = (source.repo_id or source.root.name).split("/")[-1]
    return Prepared(source, plan.samples, (), cameras, identity, fingerprint(identity), name, plan, None)


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
                               backend_id=backend_identity(config), prompt_hash=prompt_template_hash())
    return Prepared(None, tuple(samples), tuple(bad), (), identity, fingerprint(identity), path.stem, None,
                    path.parent)


def plan_report(config: RunConfig, prep: Prepared) -> dict[str, Any]:
    """What ``--dry-run`` prints: the plan under every strategy, and the cost of the chosen one."""
    report: dict[str, Any] = {"fingerprint": prep.fingerprint, "cameras": list(prep.cameras)}
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
        samples=len(plan.samples),
        model_calls=len(plan.samples) if config.backend != "template" else 0,
        batches=-(-len(plan.samples) // config.batch_size),
        mix=mix_report([(s.scenario_type, s.response_type) for s in plan.samples]),
    )
    return report


def sample_seed(seed: int, sample_id: str) -> int:
    """Per-sample seed: the same sample gets the same seed whatever batch or resume it lands in."""
    return (seed * 1_000_003 + zlib.crc32(sample_id.encode())) & 0x7FFFFFFF


def to_record(sample: Sample, result: GenerationResult, fp: str) -> JournalRecord:
    d = result.dialogue
    return JournalRecord(
        sample_id=sample.sample_id,
        status="ok" if d is not None else "failed",
        episode_id=sample.episode_id,
        t=sample.frame_index,
        images=tuple(ref.label() for ref in sample.images),
        skill_current=sample.skill_current,
        skill_history=sample.skill_history,
        task_description=sample.task_description,
        user_prompt=d.user_prompt if d else None,
        robot_utterance=d.robot_utterance if d else None,
        scenario_type=d.scenario_type if d else sample.scenario_type,
        response_type=d.response_type if d else sample.response_type,
        episode_index=sample.episode_index,
        frame_index=sample.frame_index,
        timestamp=sample.timestamp,
        frame_start=sample.frame_start,
        frame_end=sample.frame_end,
        error=result.error,
        raw_text=result.raw_text or None,
        attempts=result.attempts,
        fingerprint=fp,
    )


def iter_images(
    samples: Sequence[Sample], prep: Prepared, backend: Backend, max_pixels: int | None
) -> Iterator[tuple[Sample, list[Any] | FrameError]]:
    if not getattr(backend, "needs_images", True):
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
    """Stream pending samples through frames → backend → journal. Returns samples sent to the backend."""
    sent = 0
    for batch in batched(iter_images(pending, prep, backend, config.max_pixels), config.batch_size):
        requests: list[GenerationRequest] = []
        records: list[JournalRecord] = []
        for sample, images in batch:
            if isinstance(images, FrameError):
                records.append(to_record(sample, GenerationResult(sample.sample_id, None, error=f"frames: {images}"),
                                         prep.fingerprint))
                continue
            requests.append(GenerationRequest(sample, construct_prompt(sample), tuple(images),
                                              sample_seed(config.seed, sample.sample_id)))
        faults.point("frames")
        if requests:
            results = backend.generate(requests)
            faults.point("generate")
            sent += len(requests)
            if len(results) != len(requests):
                raise RuntimeError(f"backend {backend.name} returned {len(results)} results for {len(requests)} requests")
            records += [to_record(req.sample, res, prep.fingerprint) for req, res in zip(requests, results)]
        writer.append(records)
        faults.point("journal")
        for r in records:
            journal[r.sample_id] = r
        reporter.samples_advance(sum(r.status == "ok" for r in records), sum(r.status != "ok" for r in records))
    return sent


def provenance(config: RunConfig, prep: Prepared, backend: Backend | None, journal: dict[str, JournalRecord],
               started_at: str) -> dict[str, Any]:
    src = prep.source
    ok = sum(1 for s in prep.samples if (r := journal.get(s.sample_id)) is not None and r.status == "ok")
    total = len(prep.samples) + len(prep.bad_lines)
    params = config.parameters()
    params.pop("output_dir", None)
    if params.get("root"):
        params["root"] = Path(params["root"]).name  # no local paths in a file that gets pushed
    if params.get("input_jsonl"):
        params["input_jsonl"] = Path(params["input_jsonl"]).name
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
            "model": config.model if config.backend != "template" else None,
            "backend_details": backend.describe() if backend is not None else None,
            "prompt_template": prompt_template_hash(),
            "sampling": config.sampling,
            "sample_interval": config.sample_interval,
            "cameras": list(prep.cameras),
        },
        "parameters": params,
        "counts": {"samples": total, "ok": ok, "failed": total - ok},
        "mix": mix_report([(s.scenario_type, s.response_type) for s in prep.samples]),
    }


# --- the run ------------------------------------------------------------------------------------


def run(
    config: RunConfig,
    *,
    backend: Backend | None = None,
    reporter: Reporter | None = None,
    dry_run: bool = False,
) -> RunResult:
    t0 = time.monotonic()
    reporter = reporter or NullReporter()
    prep = prepare(config, reporter, videos=not dry_run)
    faults.point("plan")
    if dry_run:
        return RunResult("dry-run", None, prep.fingerprint, samples=len(prep.samples),
                         plan_report=plan_report(config, prep), elapsed_s=time.monotonic() - t0)

    output = config.output_dir or out_mod.default_output_dir(prep.source_name, prep.fingerprint)
    paths = out_mod.OutputPaths.for_output(output)
    state = out_mod.inspect_output(paths, fingerprint=prep.fingerprint, identity=prep.identity,
                                   source_root=prep.source.root if prep.source else None)
    if state == "complete":
        out_mod.cleanup_work(paths)
        reporter.stage("done", f"{paths.output} is already complete for this configuration")
        return _result_from_output("already-complete", paths.output, prep, t0)

    started = out_mod.start_run(paths, fingerprint=prep.fingerprint, identity=prep.identity,
                                started_at=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat())
    journal = load_journal(paths.journal, fingerprint=prep.fingerprint)
    resumed = sum(1 for s in prep.samples if s.sample_id in journal)
    pending = [s for s in prep.samples if s.sample_id not in journal]
    if resumed:
        reporter.stage("resume", f"{resumed} samples already in {paths.journal}")
    reporter.stage("load", f"backend {config.backend}" + (f", model {config.model}" if config.backend != "template" else ""))
    if backend is None:
        backend = make_backend(config)

    with JournalWriter(paths.journal) as writer:
        bad = [b for b in prep.bad_lines if b.sample_id not in journal]
        if bad:
            records = [_bad_line_record(b, prep.fingerprint) for b in bad]
            writer.append(records)
            journal.update({r.sample_id: r for r in records})
        reporter.samples_start(len(prep.samples), resumed)
        try:
            sent = generate_all(pending, prep, config, backend, writer, journal, reporter)
        except KeyboardInterrupt:
            raise Interrupted(len(journal), len(prep.samples) + len(prep.bad_lines), paths.journal) from None

    if prep.source is not None and prep.source.repo_id:
        from hub_pgen.source.hub import fetch_remaining_videos

        reporter.stage("download", f"{prep.source.repo_id}: every camera's videos, for the new dataset")
        fetch_remaining_videos(prep.source)
    reporter.stage("write", f"{paths.output}")
    prov = provenance(config, prep, backend, journal, started)
    staging = out_mod.fresh_staging(paths)
    new_tasks = _write(prep, journal, staging, prov)
    faults.point("finalize")
    out_mod.finalize(paths)
    records = [journal[s.sample_id] for s in prep.samples if s.sample_id in journal]
    failures = tuple(r for r in records if r.status != "ok") + tuple(
        journal[b.sample_id] for b in prep.bad_lines if b.sample_id in journal)
    return RunResult(
        "written", paths.output, prep.fingerprint,
        samples=len(prep.samples) + len(prep.bad_lines),
        ok=sum(r.status == "ok" for r in records),
        failed=len(failures),
        resumed=resumed,
        generated=sent,
        new_tasks=new_tasks,
        mix=prov["mix"],
        failures=failures,
        elapsed_s=time.monotonic() - t0,
    )


def _write(prep: Prepared, journal: dict[str, JournalRecord], staging: Path, prov: dict[str, Any]) -> int:
    from hub_pgen.write.dataset import write_dataset, write_jsonl_result

    examples = [journal[s.sample_id] for s in prep.samples if s.sample_id in journal]
    if prep.source is None:
        return write_jsonl_result(prep.samples, prep.bad_lines, journal, staging, provenance=prov)
    summary = write_dataset(prep.source, prep.samples, journal, staging, provenance=prov,
                            card=render_card(prov, examples))
    return summary.new_tasks


def _bad_line_record(bad: Any, fp: str) -> JournalRecord:
    return JournalRecord(
        sample_id=bad.sample_id, status="failed", episode_id="", t=None, images=(), skill_current="",
        skill_history=(), task_description="", user_prompt=None, robot_utterance=None, scenario_type="",
        response_type="", error=f"input line {bad.line}: {bad.reason}", fingerprint=fp,
    )


def _result_from_output(state: str, output: Path, prep: Prepared, t0: float) -> RunResult:
    import json

    prov = json.loads((output / layout.PROVENANCE_PATH).read_text(encoding="utf-8"))
    counts = prov.get("counts", {})
    return RunResult(state, output, prep.fingerprint, samples=counts.get("samples", 0), ok=counts.get("ok", 0),
                     failed=counts.get("failed", 0), new_tasks=counts.get("new_tasks", 0), mix=prov.get("mix", {}),
                     elapsed_s=time.monotonic() - t0)
