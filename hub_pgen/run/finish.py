"""After generation: quality → filters → verify → provenance → write → validate the staged folder →
finalize (renamed into place).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from hub_pgen import faults, layout
from hub_pgen.config import RunConfig
from hub_pgen.data import JournalRecord
from hub_pgen.errors import ValidationError
from hub_pgen.generate.base import Backend
from hub_pgen.generate.layer import sample_seed
from hub_pgen.generate.registry import get_backend
from hub_pgen.journal import JournalView, status_codes
from hub_pgen.journal_writer import JournalWriter
from hub_pgen.plan.table import locator
from hub_pgen.progress import Reporter
from hub_pgen.run.context import Generated, RunContext
from hub_pgen.run.prepare import Prepared
from hub_pgen.run.provenance import provenance, retry_history, skills_provenance
from hub_pgen.run.result import RunResult, report_path
from hub_pgen.write import output as out_mod
from hub_pgen.write.card import render_card
from hub_pgen.write.dataset import writing
from hub_pgen.write.records import Passed, pass_records

logger = logging.getLogger(__name__)


def finish(ctx: RunContext, gen: Generated, *, replace_output: bool) -> RunResult:
    """Everything after generation, in order: the rest of a Hub source, --verify, the filters, the one
    pass over the records (quality measures, task rows, the D_syn file, the page's tally: hub_pgen.write.
    records), the provenance, the rest of the dataset into the staging folder, its validation, and the
    rename into place."""
    config, prep, paths, backend, reporter = ctx.config, ctx.prep, ctx.paths, ctx.backend, ctx.reporter
    journal, resumed, sent, retry_ids = gen.journal, gen.resumed, gen.sent, gen.retry_ids
    started, t0 = ctx.started, ctx.t0
    if prep.source is not None and prep.source.repo_id and prep.shard is None:
        from hub_pgen.source.hub import fetch_rest

        reporter.stage("download", f"{prep.source.repo_id}: the rest of the dataset (every data file and camera), "
                                   "for the new dataset")
        prep = replace(prep, source=fetch_rest(prep.source))
    notes = list(getattr(backend, "notes", list)())  # what the backend noticed (a server ignoring the schema)
    from hub_pgen import filters

    verdicts = verify_samples(config, prep, paths, backend, journal, reporter) if config.verify else None
    why = filters.reasons(prep.samples, journal, config,  # shards: the merge filters
                          verdicts if config.verify == "filter" else None) if prep.shard is None else {}
    if why:
        logger.warning("%d dialogue(s) filtered (%s): recorded in %s with their reason", len(why),
                       "; ".join(f"{n} {r}" for r, n in filters.summary(why)["by_reason"].items()),
                       layout.SYN_ANNOTATIONS_PATH if prep.source is not None else layout.JSONL_RESULT_NAME)
    reporter.stage("write", f"{paths.output}")
    staging = out_mod.fresh_staging(paths)
    dataset = prep.source is not None and prep.shard is None
    parts = layout.FORMATS[config.output_format]
    done, tally, ahead = _passed_alongside(gen, prep, staging) if dataset else (None, None, {})
    if done is None:
        tally = _page_tally(prep, journal, why, "hirobot" not in parts) if dataset and ctx.review else None
        done = _pass(prep, journal, why, verdicts, staging if dataset else None, "hirobot" in parts, tally)
    quality = done.quality
    alarms = quality.alarms(config.sampling if prep.source is not None else None)
    if get_backend(config.backend).uses_model:
        notes += alarms
    elif alarms:  # the template backend writes set phrasings on purpose: its measures advise nothing
        logger.info("quality alarms not raised for the %s backend (no model to change): %s", config.backend,
                    "; ".join(alarms))
    for line in notes:
        logger.warning("%s", line)
    prov = provenance(config, prep, backend, journal, started)
    prov["notices"] = list(prep.notices) + notes
    prov["quality"] = quality.as_dict()
    prov["filtered"] = filters.summary(why)
    if verdicts is not None:
        from hub_pgen import verify as verify_mod

        prov["verify"] = {"mode": config.verify, **verify_mod.summary(verdicts)}
    if prep.skills is not None:
        prov["skills"] = skills_provenance(prep, config)
    if prep.shard is not None:  # a shard result: keyed by the shard, merged by the job's fingerprint
        prov["fingerprint"], _ = prep.folder_key()
        prov["plan_fingerprint"] = prep.fingerprint
        prov["shard"] = dict(prep.shard)
        if prep.source is not None and not prep.source.repo_id:  # a Hub source is pinned by its sha
            from hub_pgen.run.shard_sources import source_files

            prov["source_files"] = source_files(prep.source.root)  # the merge checks it ran on these
    if retry_ids:
        prov["retried"] = retry_history(paths.output, retry_ids, journal, started)
    if prep.merged_from is not None:
        prov["merged_from"] = dict(prep.merged_from)
    if not ctx.review and dataset:
        prov["review"] = False  # --no-review: the card says the page is not there (the key is absent otherwise)
    summary = write_result(prep, journal, done, staging, prov, config.output_format, ahead)
    if prep.shard is not None and prep.source is not None and ctx.thumbs is not None:
        _shard_thumbs(ctx, staging)
    ok, examples, failures = done.ok, done.examples, done.failures
    del done  # the task rows' texts (a model's: one a sample) are in tasks.parquet now: not held while it is checked
    if dataset:
        check_staged(staging, paths)
    if tally is not None:  # after the check: the page's decoders are not held while the files are read back
        summary["notes"] += write_page(staging, paths.output.resolve().name, tally, quality,
                                       thumbs=ctx.thumbs.made() if ctx.thumbs is not None else None)
    failures += tuple(journal[b.sample_id] for b in prep.bad_lines if b.sample_id in journal)
    faults.point("finalize")
    out_mod.finalize(paths, replace=replace_output)
    return RunResult(
        "written", paths.output, prep.fingerprint,
        samples=len(prep.samples) + len(prep.bad_lines),
        ok=ok,
        failed=len(failures),
        resumed=0 if prep.merged_from else resumed,  # a merge's samples come from its shards, not a resume
        generated=sent,
        new_tasks=summary.get("new_tasks", 0),
        mix=prov["mix"],
        failures=failures,
        elapsed_s=time.monotonic() - t0,
        frames=summary.get("frames", 0),
        frames_labelled=summary.get("frames_labelled", 0),
        examples=examples,
        notices=prep.notices + tuple(notes) + tuple(summary.get("notes", ())),
        retried=len(retry_ids),
        output_format=config.output_format if prep.source is not None else None,
        language=summary.get("language"),
        skills=prov.get("skills"),
        quality=prov.get("quality"),
        filtered=prov.get("filtered"),
        verify=prov.get("verify"),
        report=report_path(paths.output),
        shard=dict(prep.shard) if prep.shard is not None else None,
    )


def _passed_alongside(gen: Generated, prep: Prepared, staging: Path) -> tuple[Passed | None, Any, dict[str, Any]]:
    """What the pass that went alongside generation found, the page's tally and the data files it wrote
    into ``staging`` already (hub_pgen.run.running_pass; None: the run had none, or it cannot stand for the
    run's: the records are passed now)."""
    running, gen.running = gen.running, None  # let go once done: the task rows' texts are not held past the write
    if running is None or not isinstance(gen.journal, JournalView):
        return None, None, {}
    try:
        with writing(staging):
            ran = running.finish(gen.journal, prep, staging)
    finally:
        running.close()
    return ran if ran is not None else (None, None, {})


def _page_tally(prep: Prepared, journal: Mapping[str, JournalRecord], why: Mapping[str, str],
                coverage: bool) -> Any:
    """The review page's tally of the records the pass is about to write: which get a card is decided
    from their statuses as the file will have them (the journal's index, and the filters' verdicts)."""
    from hub_pgen.review.model import new_tally

    codes = status_codes(journal, prep.samples)
    if why:
        position = locator(prep.samples)
        for sid in why:
            i = position(sid)
            if i is not None:
                codes[i] = 2
    return new_tally(prep.dataset.episodes, codes[codes >= 0], coverage=coverage)


def _pass(prep: Prepared, journal: Mapping[str, JournalRecord], why: Mapping[str, str], verdicts: Any,
          staging: Path | None, hirobot: bool, tally: Any) -> Passed:
    """The one pass over the records (hub_pgen.write.records): into ``staging``'s D_syn file when the
    result is a dataset (a shard's or a JSONL run's records are written by id instead)."""
    from hub_pgen import filters
    from hub_pgen import verify as verify_mod

    def amend(r: JournalRecord) -> JournalRecord:
        reason = why.get(r.sample_id)
        if reason is not None:
            r = filters.mark(r, reason)
        if verdicts is not None and r.sample_id in verdicts:
            r = verify_mod.mark(r, verdicts[r.sample_id])
        return r

    source = prep.source
    with writing(staging) if staging is not None else nullcontext():
        return pass_records(prep.samples, journal, amend=amend if why or verdicts else None,
                            source_tasks=source.tasks if source is not None else (),
                            source_indices=source.task_indices if source is not None else (),
                            syn_path=staging / layout.SYN_ANNOTATIONS_PATH if staging is not None else None,
                            hirobot=hirobot, tally=tally)


def _shard_thumbs(ctx: RunContext, staging: Path) -> None:
    """A shard's part of the merged page's pictures (hub_pgen.review.shard_thumbs): those generation kept,
    and the others decoded where the videos are on disk (a local source, or one whose frames the model
    saw): a template shard of a Hub source downloads no video for them, and the merge decodes those.
    Pictures that cannot be made cost a warning, never the shard (the merge decodes them)."""
    from hub_pgen.review import shard_thumbs

    prep = ctx.prep
    source = prep.dataset
    on_disk = not source.repo_id or bool(getattr(ctx.backend, "needs_images", False))
    ctx.reporter.stage("thumbnails", f"the merged page's pictures of this shard's samples ({len(prep.page_ids)})")
    try:
        shard_thumbs.write(staging, ctx.thumbs, prep.samples, decode=on_disk, source=source,
                           base_dir=prep.base_dir, max_pixels=ctx.config.max_pixels)
    except Exception as e:  # noqa: BLE001 — a cache for the merged page: failing to make it must not cost the shard
        logger.warning("the merged page's pictures of this shard could not be made (%s: %s): the shard is complete, "
                       "and the merge decodes them", type(e).__name__, e, exc_info=bool(os.environ.get("HUB_PGEN_DEBUG")))


def check_staged(staging: Path, paths: out_mod.OutputPaths) -> None:
    """The folder about to become ``OUT`` passes ``hub-pgen validate`` — never "written" for a result
    that the validator (and the push) would refuse. Costs a read of the metadata and of one int64
    column per data file (docs/benchmarks.md)."""
    import shutil

    from hub_pgen.write.validate import problems

    found = problems(staging)
    if found:
        shutil.rmtree(staging, ignore_errors=True)
        raise ValidationError(staging, found + [f"(nothing was moved to {paths.output}; the journal is kept: "
                                                "report this with the command you ran)"])


def write_result(prep: Prepared, journal: Mapping[str, JournalRecord], done: Passed, staging: Path,
                 prov: dict[str, Any], output_format: str, ahead: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the result into ``staging`` (a dataset's D_syn file is there already: the pass wrote it);
    returns its counts (new tasks rows, frames, labelled frames) and what to tell the user about the
    source's own language rows (``notes``). The review page is :func:`write_page`'s."""
    from hub_pgen.write.dataset import write_dataset, write_jsonl_result

    origin = prep.skills.origin if prep.skills is not None else "file"
    if prep.source is None or prep.shard is not None:  # a JSONL run, or a shard: the D_syn records alone
        skills_file = skills_to_write(prep, origin) if prep.shard is not None else None
        write_jsonl_result(prep.samples, prep.bad_lines, journal, staging, provenance=prov,
                           skills_file=skills_file if isinstance(skills_file, Path) else None)
        return {}

    summary = write_dataset(prep.source, prep.samples, staging, labels=done.labels,
                            provenance=prov, card=lambda final: render_card(final, done.card_examples),
                            segments=prep.plan.segments if prep.plan is not None else (),
                            output_format=output_format,
                            skills_json=skills_to_write(prep, origin),
                            skill_records=[r.to_json() for _, r in sorted((prep.skill_records or {}).items())],
                            ahead=ahead)
    notes = summary.language.lines() if summary.language is not None else []
    language = summary.language.as_dict() if summary.language is not None else None
    for line in notes:
        logger.warning("%s", line)
    return {"new_tasks": summary.new_tasks, "frames": summary.frames, "frames_labelled": summary.frames_labelled,
            "notes": notes, "language": language}


def write_page(staging: Path, output_name: str, tally: Any, quality: Any,
               thumbs: dict[str, list[Any]] | None = None) -> list[str]:
    """The review page of the dataset in ``staging`` (named as OUT will be), from the tally the pass
    filled (nothing read back) and the run's quality measures; returns what to tell the user of it. A
    page that cannot be drawn costs a warning, never the dataset."""
    from hub_pgen.review import write_report
    from hub_pgen.review.model import Written

    # part of the result (and so pushed with it)
    try:
        report = write_report(staging, name=output_name, thumbs=thumbs, quality=quality, records=Written(tally))
    except Exception as e:  # noqa: BLE001 — a view of the dataset: failing to draw it must not cost the dataset
        line = (f"the review page could not be written ({type(e).__name__}: {e}); the dataset is complete: "
                f"hub-pgen report OUT tries again (HUB_PGEN_DEBUG=1 shows why)")
        logger.warning("%s", line, exc_info=bool(os.environ.get("HUB_PGEN_DEBUG")))
        return [line]
    if report.unreadable_images:
        return [f"the review page shows {report.unreadable_images} frame(s) as unavailable (they could not "
                f"be decoded): see {layout.REPORT_PATH}"]
    return []


def verify_samples(config: RunConfig, prep: Prepared, paths: out_mod.OutputPaths, backend: Backend,
            journal: Mapping[str, JournalRecord], reporter: Reporter) -> dict[str, Any]:
    """--verify: a verdict for every ok sample (journaled: a resumed run asks nothing twice)."""
    from hub_pgen import verify as verify_mod

    path = paths.work / "verify.jsonl"
    done = verify_mod.load(path, fingerprint=prep.fingerprint)
    reporter.stage("verify", f"asking the {config.backend} backend which skill each user prompt leads to "
                             f"({len(done)} verdict(s) from an earlier try)")
    with JournalWriter(path) as writer:
        return verify_mod.verify(prep.samples, journal, prep.plan.segments if prep.plan else (), backend, done=done,
                                 append=writer.append, fingerprint=prep.fingerprint, seed_of=sample_seed,
                                 seed=config.seed, width=get_backend(config.backend).width(config))


def skills_to_write(prep: Prepared, origin: str) -> Any:
    """What the new dataset's meta/skills.json is: the source's own file as it is (None: copied with the
    rest), a skills file from elsewhere as it is (its path), or the skills in the seed's format."""
    from hub_pgen import skills as skills_mod

    if origin != "file":
        return skills_mod.to_json(prep.skills.skills)
    path = prep.skills.path if prep.skills is not None else None
    if path is None or Path(path).resolve() == (prep.dataset.root / layout.SKILLS_PATH).resolve():
        return None
    return Path(path)
