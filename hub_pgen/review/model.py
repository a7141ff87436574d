"""What the review shows, read back from a finished output folder (the dataset as written, not the run
that wrote it): its provenance, its D_syn records, each episode's skills, and which frames carry no
dialogue. The HTML report and the Rerun export both render a :class:`Review`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hub_pgen import layout
from hub_pgen.data import ImageRef, JournalRecord, Sample, Skill, SourceDataset
from hub_pgen.errors import SourceError, SourceNotFoundError, UsageError
from hub_pgen.journal import read_records
from hub_pgen.provenance_file import read_provenance

# Cards the report shows by default: failures and filtered samples first, then ok ones spread evenly
# over the plan. 1,000 cards with two thumbnails each is ~8 MB (docs/benchmarks.md).
DEFAULT_MAX_CARDS = 1000


@dataclass(frozen=True)
class Written:
    """What a run hands its page of the records it has just written to ``meta/syn_annotations.jsonl``
    (instead of the page reading that file back): ``records`` in the file's order, read once as they
    are iterated; ``lookup``, a record by sample id (the shown ones, in full); ``task_index``, each
    sample's ``task_index_high_level`` as the file has it (None: the format has none)."""

    records: Iterable[JournalRecord]
    lookup: Mapping[str, JournalRecord]
    task_index: Mapping[str, int] | None


@dataclass(frozen=True)
class EpisodeView:
    index: int
    length: int  # frames
    fps: float
    task: str
    skills: tuple[Skill, ...]  # as meta/skills.json has them (seconds from the episode's start)
    no_dialogue: tuple[tuple[int, int], ...]  # runs [start, end) of frames without a dialogue (-1)
    records: tuple[JournalRecord, ...]  # this episode's samples, in frame order

    @property
    def duration(self) -> float:
        return self.length / self.fps if self.fps else 0.0


@dataclass(frozen=True)
class Review:
    root: Path
    name: str  # the dataset: the repo it was pushed to, else its folder's name
    source_name: str  # where it came from: the source repo, or the source folder's name
    provenance: dict[str, Any]
    records: tuple[JournalRecord, ...]  # every sample, in plan order
    episodes: tuple[EpisodeView, ...]
    shown: frozenset[str]  # sample ids that get a card
    source: SourceDataset  # the output folder as a dataset (for decoding frames)
    frames_from: str  # where the "no dialogue" runs come from: the task_index_high_level column, or the records
    scope: tuple[int, ...] | None = None  # the episodes shown, when not all of them (hub-pgen report --episodes)
    total_episodes: int = 0
    problems: tuple[str, ...] = ()  # what `hub-pgen validate` finds wrong with the folder (hub-pgen report checks)
    measured: Any = None  # hub_pgen.quality.Quality of these records, when the run that wrote them passes it

    def counts(self) -> dict[str, int]:
        c = {"samples": len(self.records), "ok": 0, "failed": 0, "filtered": 0}
        for r in self.records:
            c[r.status if r.status in c else "failed"] += 1
        return c

    def generated(self) -> Iterator[JournalRecord]:
        """The dialogues the model wrote, as the run measured them: before the filters (a filtered
        record counts as the ok answer it was)."""
        return (replace(r, status="ok") if r.status == "filtered" else r for r in self.records)


