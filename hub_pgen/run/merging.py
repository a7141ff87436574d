"""What ``hub-pgen merge`` takes from a shard's folder, and how little it trusts it.

A shard's folder comes from another machine, maybe another person: its files are input, like a
dataset's. The merge reads ``meta/hub_pgen.json`` (the shard's provenance) and
``syn_annotations.jsonl`` (its records) strictly — every number bounded, every field of the type
it must have — and rebuilds the plan itself, on the source it is given. From a shard's record it
takes only what the model wrote (the dialogue, or the failure and its raw text), checked by the
same rules a run applies to a model's answer; everything the plan decides (episode, frames, skill,
history, task, images, types) comes from the merge's own plan, and a record that disagrees with it
is refused. Local sources are fingerprinted down to the data and video files
(:mod:`hub_pgen.run.shard_sources`), so a source changed after the shards ran is refused, not merged.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from hub_pgen import faults, layout
from hub_pgen.data import GenerationResult, JournalRecord, Sample
from hub_pgen.errors import GenerationError, ShardError, UsageError
from hub_pgen.generate.parse import validate_object
from hub_pgen.journal import to_record
from hub_pgen.journal_writer import JournalWriter
from hub_pgen.plan.table import SampleTable, episode_indices, locator
from hub_pgen.provenance_file import read_json
from hub_pgen.records_file import iter_records
from hub_pgen.run.shards import assign, label

MAX_SHARDS = 10_000  # more than any Actions matrix (256) or sensible Slurm array of one dataset
MAX_PROVENANCE_BYTES = 64 << 20  # a shard's meta/hub_pgen.json; real ones are a few KiB (+ the source's file list)
MAX_TEXT_CHARS = 64 << 10  # an error or raw answer taken from a shard (a run keeps less)
MAX_ATTEMPTS = 1_000
MAX_EARLIER = 100
SHOWN = 5
_FINGERPRINT = re.compile(r"[0-9a-f]{8,64}")


@dataclass(frozen=True)
class ShardResult:
    path: Path
    index: int
    count: int
    fingerprint: str  # the job's (the plan's), shared by every shard
    identity: dict[str, Any]
    parameters: dict[str, Any]
    provenance: dict[str, Any]

    @property
    def records_path(self) -> Path:
        """Its D_syn records (read as a stream by :func:`merged_records`, never whole)."""
        return self.path / layout.JSONL_RESULT_NAME


def load_shard(path: Path) -> ShardResult:
    """A finished shard's folder. Anything else is refused, saying what it is."""
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
    prov = _read_json(prov_path, MAX_PROVENANCE_BYTES)
    if not isinstance(prov, dict):
        raise ShardError(f"{prov_path}: must hold a JSON object, got {type(prov).__name__}")
    shard = prov.get("shard")
    if shard is None:
        raise UsageError(f"{path} is a hub-pgen result but not a shard (made without --num-shards)",
                         hint="merge takes the folders of --num-shards N --shard-index I runs")
    if not isinstance(shard, dict):
        raise ShardError(f"{prov_path}: 'shard' must be an object, got {type(shard).__name__}")
    count = _bounded_int(shard.get("count"), 1, MAX_SHARDS, prov_path, "shard.count")
    index = _bounded_int(shard.get("index"), 0, count - 1, prov_path, "shard.index")
    fingerprint = prov.get("plan_fingerprint")
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise ShardError(f"{prov_path}: 'plan_fingerprint' must be a hex digest, got {quoted(fingerprint)}")
    for key in ("identity", "parameters"):
        if not isinstance(prov.get(key), dict):
            raise ShardError(f"{prov_path}: {key!r} must be an object, got {type(prov.get(key)).__name__}")
    from hub_pgen.config import RunConfig

    types = {f.name: str(f.type) for f in fields(RunConfig)}
    for key, value in prov["parameters"].items():  # every shard's, though the merge runs the first's
        if key in types:
            _parameter(value, types[key], prov_path, key)
    if not (path / layout.JSONL_RESULT_NAME).is_file():
        raise ShardError(f"{path / layout.JSONL_RESULT_NAME} is missing: a finished result holds its records there",
                         hint="rerun that shard")
    return ShardResult(path, index, count, fingerprint, dict(prov["identity"]), dict(prov["parameters"]), prov)


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
        if other.identity != first.identity:
            raise ShardError(f"shard {other.path} has the job fingerprint of shard {first.path} but another "
                             "identity in its provenance: one of them was edited",
                             hint="rerun the shard whose meta/hub_pgen.json was changed")
        if other.count != first.count:
            raise UsageError(f"shard {other.path} is one of {other.count} shards, {first.path} one of {first.count}",
                             hint="merge the shards of one job: the same --num-shards")
    seen: dict[int, Path] = {}
    for s in shards:
        if s.index in seen:
            raise UsageError(f"shard {label(s.index, s.count)} is given twice: {seen[s.index]} and {s.path}",
                             hint="give each shard's folder once")
        seen[s.index] = s.path
    if len(seen) < first.count:
        missing = [i for i in range(first.count) if i not in seen]
        shown = ", ".join(label(i, first.count) for i in missing[:SHOWN]) + (", …" if len(missing) > SHOWN else "")
        raise UsageError(f"{len(missing)} shard(s) missing ({shown}): the merge needs all {first.count}",
                         hint="run the missing shard(s) (--shard-index) and give their folders too")


