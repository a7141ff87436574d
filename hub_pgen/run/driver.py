"""The driver: :func:`run` and :func:`merge`, each check → prepare → lock → engine → finish.

Both take the output folder the same way (:func:`hub_pgen.run.folder.claimed`: locked; refused if
another configuration's, resumed if this one's) and hand the rest to the same steps: :func:`hub_pgen.run.generation.generate`
(the journal, and the engine) and :func:`hub_pgen.run.finish.finish` (everything after generation).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hub_pgen import faults, layout
from hub_pgen.config import RunConfig
from hub_pgen.data import GenerationRequest, GenerationResult, JournalRecord
from hub_pgen.errors import UsageError
from hub_pgen.generate.base import Backend
from hub_pgen.generate.registry import get_backend
from hub_pgen.journal import has_records
from hub_pgen.plan.table import IdView, episode_set, locator
from hub_pgen.progress import NullReporter, Reporter
from hub_pgen.run.context import RunContext
from hub_pgen.run.dry_run import output_state, plan_report
from hub_pgen.run.engine import Engine, get_engine
from hub_pgen.run.finish import finish
from hub_pgen.run.folder import claimed
from hub_pgen.run.generation import generate
from hub_pgen.run.labelling import label_skills
from hub_pgen.run.prepare import (
    Prepared,
    check_local_source,
    fetch_videos,
    make_backend,
    prepare,
    resolve_for_plan,
    say_where,
)
from hub_pgen.run.provenance import public_model_name
from hub_pgen.run.result import RunResult, earlier_records, result_from_output
from hub_pgen.write import output as out_mod

logger = logging.getLogger(__name__)


def run(
    config: RunConfig,
    *,
    backend: Backend | None = None,
    reporter: Reporter | None = None,
    dry_run: bool = False,
    wait: bool = False,
    retry_failed: bool = False,
    review: bool = True,
) -> RunResult:
    """Run the whole job. ``wait``: if another run holds the output folder, wait for it instead of
    refusing. ``retry_failed``: generate the failed samples of an existing result (or journal) again.
    ``review``: write the review page with the dataset (``--no-review``: not)."""
    t0 = time.monotonic()
    reporter = reporter or NullReporter()
    spec = get_backend(config.backend)
    engine = get_engine(config.engine)
    check_local_source(config)  # a wrong --root is said before a missing model stack (which it would hide)
    stops = None
    if backend is None and dry_run:  # the plan and its cost need no model stack, no GPU, no server
        config, stops = resolve_for_plan(config, spec)
    elif backend is None:
        engine.check(config)  # e.g. --engine ray without ray
        if engine.checks_backend_here(config):
            spec.check(config)  # e.g. --device cuda without a GPU: before any download or folder
        config = spec.resolve(config)  # e.g. the served model's name
    prep = prepare(config, reporter)
    faults.point("plan")
    output = config.output_dir or out_mod.default_output_dir(prep.source_name, prep.fingerprint)
    if config.num_shards > 1:
        prep, output = _shard_of(config, prep, output, reporter)
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
                      output=str(paths.output), output_state=output_state(paths, prep, source_root))
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
    with claimed(paths, wait=wait) as claim:
        made: Backend | None = None  # a backend this run made (and so closes)
        try:
            # again under the lock: a run that held it may have finished (or started) this folder
            state = out_mod.inspect_output(paths, fingerprint=folder_fp, identity=folder_identity,
                                           source_root=source_root)
            earlier: dict[str, JournalRecord] = {}
            if state == "complete":
                earlier = earlier_records(paths.output, prep.fingerprint) if retry_failed else {}
                if not any(r.status != "ok" for r in earlier.values()):
                    out_mod.cleanup_work(paths)
                    reporter.stage("done", f"{paths.output} is already complete for this configuration"
                                   + (" (no failed samples to retry)" if retry_failed else ""))
                    return result_from_output("already-complete", paths.output, prep, t0)
            elif state == "stale":
                logger.info("%s holds a run of another configuration that generated nothing; replacing it",
                            paths.work)
                out_mod.discard_state(paths)

            reporter.stage("load", f"backend {config.backend}"
                           + (f", model {config.model}" if spec.uses_model else ""))
            runs_on: str | None = None
            if backend is None:
                backend = _driver_backend(engine, config, spec, prep)
            if backend is None:
                backend = made = make_backend(config)  # before run.json: a typo in --model leaves nothing behind
                runs_on = say_where(backend, reporter)
                start = getattr(backend, "start", None)
                if start is not None:  # servers it starts (logs beside the journal), and a first look at them
                    start(paths.work / layout.SERVERS_NAME, lambda msg: reporter.stage("serve", msg))
            started = claim.start(folder_fp, folder_identity)
            if prep.annotate:
                prep = label_skills(config, prep, paths, backend, reporter, retry_failed=retry_failed,
                                    from_output=state == "complete")
                if images:
                    prep = fetch_videos(prep, config, reporter, prep.cameras)
            ctx = RunContext(config, prep, paths, backend, reporter, t0, started,
                             thumbs=thumb_keeper(prep) if review else None, review=review)
            gen = generate(ctx, engine, earlier=earlier, retry_failed=retry_failed)
            result = finish(ctx, gen, replace_output=state == "complete")
            return replace(result, runs_on=runs_on)
        finally:
            close = getattr(made, "close", None)
            if close is not None:
                close()  # connections, and servers this run started (also on Ctrl-C and errors)


def _shard_of(config: RunConfig, prep: Prepared, output: Path, reporter: Reporter) -> tuple[Prepared, Path]:
    """``--num-shards``: this shard's samples of the plan, and its default folder."""
    from hub_pgen.review.thumbs import likely_shown
    from hub_pgen.run import shards

    samples, episodes = shards.select(prep.samples, config.num_shards, config.shard_index)
    planned = len(episode_set(prep.samples))
    own = locator(samples)
    prep = replace(prep, samples=samples, shard={"index": config.shard_index, "count": config.num_shards,
                                                 "episodes": list(episodes), "samples": len(samples)},
                   page_ids=tuple(sid for sid in likely_shown(IdView(prep.samples)) if own(sid) is not None))
    output = config.output_dir or shards.default_dir(output, config.shard_index, config.num_shards)
    reporter.stage("shard", f"{shards.label(config.shard_index, config.num_shards)}: {len(samples)} of the "
                            f"plan's samples, {len(episodes)} episode(s)")
    if not samples:
        logger.warning("shard %s has no samples: the plan's %d episode(s) with samples fill fewer than %d shards "
                       "(it still writes an empty shard, so the merge finds every shard); fewer shards would do",
                       shards.label(config.shard_index, config.num_shards), planned, config.num_shards)
    return prep, output