def load_review(root: Path, *, max_cards: int = DEFAULT_MAX_CARDS, episodes: set[int] | None = None,
                name: str | None = None,
                written: Written | None = None) -> Review:
    """Read ``root``, a dataset folder hub-pgen wrote. ``episodes``: only these (None: all). ``name``:
    what to call the dataset when it was not pushed (default: the folder's name). ``written``: the
    records the run that is writing ``root`` just wrote to its ``meta/syn_annotations.jsonl`` — the same
    records, not read back; the page holds what its counts, timelines and mix read of each (no texts,
    no images: :func:`_outline`) and the shown ones in full (the run passes its quality measures: the
    texts are not there to measure)."""
    from hub_pgen.source.lerobot import load_episodes, load_info

    root = Path(root)
    if not (root / layout.PROVENANCE_PATH).is_file() or not (root / layout.SYN_ANNOTATIONS_PATH).is_file():
        if (root / Path(layout.PROVENANCE_PATH).name).is_file():
            raise SourceError(f"{root} is the meta folder of a dataset, not the dataset", path=root,
                              hint=f"give its parent: hub-pgen report {root.parent}")
        if (root / layout.JSONL_RESULT_NAME).is_file():
            raise SourceError(f"{root} is a shard or --input-jsonl result (D_syn records without a dataset)",
                              path=root, hint="report on the merged dataset: hub-pgen merge SHARD... first")
        raise SourceNotFoundError(
            f"{root} is not a dataset hub-pgen wrote (no {layout.PROVENANCE_PATH} and {layout.SYN_ANNOTATIONS_PATH})",
            path=root, hint="give the output folder of a run (--output-dir), e.g. hub-pgen report hub-pgen-out/NAME")
    provenance = read_provenance(root)
    info = load_info(root, output=True)
    eps = load_episodes(root, info)
    fps = float(info["fps"])
    source = SourceDataset(root=root, info=info, tasks=(), task_indices=(), episodes=eps)
    if written is None:
        records = tuple(read_records(root / layout.SYN_ANNOTATIONS_PATH).values())
    else:  # at 480k samples the texts and image labels are most of what the records hold
        records = tuple(_outline(r) for r in written.records)
    _check_places(records, eps, root / layout.SYN_ANNOTATIONS_PATH)
    if episodes is not None:
        unknown = sorted(episodes - set(eps))
        if unknown:
            raise UsageError(f"--episodes: {root} has no episode(s) {unknown} (it has {len(eps)}: "
                             f"{min(eps, default=0)}..{max(eps, default=0)})",
                             hint="pick episodes the dataset has with --episodes")
        records = tuple(r for r in records if r.episode_index in episodes)
    by_episode: dict[int, list[JournalRecord]] = defaultdict(list)
    for r in records:
        if r.episode_index is not None:
            by_episode[r.episode_index].append(r)
    skills = _skills(root)
    column = _no_dialogue_runs(root, eps, episodes)
    views = []
    for e, ep in eps.items():
        if episodes is not None and e not in episodes:
            continue
        recs = sorted(by_episode.get(e, ()), key=lambda r: (r.frame_index if r.frame_index is not None else -1,
                                                           r.sample_id))
        runs = column.get(e) if column is not None else _runs_from_records(ep.length, recs)
        views.append(EpisodeView(e, ep.length, fps, ep.tasks[0] if ep.tasks else "", skills.get(e, ()),
                                 tuple(runs or ()), tuple(recs)))
    src = provenance.get("source") or {}
    pushed = (provenance.get("parameters") or {}).get("push_to")
    shown = frozenset(pick_cards(records, max_cards))
    if written is not None:  # the file's own view of a shown record: its task index, no fingerprint
        index = written.task_index
        as_written = {sid: replace(written.lookup[sid], fingerprint="", task_index_high_level=(
            index.get(sid, layout.NO_TASK) if index is not None else None)) for sid in shown}
        records = tuple(as_written.get(r.sample_id, r) for r in records)
        views = [replace(v, records=tuple(as_written.get(r.sample_id, r) for r in v.records)) for v in views]
    return Review(root, str(pushed or name or root.name), str(src.get("repo_id") or src.get("root") or "?"),
                  provenance, records, tuple(views), shown, source,
                  "task_index_high_level" if column is not None else "records",
                  scope=tuple(sorted(episodes)) if episodes is not None else None, total_episodes=len(eps))


def _outline(r: JournalRecord) -> JournalRecord:
    """What the page reads of a record it shows no card of: where it is, its skill, status, types, error
    and verdict — not its texts, raw answer, earlier tries or image labels."""
    if r.user_prompt is None and r.robot_utterance is None and r.raw_text is None and not r.images and not r.earlier:
        return r
    return replace(r, images=(), user_prompt=None, robot_utterance=None, raw_text=None, earlier=(), timestamp=None)


def _check_places(records: tuple[JournalRecord, ...], eps: dict[int, Any], path: Path) -> None:
    """Every record's episode is the dataset's and its frames lie in it (the page indexes by them)."""
    for r in records:
        if r.episode_index is None:
            continue
        ep = eps.get(r.episode_index)
        where = f"{path}: sample {r.sample_id[:60]!r}"
        if ep is None:
            raise SourceError(f"{where} names episode {r.episode_index}, which the dataset does not have",
                              path=path, hint="the records belong to another dataset, or were edited: rerun the run")
        for key in ("frame_index", "frame_start", "frame_end"):
            value = getattr(r, key)
            if value is not None and not 0 <= value <= ep.length:
                raise SourceError(f"{where}: {key} {value} is outside episode {r.episode_index} "
                                  f"(frames 0..{ep.length - 1})", path=path,
                                  hint="the records belong to another dataset, or were edited: rerun the run")


def pick_cards(records: tuple[JournalRecord, ...], limit: int) -> list[str]:
    """Which samples get a card: every failure and filtered sample first, then ok samples spread evenly
    over the plan (a deterministic choice: the same output gives the same report)."""
    if limit <= 0:
        return []
    bad = [r.sample_id for r in records if r.status != "ok"][:limit]
    return bad + spread([r.sample_id for r in records if r.status == "ok"], limit - len(bad))