def merge_config(shard: ShardResult, *, root: Path | None, repo_id: str | None, revision: str | None,
                 output_dir: Path | None, push: dict[str, Any]) -> Any:
    """The job's RunConfig, from a shard's parameters (each of the type its option has, and checked as
    the option is), on the source given to the merge."""
    from hub_pgen.config import RunConfig

    where = shard.path / layout.PROVENANCE_PATH
    types = {f.name: str(f.type) for f in fields(RunConfig)}
    params = {k: _parameter(v, types[k], where, k) for k, v in shard.parameters.items() if k in types}
    params.update(root=root, repo_id=repo_id, revision=revision, input_jsonl=None, output_dir=output_dir,
                  num_shards=1, shard_index=0, **push)
    if params.get("skills_file"):  # the shard's copy of it: the merge may run on another machine
        own = shard.path / layout.SKILLS_PATH
        params["skills_file"] = own if own.is_file() else Path(params["skills_file"])
    try:
        return RunConfig(**params)
    except UsageError as e:
        raise ShardError(f"{where}: the job's parameters do not make a run: {e.message}",
                         hint="rerun the shard whose meta/hub_pgen.json was changed") from None


def check_coverage(shards: Sequence[ShardResult], samples: Sequence[Sample], fingerprint: str) -> None:
    """Every sample of the plan exactly once, from the shard that owns it, each record one the merge
    accepts (:func:`accept`): the shards' records read as a stream, none held (:func:`merged_records`)."""
    for _ in merged_records(shards, samples, fingerprint):
        pass