def _driver_backend(engine: Engine, config: RunConfig, spec: Any, prep: Prepared) -> Backend | None:
    """The engine's stand-in when the model loads elsewhere (None: this process makes the backend)."""
    stand_in = engine.driver_backend(config, spec)
    if stand_in is not None and prep.annotate:
        raise UsageError("--skills annotate runs with the local engine",
                         hint="label the skills once first: hub-pgen label (the same source and model "
                              "options) --output-dir labels; then --engine ray with --skills-file "
                              "labels/meta/skills.json")
    return stand_in


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
    review: bool = True,
) -> tuple[RunConfig, RunResult]:
    """``hub-pgen merge``: the dataset of a sharded job, as a one-machine run would write it."""
    from hub_pgen.run import merging as merge_mod
    from hub_pgen.run.shard_sources import check_source_files

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
    check_source_files(loaded, prep.source.root if prep.source and not prep.source.repo_id else None)
    # the job's fingerprint (a local model is named, not located, in files); the shards it is merged from
    prep = replace(prep, fingerprint=first.fingerprint, merged_from={"shards": first.count})
    output = config.output_dir or out_mod.default_output_dir(prep.source_name, prep.fingerprint)
    paths = out_mod.OutputPaths.for_output(output)
    source_root = prep.source.root if prep.source else None
    out_mod.inspect_output(paths, fingerprint=prep.fingerprint, identity=prep.identity, source_root=source_root)
    with claimed(paths, wait=wait) as claim:
        state = out_mod.inspect_output(paths, fingerprint=prep.fingerprint, identity=prep.identity,
                                       source_root=source_root)
        if state == "stale":
            out_mod.discard_state(paths)
        staged = None
        if state != "complete" and not has_records(paths.journal, fingerprint=prep.fingerprint):
            # every shard record read once: checked as it is written beside the journal; a refused shard
            # leaves nothing (the folder is not committed: the lock's folder goes with the lock)
            staged = merge_mod.stage_journal(paths.journal,
                                             merge_mod.merged_records(loaded, prep.samples, prep.fingerprint))
        else:  # a merge done, or cut short after its journal: the shards are still checked, none held
            merge_mod.check_coverage(loaded, prep.samples, prep.fingerprint)
        if state == "complete":
            out_mod.cleanup_work(paths)
            reporter.stage("done", f"{paths.output} is already complete for this job")
            return config, result_from_output("already-complete", paths.output, prep, t0)
        started = claim.start(prep.fingerprint, prep.identity)
        if staged is not None:
            os.replace(staged, paths.journal)
        backend = _Replay((first.provenance.get("generation") or {}).get("backend_details"))
        from hub_pgen.review.shard_thumbs import FromShards

        # the page's pictures as the shards made them: the merge decodes only the cards none made
        thumbs = FromShards(s.path for s in loaded) if review else None
        ctx = RunContext(config, prep, paths, backend, reporter, t0, started, thumbs=thumbs, review=review)
        gen = generate(ctx, get_engine("local"), earlier={}, retry_failed=False)  # nothing is pending
        return config, finish(ctx, gen, replace_output=False)


def thumb_keeper(prep: Prepared) -> Any:
    """Thumbnails of what generation decodes, for the cards the review page will likely show: a dataset
    result's own page, or a shard's part of the merged one (hub_pgen.review.shard_thumbs). A JSONL run
    has no page."""
    if prep.source is None:
        return None
    from hub_pgen.review.thumbs import ThumbKeeper, likely_shown

    return ThumbKeeper(prep.page_ids if prep.shard is not None else likely_shown(IdView(prep.samples)))