def spread(ids: Sequence[str], room: int) -> list[str]:
    """``room`` of ``ids`` spread evenly over them (all of them when there is room)."""
    if room >= len(ids):
        return list(ids)
    step = len(ids) / room if room > 0 else 0
    return [ids[int(i * step)] for i in range(max(0, room))]


def sample_of(record: JournalRecord) -> Sample:
    """The planned sample a record came from, as far as the frames stage needs it (its images)."""
    return Sample(
        sample_id=record.sample_id, episode_index=record.episode_index, episode_id=record.episode_id,
        frame_index=record.frame_index, timestamp=record.timestamp, skill_current=record.skill_current,
        skill_history=record.skill_history, task_description=record.task_description,
        scenario_type=record.scenario_type, response_type=record.response_type,
        images=tuple(parse_image_label(label) for label in record.images),
    )


def parse_image_label(label: str) -> ImageRef:
    """The inverse of :meth:`ImageRef.label`: ``camera@1.2345s``, ``camera#row12``, or a file path."""
    if label.endswith("s") and "@" in label:
        camera, _, t = label.rpartition("@")
        try:
            return ImageRef(camera=camera, timestamp=float(t[:-1]))
        except ValueError:
            pass
    if "#row" in label:
        camera, _, row = label.rpartition("#row")
        if row.isdigit():
            return ImageRef(camera=camera, row=int(row))
    return ImageRef(path=label)


def _skills(root: Path) -> dict[int, tuple[Skill, ...]]:
    """Each episode's skills from the output's meta/skills.json (always written: the source's, or the
    ones the run labelled). Unreadable: no skills shown (the report still shows the samples)."""
    from hub_pgen.errors import SkillsError
    from hub_pgen.source.skills import load_skills

    path = root / layout.SKILLS_PATH
    if not path.is_file():
        return {}
    try:
        return {e: s.skills for e, s in load_skills(path).episodes.items()}
    except (SkillsError, OSError):
        return {}


def _no_dialogue_runs(root: Path, eps: dict[int, Any], only: set[int] | None) -> dict[int, list[tuple[int, int]]] | None:
    """Per episode, the runs of frames whose ``task_index_high_level`` is -1, read from the data files
    (None: the dataset has no such column, e.g. ``--format lerobot-language``)."""
    out: dict[int, list[tuple[int, int]]] = {}
    for rel in sorted({ep.data_path for e, ep in eps.items() if only is None or e in only}):
        path = root / rel
        try:
            if layout.FEATURE not in pq.read_schema(path).names:
                return None
            table = pq.read_table(path, columns=["episode_index", "frame_index", layout.FEATURE])
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{path} is not a readable data file ({exc})", path=path,
                              hint=f"the output folder is damaged: hub-pgen validate {root} lists what is wrong") from exc
        # one sort by (episode, frame), then each episode is a slice: no per-episode scan of the file
        ep_col, fr_col = table.column("episode_index").to_numpy(), table.column("frame_index").to_numpy()
        order = np.lexsort((fr_col, ep_col))
        ep_col, fr_col = ep_col[order], fr_col[order]
        missing = table.column(layout.FEATURE).to_numpy()[order] == layout.NO_TASK
        cuts = np.flatnonzero(np.diff(ep_col)) + 1
        for a, b in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(ep_col)]))):
            e = int(ep_col[a])
            if only is None or e in only:
                out[e] = _runs(fr_col[a:b], missing[a:b])
    return out


def _runs(frames: np.ndarray, flag: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs [start, end) of consecutive frames where ``flag`` holds (``frames`` sorted;
    a run ends at an unflagged frame or a gap in the numbering). Vectorised: 1M frames in ms."""
    frames, flag = np.asarray(frames), np.asarray(flag, dtype=bool)
    at = np.flatnonzero(flag)
    if not len(at):
        return []
    on = frames[at]
    cut = np.flatnonzero((np.diff(at) != 1) | (np.diff(on) != 1)) + 1
    first, last = np.concatenate(([0], cut)), np.concatenate((cut, [len(on)])) - 1
    return [(int(on[a]), int(on[b]) + 1) for a, b in zip(first, last)]


def _runs_from_records(length: int, records: list[JournalRecord]) -> list[tuple[int, int]]:
    covered = np.zeros(length, dtype=bool)
    for r in records:
        if r.status == "ok" and r.frame_start is not None and r.frame_end is not None:
            covered[max(0, r.frame_start):min(length, r.frame_end)] = True
    return _runs(np.arange(length), ~covered)