def merged_records(shards: Sequence[ShardResult], samples: Sequence[Sample], fingerprint: str
                   ) -> Iterator[JournalRecord]:
    """The records the merge writes, shard by shard as each shard's file is read: built from the merge's
    own plan and what the model wrote (:func:`accept`). Held: a flag a sample (seen), not the records.
    A shard whose records do not add up raises once its file is read (what is foreign first, then what
    is missing, then what was planned otherwise, then a record the merge refuses): a caller writes what
    this yields where a failure leaves nothing behind (:func:`stage_journal`)."""
    count = shards[0].count
    owner = assign(samples, count)
    episodes = samples.episodes() if isinstance(samples, SampleTable) else np.array(episode_indices(samples))
    uniq, inverse = np.unique(episodes, return_inverse=True)
    shard_of = np.array([owner[e] for e in uniq.tolist()], dtype=np.int64)[inverse] if len(uniq) else \
        np.zeros(0, dtype=np.int64)
    position = locator(samples)
    seen = np.zeros(len(samples), dtype=bool)
    for shard in sorted(shards, key=lambda s: s.index):
        foreign: list[Any] = [0, None]  # how many, the first by id
        wrong: list[Any] = [0, None, None]  # how many, the first by id, and its record
        refused: ShardError | None = None
        for n, rec in iter_records(shard.records_path, error=ShardError, hint="rerun that shard"):
            i = position(rec.sample_id)
            if i is None or shard_of[i] != shard.index:
                foreign[0] += 1
                foreign[1] = rec.sample_id if foreign[1] is None else min(foreign[1], rec.sample_id)
                continue
            if seen[i]:
                raise ShardError(f"{shard.records_path}:{n}: sample {rec.sample_id[:60]!r} appears twice",
                                 hint="rerun that shard")
            seen[i] = True
            sample = samples[i]
            if _planned(rec) != _planned(sample):
                wrong[0] += 1
                if wrong[1] is None or rec.sample_id < wrong[1]:
                    wrong[1:] = [rec.sample_id, rec, sample]
                continue
            if foreign[0] or wrong[0] or refused is not None:
                continue  # this shard is refused once read: what to say first is known then
            try:
                yield accept(shard, sample, rec, fingerprint)
            except ShardError as e:
                refused = e
        if foreign[0]:
            raise UsageError(f"shard {label(shard.index, count)} ({shard.path}) holds {foreign[0]} sample(s) that "
                             f"are not its own in this plan, e.g. {quoted(foreign[1])}",
                             hint="the shards must come from one job on this source: check --root/--repo-id")
        mine = shard_of == shard.index
        lost = np.flatnonzero(mine & ~seen)
        if len(lost):
            first = min(samples[int(i)].sample_id for i in lost)
            raise UsageError(f"shard {label(shard.index, count)} ({shard.path}) lacks {len(lost)} of its "
                             f"{int(mine.sum())} sample(s), e.g. {first}",
                             hint="rerun that shard's command: it resumes and generates what is missing")
        if wrong[0]:
            first, rec, sample = wrong[1:]
            diff = {k: (a, b) for k, a, b in zip(PLANNED, _planned(rec), _planned(sample)) if a != b}
            shown = "; ".join(f"{k}: {quoted(a)} in the shard, {quoted(b)} here" for k, (a, b) in diff.items())
            raise ShardError(
                f"shard {label(shard.index, count)} ({shard.path}) planned {wrong[0]} of its sample(s) otherwise "
                f"than this merge's plan does (e.g. {first}: {shown})",
                hint="a shard of a Hub dataset plans other shards' episodes from meta/episodes' timestamp stats: "
                     "when the data files disagree with those stats, recompute them (lerobot), or run the shards on a "
                     "local copy (--root), which reads every data file; a shard whose records were edited must be "
                     "rerun")
        if refused is not None:
            raise refused


def stage_journal(path: Path, records: Iterable[JournalRecord], *, batch: int = 1024) -> Path:
    """``records`` written beside the journal at ``path`` (returned: the caller renames it onto ``path``);
    nothing left when ``records`` raises (:func:`merged_records` refusing a shard once its file is read),
    so the merge reads each shard's records once, checking them as it writes them."""
    tmp = path.with_name(path.name + layout.STAGED_SUFFIX)
    tmp.unlink(missing_ok=True)
    try:
        with JournalWriter(tmp) as writer:
            it = iter(records)
            while chunk := list(itertools.islice(it, batch)):
                writer.append(chunk)
                faults.point("merge.journal")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


PLANNED = ("episode_index", "episode_id", "t", "frame_index", "frame_start", "frame_end", "timestamp", "images",
           "skill_current", "skill_history", "task_description", "scenario_type", "response_type")


def _planned(item: Any) -> tuple[Any, ...]:
    """What the plan decides of a sample (a Sample, or the record a shard wrote of one)."""
    if isinstance(item, Sample):  # the record a run makes of the sample
        item = to_record(item, GenerationResult(item.sample_id, None, error=""), "")
    return tuple(getattr(item, k) for k in PLANNED)


