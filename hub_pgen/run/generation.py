"""Generation: the journal of this configuration, then the pending samples through an engine
(:mod:`hub_pgen.run.engine`), each batch journaled (fsync'ed) as the engine yields it. The driver never
asks which engine runs."""

from __future__ import annotations

import shutil
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub_pgen import layout
from hub_pgen.data import JournalRecord
from hub_pgen.errors import Interrupted, UnsafePathError
from hub_pgen.journal import JournalView, status_codes
from hub_pgen.journal_writer import JournalWriter
from hub_pgen.plan.table import subset
from hub_pgen.run import pass_state, running_pass
from hub_pgen.run.context import Generated, RunContext
from hub_pgen.run.steps import record_batch

if TYPE_CHECKING:
    from hub_pgen.run.engine import Engine


def generate(ctx: RunContext, engine: Engine, *, earlier: dict[str, JournalRecord], retry_failed: bool) -> Generated:
    """The journal of this configuration (and, for --retry-failed on a finished result, its records),
    then every sample not in it sent through ``engine``, each batch journaled as the engine yields it."""
    prep, paths, reporter = ctx.prep, ctx.paths, ctx.reporter
    alongside = running_pass.eligible(ctx.config, prep, retry_failed=retry_failed)  # the pass beside generation
    # its checkpoint, with its index of the journal's first bytes (read before the journal is)
    state = pass_state.saved(paths.work, prep, paths.journal, output_format=ctx.config.output_format,
                               review=ctx.review) if alongside else None
    # where each record is in the file, not the records (hub_pgen.journal.JournalView): read back as asked
    journal = JournalView.load(paths.journal, fingerprint=prep.fingerprint, extra=earlier, samples=prep.samples,
                               known=state["index"] if state is not None else None)
    retry_ids = {sid for sid, r in journal.items() if r.status != "ok"} if retry_failed else set()
    with JournalWriter(paths.journal) as writer:
        if earlier and not paths.journal.stat().st_size:
            # --retry-failed on a finished result: its records are this run's journal from now on,
            # so a kill mid-retry resumes here and loses nothing
            records = [replace(r, fingerprint=prep.fingerprint) for r in earlier.values()]
            journal.add(records, writer.append(records))
        # the plan's samples not journaled (or being retried): a table of them, not a list of samples
        codes = status_codes(journal, prep.samples)  # from the index: nothing read
        todo = (codes < 0) | (codes > 0) if retry_ids else codes < 0
        del codes
        resumed = len(todo) - int(todo.sum())
        pending = subset(prep.samples, todo) if resumed else prep.samples
        del todo
        if resumed:
            reporter.stage("merge" if prep.merged_from else "resume",
                           f"{resumed} samples from {prep.merged_from['shards']} shards" if prep.merged_from
                           else f"{resumed} samples already in {paths.journal}")
        if retry_ids:
            reporter.stage("retry", f"{len(retry_ids)} failed sample(s) generated again")
        bad = [b for b in prep.bad_lines if b.sample_id not in journal]
        if bad:
            records = [bad_line_record(b, prep.fingerprint) for b in bad]
            journal.add(records, writer.append(records))
        reporter.samples_start(len(prep.samples), resumed)
        if not alongside:  # a pass folder of another run's is not kept
            shutil.rmtree(paths.work / layout.PASS_NAME, ignore_errors=True)
        running = _running_pass(ctx, journal, state) if alongside else None
        try:
            sent = 0
            for records, n in engine.generate(pending, ctx, journal):
                record_batch(records, writer, journal, reporter)
                sent += n
                if running is not None:
                    try:
                        running.advance(journal)
                    except UnsafePathError:
                        raise
                    except OSError as e:  # it saves time, nothing else: the records are passed after generation
                        running.abandon(e)
                        running = None
        except KeyboardInterrupt:
            if running is not None:
                running.close()
            # counted from the file: an interrupt between a batch's fsync and the run's view of it
            # would otherwise say one batch fewer than the resume finds
            safe = JournalView.load(paths.journal, fingerprint=prep.fingerprint, extra=earlier, samples=prep.samples)
            raise Interrupted(len(safe), len(prep.samples) + len(prep.bad_lines), paths.journal) from None
        except BaseException:
            if running is not None:
                running.close()
            raise
    return Generated(journal, resumed, sent, retry_ids, running)


def _running_pass(ctx: RunContext, journal: JournalView,
                  state: dict[str, Any] | None) -> running_pass.RunningPass | None:
    """The pass over the records alongside generation (hub_pgen.run.running_pass); None when a file of it
    cannot be written (said: the records are passed after generation)."""
    try:
        return running_pass.RunningPass.start(ctx.paths.work, ctx.prep, journal, state,
                                              output_format=ctx.config.output_format, review=ctx.review)
    except UnsafePathError:
        raise
    except OSError as e:
        running_pass.stopped(ctx.paths.work / layout.PASS_NAME, e)
        return None


def bad_line_record(bad: Any, fp: str) -> JournalRecord:
    return JournalRecord(
        sample_id=bad.sample_id, status="failed", episode_id="", t=None, images=(), skill_current="",
        skill_history=(), task_description="", user_prompt=None, robot_utterance=None, scenario_type="",
        response_type="", error=f"input line {bad.line}: {bad.reason}", fingerprint=fp,
    )
