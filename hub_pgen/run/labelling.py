"""``--skills annotate`` inside a run: each episode's skills from the model (journaled), then the plan.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from hub_pgen import layout
from hub_pgen.config import RunConfig
from hub_pgen.errors import Interrupted, SkillsError
from hub_pgen.generate.base import Backend
from hub_pgen.generate.registry import get_backend
from hub_pgen.journal_writer import JournalWriter
from hub_pgen.notices import Notices
from hub_pgen.progress import Reporter
from hub_pgen.run.prepare import Prepared, fetch_videos, plan_samples
from hub_pgen.write import output as out_mod

logger = logging.getLogger(__name__)


def label_skills(config: RunConfig, prep: Prepared, paths: out_mod.OutputPaths, backend: Backend, reporter: Reporter,
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
    from hub_pgen.skills.labelling import AnnotateOptions, annotate_episodes, load_records

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
    episodes = list(config.episodes) if config.episodes is not None else sorted(prep.dataset.episodes)
    pending = [e for e in episodes if e not in done]
    if pending and getattr(backend, "needs_images", True):  # the labelled camera's videos, of what is left
        prep = fetch_videos(prep, config, reporter, prep.cameras[:1], pending)
    reporter.stage("skills", f"{len(episodes) - len(pending)} episode(s) labelled already, {len(pending)} to label "
                             f"with the {config.backend} backend")
    options = AnnotateOptions(camera=prep.cameras[0] if prep.cameras else None,
                              min_seconds=config.min_skill_seconds, seed=config.seed,
                              temperature=config.temperature, max_retries=config.max_retries,
                              width=get_backend(config.backend).width(config))
    with JournalWriter(journal_path) as writer:
        if earlier and not journal_path.stat().st_size:
            writer.append([earlier[e] for e in sorted(earlier)])
        try:
            result = annotate_episodes(prep.dataset, episodes, backend, options, done=done, append=writer.append,
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
