"""One job over many machines: shards of the plan, and their merge into the one-machine result.

``--num-shards N --shard-index I`` generates shard I only. The plan is made whole first — the same
samples, scenario/response types and seeds a one-machine run has — and the shard keeps the samples
of its episodes: the plan's episodes with samples, in index order, cut into N contiguous runs of
about equal samples (:func:`assign`), so a shard's episodes share files and it downloads little
more than its share (hub_pgen.source.needs). That depends on the plan and N only: not on the other
shards, not on resume. The shard is not part of the configuration fingerprint (every shard of a job has the
job's), only of its folder: a shard's result is ``syn_annotations.jsonl`` (its D_syn records) and
``meta/hub_pgen.json`` (provenance, with the shard and the job's fingerprint), not a dataset.

``hub-pgen merge --output-dir OUT (--root SRC | --repo-id R) SHARD...`` reads the shards' folders,
refuses what does not add up (shards of another configuration or source, the same shard twice, a
shard missing, samples missing or foreign, records or files edited: hub_pgen.run.merging), rebuilds the
plan from the shards' parameters on the given source, and writes the dataset exactly as a
one-machine run does — the records are the same, so the bytes are the same (``--push-to`` pushes it). No engine of our own schedules anything: the
shards run wherever commands run (an Actions matrix, a Slurm array, a few ssh sessions).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hub_pgen.data import Sample
from hub_pgen.plan.table import episode_counts, in_episodes, subset

logger = logging.getLogger(__name__)


def assign(samples: Sequence[Sample], num_shards: int) -> dict[int, int]:
    """Episode → shard index, for the plan's episodes that have samples: contiguous runs of episodes in
    index order, balanced by samples (a shard takes episodes until it holds its share, 1/N of them),
    every shard one at least while there are as many episodes as shards. Contiguous, because lerobot
    writes episodes in order into files of many episodes: a shard then downloads its own files and at
    most two it shares with a neighbour (dealt round-robin, every shard would need every file)."""
    counts = episode_counts(samples)
    episodes = sorted(counts)
    total = sum(counts.values())
    out: dict[int, int] = {}
    shard, held, done = 0, 0, 0
    for i, e in enumerate(episodes):
        left = len(episodes) - i  # episodes not yet placed, this one included
        if shard < num_shards - 1 and held and (done + counts[e] / 2 > (shard + 1) * total / num_shards
                                                 or left <= num_shards - 1 - shard):
            shard, held = shard + 1, 0
        out[e] = shard
        held += 1
        done += counts[e]
    return out


def select(samples: Sequence[Sample], num_shards: int, index: int) -> tuple[Sequence[Sample], tuple[int, ...]]:
    """The samples of shard ``index`` and its episodes (the plan order kept)."""
    owner = assign(samples, num_shards)
    mine = tuple(sorted(e for e, k in owner.items() if k == index))
    keep = set(mine)
    return subset(samples, in_episodes(samples, keep)), mine


def plan_ahead(config: Any, meta: Any) -> tuple[Any, set[int], dict[int, int]] | None:
    """A shard of a Hub source, before any data file: the job's plan made from ``meta/`` alone — the
    skills file, and each episode's frames on lerobot's grid where its timestamp stats vouch for it
    (hub_pgen.source.needs) — to know the shard's own episodes. Returns the source (with the data
    files of the episodes off the grid, fetched), the episodes whose data files the shard needs (its
    own and those), and the samples per episode of that plan (the real plan is checked against it:
    :func:`ahead_differs`). None when that cannot be known before the data (skills from language
    rows or to be labelled): the shard then reads every data file."""
    from hub_pgen import skills as skills_mod
    from hub_pgen.plan import planner
    from hub_pgen.source import hub, needs
    from hub_pgen.source.skills import load_skills

    path = skills_mod.static_file(config.skills, meta.root, config.skills_file)
    if path is None:
        return None
    skills = load_skills(path, known_episodes=set(meta.episodes))
    off = needs.off_grid(meta, config.episodes)
    if off:
        meta = hub.fetch(meta, data=off)
    plan = planner.build_plan(meta, skills, strategy=config.sampling, interval=config.sample_interval,
                              episodes=config.episodes, seed=config.seed, scenario_mix=config.scenario_mix,
                              response_mix=config.response_mix)
    if not plan.samples:
        return None
    _, own = select(plan.samples, config.num_shards, config.shard_index)
    logger.info("shard %s: planned from meta/episodes (%d episode(s) on the frame grid, %d read): %d own episode(s)",
                label(config.shard_index, config.num_shards), len(meta.episodes) - len(off), len(off), len(own))
    per_episode = episode_counts(plan.samples)  # all are on one
    return meta, set(own) | off, per_episode


def ahead_differs(ahead: dict[int, int], plan: Any, source: Any) -> list[int]:
    """Episodes whose data were read and whose samples differ from the plan made before it (:func:`plan_ahead`):
    their stats described another frame grid than their data, so the other episodes' may lie too."""
    real = episode_counts(plan.samples)
    read = [e for e, ep in source.episodes.items() if ep.data_path not in source.absent_data]
    return sorted(e for e in read if real.get(e, 0) != ahead.get(e, 0))


def label(index: int, count: int) -> str:
    return f"{index} of {count}"


def folder_key(fingerprint: str, index: int, count: int) -> str:
    """What a shard's folder is keyed by: the job's fingerprint and the shard."""
    return fingerprint if count == 1 else f"{fingerprint}.shard-{index}-of-{count}"


def default_dir(base: Path, index: int, count: int) -> Path:
    return base if count == 1 else base.with_name(f"{base.name}-shard-{index}-of-{count}")
