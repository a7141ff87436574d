"""What ``--dry-run`` says: the plan under every strategy, its cost, and what a real run would do
with the output folder (read-only).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub_pgen.config import RunConfig
from hub_pgen.generate.prompt import construct_prompt
from hub_pgen.generate.registry import get_backend
from hub_pgen.plan import planner
from hub_pgen.plan.table import type_pairs
from hub_pgen.plan.taxonomy import mix_report
from hub_pgen.write import output as out_mod

if TYPE_CHECKING:
    from hub_pgen.run.prepare import Prepared

logger = logging.getLogger(__name__)


def plan_report(config: RunConfig, prep: Prepared) -> dict[str, Any]:
    """What ``--dry-run`` prints: the plan under every strategy, and the cost of the chosen one."""
    report: dict[str, Any] = {"fingerprint": prep.fingerprint, "cameras": list(prep.cameras)}
    if prep.shard is not None:
        from hub_pgen.run import shards

        report["shard"] = shards.label(prep.shard["index"], prep.shard["count"])
        report["shard_episodes"] = len(prep.shard["episodes"])
    if prep.source is not None:
        report["format"] = config.output_format
        report["skills"] = prep.skills.origin if prep.skills is not None else "annotate"
    from hub_pgen.plan import cost

    if prep.annotate:
        labelling = prep.labelling or labelling_cost(config, prep)
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
        mix=mix_report(type_pairs(prep.samples)),
        cost=cost.of_run(config, prep),
    )
    if config.show_prompt:  # one rendered prompt per scenario type, with the images it would show
        prompts = {}
        for i, (scenario, _) in enumerate(type_pairs(prep.samples)):
            if scenario not in prompts:
                s = prep.samples[i]
                prompts[scenario] = {"sample_id": s.sample_id, "images": [i.label() for i in s.images],
                                            "prompt": construct_prompt(s, config.prompt_template)}
        report["prompts"] = prompts
    return report


def output_state(paths: out_mod.OutputPaths, prep: Prepared, source_root: Path | None) -> str:
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


def labelling_cost(config: RunConfig, prep: Prepared) -> dict[str, Any]:
    """--dry-run of --skills annotate: what the labelling asks of the model, before any sample exists."""
    import math

    from hub_pgen.skills import sheets
    from hub_pgen.skills.labelling import episode_requests

    episodes = list(config.episodes) if config.episodes is not None else sorted(prep.dataset.episodes)
    requests = episode_requests(prep.dataset, episodes, config.min_skill_seconds)
    per_episode = [sheets.sheets_needed(len(r.times)) for r in requests]
    from hub_pgen.plan import cost

    camera = prep.cameras[0] if prep.cameras else None
    shape = cost.camera_shape(prep.dataset.features.get(camera)) if camera else None
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