def accept(shard: ShardResult, sample: Sample, rec: JournalRecord, fingerprint: str) -> JournalRecord:
    """The record of ``sample`` the merge writes: the plan's, with the shard's dialogue (checked as a run
    checks a model's answer) or its failure."""
    where = f"shard {label(shard.index, shard.count)} ({shard.path}), sample {sample.sample_id}"
    raw = _text(rec.raw_text, where, "raw_text", optional=True)
    attempts = _bounded_int(rec.attempts, 1, MAX_ATTEMPTS, where, "attempts")
    if rec.status == "ok":
        answer = {k: getattr(rec, k) for k in ("scenario_type", "response_type", "user_prompt", "robot_utterance")}
        try:
            d = validate_object(answer, raw or "", scenario_type=sample.scenario_type,
                                response_type=sample.response_type)
        except GenerationError as e:
            raise ShardError(f"{where}: its dialogue fails the checks a run makes of a model's answer: {e.message}",
                             hint="rerun that shard (a shard's records are the model's answers, as it wrote them)"
                             ) from None
        for key in ("user_prompt", "robot_utterance"):
            _text(getattr(d, key), where, key)
        if (d.user_prompt, d.robot_utterance) != (rec.user_prompt, rec.robot_utterance):
            raise ShardError(f"{where}: its dialogue is not as a run writes one (not one line of text)",
                             hint="rerun that shard")
        result = GenerationResult(sample.sample_id, d, raw_text=raw or "", attempts=attempts)
    elif rec.status == "failed":
        if rec.user_prompt is not None or rec.robot_utterance is not None:
            raise ShardError(f"{where}: a failed sample with a dialogue", hint="rerun that shard")
        result = GenerationResult(sample.sample_id, None, error=_text(rec.error, where, "error"), raw_text=raw or "",
                                  attempts=attempts)
    else:
        raise ShardError(f"{where}: status must be 'ok' or 'failed', got {quoted(rec.status)}", hint="rerun that shard")
    earlier = _earlier(rec.earlier, where)
    return replace(to_record(sample, result, fingerprint), earlier=earlier)


def _earlier(items: Any, where: str) -> tuple[dict[str, Any], ...]:
    if len(items) > MAX_EARLIER:
        raise ShardError(f"{where}: 'earlier' lists {len(items)} tries; a run keeps at most {MAX_EARLIER}")
    out = []
    for n, e in enumerate(items):
        out.append({"error": _text(e.get("error"), where, f"earlier[{n}].error"),
                    "attempts": _bounded_int(e.get("attempts"), 1, MAX_ATTEMPTS, where, f"earlier[{n}].attempts"),
                    "raw_text": _text(e.get("raw_text"), where, f"earlier[{n}].raw_text", optional=True)})
    return tuple(out)


# --- strict reading -------------------------------------------------------------------------------


def _read_json(path: Path, limit: int) -> Any:
    return read_json(path, limit=limit, error=ShardError,
                     hint="this shard's folder is not as a shard run writes it: rerun that shard (--shard K/N)")


def _parameter(value: Any, annotation: str, where: Path, key: str) -> Any:
    """A shard's parameter as its RunConfig field takes it, or a ShardError."""
    kinds = [a.strip() for a in annotation.replace("Literal", "str").split("|")]
    if value is None:
        if "None" in kinds:
            return None
    elif isinstance(value, bool):
        if "bool" in kinds:
            return value
    elif isinstance(value, int):
        if "int" in kinds:
            return _bounded_int(value, -(1 << 62), 1 << 62, where, f"parameters.{key}")
        if "float" in kinds:
            return float(value)
    elif isinstance(value, float):
        if "float" in kinds:
            return value
    elif isinstance(value, str):
        if any(k.startswith("str") or k == "Path" or k == "BackendName" for k in kinds):
            return Path(value) if "Path" in kinds else value
    elif isinstance(value, list):
        if any(k.startswith("tuple[int") for k in kinds) and all(type(x) is int for x in value):
            return tuple(value)
        if any(k.startswith("tuple[str") for k in kinds) and all(isinstance(x, str) for x in value):
            return tuple(value)
    elif isinstance(value, dict):
        if any(k.startswith("dict[str, float]") for k in kinds):
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
                return {str(k): float(v) for k, v in value.items()}
        elif any(k.startswith("dict") for k in kinds):
            return value
    raise ShardError(f"{where}: parameters.{key} is {quoted(value)}, which that option cannot be "
                     f"(it takes {annotation})", hint="rerun the shard whose meta/hub_pgen.json was changed")


def _bounded_int(value: Any, lo: int, hi: int, where: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ShardError(f"{where}: {key} must be a whole number from {lo:,} to {hi:,}, got {quoted(value)}",
                         hint="rerun the shard whose files were changed")
    return value


def _text(value: Any, where: str, key: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ShardError(f"{where}: {key} must be text, got {type(value).__name__}", hint="rerun that shard")
    if len(value) > MAX_TEXT_CHARS:
        raise ShardError(f"{where}: {key} is {len(value):,} characters; a run keeps at most {MAX_TEXT_CHARS:,}",
                         hint="rerun that shard")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ShardError(f"{where}: {key} holds a lone UTF-16 surrogate, which is not text",
                         hint="rerun that shard") from None
    return value


def quoted(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
