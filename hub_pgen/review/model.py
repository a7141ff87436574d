"""What the review shows, read back from a finished output folder (the dataset as written, not the run
that wrote it): its provenance, its D_syn records, each episode's skills, and which frames carry no
dialogue. The HTML report and the Rerun export both render a :class:`Review`.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hub_pgen import layout
from hub_pgen.data import ImageRef, JournalRecord, Sample, Skill, SourceDataset
from hub_pgen.errors import SourceError, SourceNotFoundError, UsageError
from hub_pgen.provenance_file import read_provenance
from hub_pgen.records_file import iter_records, read_records
from hub_pgen.review.tally import EpisodeTally, Marker, Tally, pick_positions, spread_positions, status_code

# Cards the report shows by default: failures and filtered samples first, then ok ones spread evenly
# over the plan. 1,000 cards with two thumbnails each is ~8 MB (docs/benchmarks.md).
DEFAULT_MAX_CARDS = 1000


@dataclass(frozen=True)
class Written:
    """What a run hands the page of the records it has just written to ``meta/syn_annotations.jsonl``
    (instead of the page reading that file back): the :class:`~hub_pgen.review.tally.Tally` its one pass
    over them filled (made by :func:`new_tally`, as :func:`load_review` makes its own)."""

    tally: Tally


@dataclass(frozen=True)
class EpisodeView:
    index: int
    length: int  # frames
    fps: float
    task: str
    skills: tuple[Skill, ...]  # as meta/skills.json has them (seconds from the episode's start)
    no_dialogue: tuple[tuple[int, int], ...]  # runs [start, end) of frames without a dialogue (-1)
    samples: int = 0  # this episode's records
    statuses: Mapping[str, int] = field(default_factory=dict)  # status → records
    markers: tuple[Marker, ...] = ()  # its timeline's dots, in frame order: every sample's, or the shown ones'
    cards: tuple[JournalRecord, ...] = ()  # the shown samples, in full, in frame order

    @property
    def duration(self) -> float:
        return self.length / self.fps if self.fps else 0.0


@dataclass(frozen=True)
class Review:
    root: Path
    name: str  # the dataset: the repo it was pushed to, else its folder's name
    source_name: str  # where it came from: the source repo, or the source folder's name
    provenance: dict[str, Any]
    tally: Tally  # what the page reads of every record (counts, mix, reasons, verdicts), summed
    cards: tuple[JournalRecord, ...]  # the samples that get a card, in plan order, as the file has them
    episodes: tuple[EpisodeView, ...]
    shown: frozenset[str]  # sample ids that get a card
    source: SourceDataset  # the output folder as a dataset (for decoding frames)
    frames_from: str  # where the "no dialogue" runs come from: the task_index_high_level column, or the records
    scope: tuple[int, ...] | None = None  # the episodes shown, when not all of them (hub-pgen report --episodes)
    total_episodes: int = 0
    problems: tuple[str, ...] = ()  # what `hub-pgen validate` finds wrong with the folder (hub-pgen report checks)
    measured: Any = None  # hub_pgen.quality.Quality of the records: the run's, or measured as they were read

    def counts(self) -> dict[str, int]:
        return dict(self.tally.counts)


def new_tally(episodes: Mapping[int, Any], codes: np.ndarray, *, coverage: bool,
              max_cards: int | None = None, measure: bool = False) -> Tally:
    """The tally of records whose statuses (:func:`~hub_pgen.review.tally.status_code`, in plan order)
    are ``codes``, for a page of ``max_cards`` cards (default :data:`DEFAULT_MAX_CARDS`). A run makes it
    for the records it writes (its page then reads none back), :func:`load_review` for the records it
    reads: one page either way.
    ``coverage``: the dataset has no ``task_index_high_level`` (the no-dialogue runs come from the
    records); ``measure``: with the quality measures of the records as generated."""
    from hub_pgen.quality import Meter

    limit = DEFAULT_MAX_CARDS if max_cards is None else max_cards
    return Tally(episodes, shown=pick_positions(codes, limit).tolist(), total=len(codes),
                 coverage=coverage, meter=Meter() if measure else None)


def load_review(root: Path, *, max_cards: int = DEFAULT_MAX_CARDS, episodes: set[int] | None = None,
                name: str | None = None,
                written: Written | None = None) -> Review:
    """Read ``root``, a dataset folder hub-pgen wrote. ``episodes``: only these (None: all). ``name``:
    what to call the dataset when it was not pushed (default: the folder's name). ``written``: the tally
    of the records the run that is writing ``root`` just wrote (not read back; the run passes its quality
    measures). Else the records are read twice, a line at a time: once for their statuses (which get a
    card), once into the tally, which holds sums and the shown records, not a record per sample."""
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
    path = root / layout.SYN_ANNOTATIONS_PATH
    codes = _statuses(path, eps, episodes) if written is None else None
    if episodes is not None:
        unknown = sorted(episodes - set(eps))
        if unknown:
            raise UsageError(f"--episodes: {root} has no episode(s) {unknown} (it has {len(eps)}: "
                             f"{min(eps, default=0)}..{max(eps, default=0)})",
                             hint="pick episodes the dataset has with --episodes")
    column = _no_dialogue_runs(root, eps, episodes)
    if codes is None:
        assert written is not None
        tally = written.tally
    else:
        tally = new_tally(eps, codes, coverage=column is None, max_cards=max_cards, measure=True)
        for _, r in iter_records(path):
            if episodes is None or r.episode_index in episodes:
                tally.add(r)
        if tally.counts["samples"] != len(codes):
            raise SourceError(f"{path} changed while it was read", path=path, hint="run hub-pgen report again")
    skills = _skills(root)
    views = []
    for e, ep in eps.items():
        if episodes is not None and e not in episodes:
            continue
        got = tally.by_episode.get(e) or EpisodeTally()
        if column is not None:
            runs = column.get(e)
        else:
            covered = got.covered if got.covered is not None else np.zeros(ep.length, dtype=bool)
            runs = _runs(np.arange(ep.length), ~covered)
        views.append(EpisodeView(e, ep.length, fps, ep.tasks[0] if ep.tasks else "", skills.get(e, ()),
                                 tuple(runs or ()), samples=got.samples, statuses=dict(got.statuses),
                                 markers=tuple(m for _, m in sorted(got.markers, key=_first)),
                                 cards=tuple(r for _, r in sorted(got.cards, key=_first))))
    src = provenance.get("source") or {}
    pushed = (provenance.get("parameters") or {}).get("push_to")
    return Review(root, str(pushed or name or root.name), str(src.get("repo_id") or src.get("root") or "?"),
                  provenance, tally, tuple(tally.cards), tuple(views), frozenset(tally.shown_ids), source,
                  "task_index_high_level" if column is not None else "records",
                  scope=tuple(sorted(episodes)) if episodes is not None else None, total_episodes=len(eps),
                  measured=tally.meter.result() if tally.meter is not None else None)


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _statuses(path: Path, eps: Mapping[int, Any], episodes: set[int] | None) -> np.ndarray:
    """The status code of each record of the file in scope (``episodes``: only theirs), in file order; every
    record read strictly (:func:`~hub_pgen.records_file.iter_records`) and checked: its episode is the
    dataset's, its frames lie in it, its sample is there once (by a hash of its id: 8 bytes a record,
    then the line of a repeated one found again)."""
    codes, ids = array("b"), array("q")
    for _, r in iter_records(path):
        check_place(r, eps, path)
        ids.append(hash(r.sample_id))
        if episodes is None or r.episode_index in episodes:
            codes.append(status_code(r.status))
    keys = np.sort(np.frombuffer(ids, dtype=np.int64))
    twice = set(keys[1:][keys[1:] == keys[:-1]].tolist())
    if twice:
        seen: set[str] = set()
        for n, r in iter_records(path):
            if hash(r.sample_id) in twice:
                if r.sample_id in seen:
                    raise SourceError(f"{path}:{n}: sample {r.sample_id[:60]!r} appears twice", path=path,
                                      hint="the file is damaged or was edited: rerun the run that wrote it")
                seen.add(r.sample_id)
    return np.frombuffer(codes, dtype=np.int8)


def check_place(r: JournalRecord, eps: Mapping[int, Any], path: Path) -> None:
    """The record's episode is the dataset's and its frames lie in it (the page indexes by them)."""
    if r.episode_index is None:
        return
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


def episode_records(review: Review) -> dict[int, list[JournalRecord]]:
    """Each shown episode's records, in full and in frame order, read from the folder's file (the Rerun
    export logs every one of them; the page holds only its cards)."""
    out: dict[int, list[JournalRecord]] = {ep.index: [] for ep in review.episodes}
    for r in read_records(review.root / layout.SYN_ANNOTATIONS_PATH).values():
        if r.episode_index in out:
            out[r.episode_index].append(r)
    for recs in out.values():
        recs.sort(key=lambda r: (r.frame_index if r.frame_index is not None else -1, r.sample_id))
    return out


def spread(ids: Sequence[str], room: int) -> list[str]:
    """``room`` of ``ids`` spread evenly over them (all of them when there is room), as the page spreads
    its ok cards (:func:`~hub_pgen.review.tally.pick_positions`)."""
    return [ids[i] for i in spread_positions(len(ids), room)]


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
