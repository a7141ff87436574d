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
shard missing, samples missing or foreign), rebuilds the plan from the shards' parameters on the
given source, and writes the dataset exactly as a one-machine run does — the records are the same,
so the bytes are the same (``--push-to`` pushes it). No engine of our own schedules anything: the
shards run wherever commands run (an Actions matrix, a Slurm array, a few ssh sessions).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hub_pgen import layout
from hub_pgen.data import JournalRecord, Sample
from hub_pgen.errors import UsageError

logger = logging.getLogger(__name__)


def assign(samples: Sequence[Sample], num_shards: int) -> dict[int, int]:
    """Episode → shard index, for the plan's episodes that have samples: contiguous runs of episodes in
    index order, balanced by samples (a shard takes episodes until it holds its share, 1/N of them),
    every shard one at least while there are as many episodes as shards. Contiguous, because lerobot
    writes episodes in order into files of many episodes: a shard then downloads its own files and at
    most two it shares with a neighbour (dealt round-robin, every shard would need every file)."""
    from collections import Counter

    counts = Counter(s.episode_index for s in samples if s.episode_index is not None)
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


def select(samples: Sequence[Sample], num_shards: int, index: int) -> tuple[tuple[Sample, ...], tuple[int, ...]]:
    """The samples of shard ``index`` and its episodes (the plan order kept)."""
    owner = assign(samples, num_shards)
    mine = tuple(sorted(e for e, k in owner.items() if k == index))
    keep = set(mine)
    return tuple(s for s in samples if s.episode_index in keep), mine


def plan_ahead(config: Any, meta: Any) -> tuple[Any, set[int], dict[int, int]] | None:
    """A shard of a Hub source, before any data file: the job's plan made from ``meta/`` alone — the
    skills file, and each episode's frames on lerobot's grid where its timestamp stats vouch for it
    (hub_pgen.source.needs) — to know the shard's own episodes. Returns the source (with the data
    files of the episodes off the grid, fetched), the episodes whose data files the shard needs (its
    own and those), and the samples per episode of that plan (the real plan is checked against it:
    :func:`ahead_differs`). None when that cannot be known before the data (skills from language
    rows or to be labelled): the shard then reads every data file."""
    from collections import Counter

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
    return meta, set(own) | off, dict(Counter(s.episode_index for s in plan.samples))


def ahead_differs(ahead: dict[int, int], plan: Any, source: Any) -> list[int]:
    """Episodes whose data were read and whose samples differ from the plan made before it (:func:`plan_ahead`):
    their stats described another frame grid than their data, so the other episodes' may lie too."""
    from collections import Counter

    real = Counter(s.episode_index for s in plan.samples)
    read = [e for e, ep in source.episodes.items() if ep.data_path not in source.absent_data]
    return sorted(e for e in read if real.get(e, 0) != ahead.get(e, 0))


def label(index: int, count: int) -> str:
    return f"{index} of {count}"


def folder_key(fingerprint: str, index: int, count: int) -> str:
    """What a shard's folder is keyed by: the job's fingerprint and the shard."""
    return fingerprint if count == 1 else f"{fingerprint}.shard-{index}-of-{count}"


def default_dir(base: Path, index: int, count: int) -> Path:
    return base if count == 1 else base.with_name(f"{base.name}-shard-{index}-of-{count}")


# --- merge ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardResult:
    path: Path
    index: int
    count: int
    fingerprint: str  # the job's (the plan's), shared by every shard
    identity: dict[str, Any]
    parameters: dict[str, Any]
    provenance: dict[str, Any]
    records: dict[str, JournalRecord]


def load_shard(path: Path) -> ShardResult:
    """A finished shard's folder. Anything else is refused, saying what it is."""
    from hub_pgen.journal import load_journal

    path = Path(path)
    prov_path = path / layout.PROVENANCE_PATH
    if not path.is_dir():
        if not path.exists() and Path(f"{path}{layout.WORK_SUFFIX}").is_dir():
            raise UsageError(f"shard {path} has not finished: its run's state is in {path}{layout.WORK_SUFFIX} "
                             "(interrupted, or still running)",
                             hint="rerun that shard's command (the same --shard-index and --output-dir): it resumes "
                                  "and finishes the shard; then merge again")
        raise UsageError(f"shard {path} is not a folder" + ("" if path.exists() else " (it does not exist)"),
                         hint="give the --output-dir of each finished shard run")
    if not prov_path.is_file():
        partial = Path(f"{path}{layout.WORK_SUFFIX}")
        unfinished = path.name.endswith(layout.WORK_SUFFIX) or partial.is_dir()
        raise UsageError(f"shard {path} is not a finished shard result" + (
            " (its run has not finished: its state is in a .partial folder)" if unfinished else
            f" (no {layout.PROVENANCE_PATH})"),
            hint="rerun that shard's command: it resumes and finishes the shard")
    try:
        prov = json.loads(prov_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UsageError(f"shard {path}: {layout.PROVENANCE_PATH} is not valid JSON ({e})") from None
    shard = prov.get("shard") if isinstance(prov, dict) else None
    if not isinstance(shard, dict):
        raise UsageError(f"{path} is a hub-pgen result but not a shard (made without --num-shards)",
                         hint="merge takes the folders of --num-shards N --shard-index I runs")
    records = load_journal(path / layout.JSONL_RESULT_NAME)
    return ShardResult(path, int(shard["index"]), int(shard["count"]), str(prov["plan_fingerprint"]),
                       dict(prov.get("identity") or {}), dict(prov.get("parameters") or {}), prov, records)


def check_shards(shards: Sequence[ShardResult]) -> None:
    """One job, each shard once."""
    if not shards:
        raise UsageError("give the shard folders to merge", hint="hub-pgen merge --output-dir OUT --root SRC SHARD...")
    first = shards[0]
    for other in shards[1:]:
        if other.fingerprint != first.fingerprint:
            from hub_pgen.config import diff_identity

            diff = diff_identity(first.identity, other.identity)
            shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items())) or "fingerprint differs"
            raise UsageError(f"shard {other.path} belongs to another configuration than shard {first.path} ({shown})",
                             hint="merge the shards of one job: the same command with only --shard-index changed")
        if other.count != first.count:
            raise UsageError(f"shard {other.path} is one of {other.count} shards, {first.path} one of {first.count}",
                             hint="merge the shards of one job: the same --num-shards")
    seen: dict[int, Path] = {}
    for s in shards:
        if s.index in seen:
            raise UsageError(f"shard {label(s.index, s.count)} is given twice: {seen[s.index]} and {s.path}",
                             hint="give each shard's folder once")
        seen[s.index] = s.path
    missing = sorted(set(range(first.count)) - set(seen))
    if missing:
        raise UsageError(f"shard(s) {', '.join(label(i, first.count) for i in missing)} missing: the merge needs all "
                         f"{first.count}", hint="run the missing shard(s) (--shard-index) and give their folders too")


def check_coverage(shards: Sequence[ShardResult], samples: Sequence[Sample]) -> dict[str, JournalRecord]:
    """Every sample of the plan exactly once, from the shard that owns it; the union of the records."""
    count = shards[0].count
    owner = assign(samples, count)
    expected: dict[int, set[str]] = defaultdict(set)
    by_id = {s.sample_id: s for s in samples}
    for s in samples:
        expected[owner[s.episode_index]].add(s.sample_id)
    union: dict[str, JournalRecord] = {}
    for shard in sorted(shards, key=lambda s: s.index):
        got, want = set(shard.records), expected[shard.index]
        foreign = sorted(got - want)
        if foreign:
            raise UsageError(f"shard {label(shard.index, count)} ({shard.path}) holds {len(foreign)} sample(s) that "
                             f"are not its own in this plan, e.g. {foreign[0]}",
                             hint="the shards must come from one job on this source: check --root/--repo-id")
        lost = sorted(want - got)
        if lost:
            raise UsageError(f"shard {label(shard.index, count)} ({shard.path}) lacks {len(lost)} of its "
                             f"{len(want)} sample(s), e.g. {lost[0]}",
                             hint="rerun that shard's command: it resumes and generates what is missing")
        wrong = [sid for sid in sorted(got) if _planned(shard.records[sid]) != _planned(by_id[sid])]
        if wrong:
            raise UsageError(
                f"shard {label(shard.index, count)} ({shard.path}) planned {len(wrong)} of its sample(s) otherwise "
                f"than this merge's plan does (e.g. {wrong[0]}: {_planned(shard.records[wrong[0]])} in the shard, "
                f"{_planned(by_id[wrong[0]])} here)",
                hint="a shard of a Hub dataset plans other shards' episodes from meta/episodes' timestamp stats: "
                     "when the data files disagree with those stats, recompute them (lerobot), or run the shards on a "
                     "local copy (--root), which reads every data file")
        union.update(shard.records)
    return union


def _planned(item: Any) -> tuple[Any, ...]:
    """What the plan decides of a sample (a Sample, or the record a shard wrote of one)."""
    return (item.episode_index, item.frame_start, item.frame_end, item.skill_current, item.scenario_type,
            item.response_type)


def merge_config(shard: ShardResult, *, root: Path | None, repo_id: str | None, revision: str | None,
                 output_dir: Path | None, push: dict[str, Any]) -> Any:
    """The job's RunConfig, from a shard's parameters, on the source given to the merge."""
    from dataclasses import fields

    from hub_pgen.config import RunConfig

    names = {f.name for f in fields(RunConfig)}
    params = {k: v for k, v in shard.parameters.items() if k in names}
    for key in ("episodes", "image_keys"):
        if params.get(key) is not None:
            params[key] = tuple(params[key])
    params.update(root=root, repo_id=repo_id, revision=revision, input_jsonl=None, output_dir=output_dir,
                  num_shards=1, shard_index=0, **push)
    if params.get("skills_file"):  # the shard's copy of it: the merge may run on another machine
        own = shard.path / layout.SKILLS_PATH
        params["skills_file"] = own if own.is_file() else Path(params["skills_file"])
    return RunConfig(**params)


def with_records_fingerprint(records: dict[str, JournalRecord], fingerprint: str) -> list[JournalRecord]:
    return [replace(r, fingerprint=fingerprint) for _, r in sorted(records.items())]
