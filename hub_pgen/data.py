"""The records the pipeline's stages hand each other.

source → :class:`SourceDataset` / :class:`SkillsFile`; plan → :class:`Sample` (with :class:`ImageRef`);
frames → PIL images per sample; generate → :class:`Dialogue` inside a :class:`GenerationResult`;
journal → :class:`JournalRecord`. All frozen: a stage never edits what an earlier stage produced.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

# --- source -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoSpan:
    """Where one episode's frames of one camera live: a file holding many episodes back to back."""

    path: str  # relative to the dataset root, POSIX
    from_timestamp: float
    to_timestamp: float


@dataclass(frozen=True)
class Episode:
    index: int
    length: int
    dataset_from_index: int
    dataset_to_index: int
    data_path: str  # relative data parquet holding this episode's rows
    tasks: tuple[str, ...] = ()
    videos: dict[str, VideoSpan] = field(default_factory=dict)
    # meta/episodes' timestamp stats show the frames on lerobot's grid (timestamp = frame_index / fps, in
    # float32): a shard may plan this episode without its data file (hub_pgen.plan.planner.grid_times)
    on_grid: bool = False

    def __post_init__(self) -> None:
        if self.length < 0 or self.dataset_to_index - self.dataset_from_index != self.length:
            raise ValueError(
                f"episode {self.index}: length {self.length} does not match "
                f"dataset_from_index..dataset_to_index {self.dataset_from_index}..{self.dataset_to_index}"
            )


@dataclass(frozen=True)
class SourceDataset:
    """What hub-pgen knows about a LeRobot v3.0 dataset folder after reading its metadata."""

    root: Path
    info: dict[str, Any]
    tasks: tuple[str, ...]  # task string by task_index position (original rows)
    task_indices: tuple[int, ...]  # task_index of each row of ``tasks``
    episodes: dict[int, Episode]
    repo_id: str | None = None
    revision: str | None = None  # resolved commit sha when it came from the Hub
    language: Any = None  # hub_pgen.language.SourceLanguage: the source's own language rows, if any
    # data files the metadata names that are not here yet (a Hub source fetches what each step needs:
    # hub_pgen.source.needs); empty for a folder on disk, and once the rest is fetched to write a dataset
    absent_data: frozenset[str] = frozenset()

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return self.info["features"]

    @property
    def camera_keys(self) -> tuple[str, ...]:
        """Image and video features, in info.json order (the order ``--num-image-views-per-sample`` takes)."""
        return tuple(k for k, ft in self.features.items() if ft.get("dtype") in ("video", "image"))

    @property
    def video_keys(self) -> tuple[str, ...]:
        return tuple(k for k, ft in self.features.items() if ft.get("dtype") == "video")

    @property
    def data_paths(self) -> tuple[str, ...]:
        return tuple(sorted({ep.data_path for ep in self.episodes.values()}))


@dataclass(frozen=True, slots=True)
class Skill:
    name: str
    start: float
    end: float


@dataclass(frozen=True)
class EpisodeSkills:
    episode_index: int
    description: str | None
    skills: tuple[Skill, ...]


@dataclass(frozen=True)
class SkillsFile:
    coarse_description: str | None
    skill_to_task_index: dict[str, int]
    episodes: dict[int, EpisodeSkills]
    notices: tuple[Any, ...] = ()  # hub_pgen.notices.Notice: what was tolerated, by kind


# --- plan -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One image a sample shows the model: a video frame (camera + timestamp in the episode),
    an image stored in the data parquet (camera + global row index), or a file path (JSONL input)."""

    camera: str | None = None
    timestamp: float | None = None  # seconds from episode start (video)
    row: int | None = None  # global dataset index (image features stored in parquet)
    path: str | None = None  # file path (D_labeled JSONL input)

    def label(self) -> str:
        if self.path is not None:
            return self.path
        if self.timestamp is not None:
            return f"{self.camera}@{self.timestamp:.4f}s"
        return f"{self.camera}#row{self.row}"


@dataclass(frozen=True, slots=True)
class Sample:
    """One pgen call's worth of context: a moment inside one skill segment."""

    sample_id: str  # stable identity, e.g. "ep000003-f000120"
    episode_index: int | None  # None for JSONL input without a dataset
    episode_id: str
    frame_index: int | None
    timestamp: float | None
    skill_current: str
    skill_history: tuple[str, ...]
    task_description: str
    scenario_type: str
    response_type: str
    images: tuple[ImageRef, ...] = ()
    # frames [frame_start, frame_end) of the episode take this sample's dialogue
    frame_start: int | None = None
    frame_end: int | None = None
    segment: int | None = None  # position of the skill in its episode

    def to_prompt_fields(self) -> dict[str, Any]:
        """The seed's D_labeled sample dict (what ``construct_prompt(sample)`` takes)."""
        return {
            "episode_id": self.episode_id,
            "t": self.frame_index,
            "images": [ref.label() for ref in self.images],
            "skill_current": self.skill_current,
            "skill_history": list(self.skill_history),
            "task_description": self.task_description,
            "scenario_type": self.scenario_type,
            "response_type": self.response_type,
        }


# --- generate ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dialogue:
    scenario_type: str
    response_type: str
    user_prompt: str
    robot_utterance: str

    def __post_init__(self) -> None:
        for name in ("scenario_type", "response_type", "user_prompt", "robot_utterance"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"dialogue field {name!r} must be a non-empty string, got {value!r}")

    @property
    def task_string(self) -> str:
        """The ``meta/tasks.parquet`` index string of this dialogue (SPEC)."""
        return f"{self.user_prompt} | {self.robot_utterance}"


@dataclass(frozen=True)
class GenerationRequest:
    sample: Sample
    prompt: str
    images: tuple[Any, ...]  # PIL.Image.Image, one per ImageRef
    seed: int
    first_attempt: int = 0  # tries this sample already had in earlier runs (--retry-failed continues after them)


@dataclass(frozen=True)
class GenerationResult:
    sample_id: str
    dialogue: Dialogue | None
    raw_text: str = ""
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.dialogue is not None


# --- journal ----------------------------------------------------------------------------------

# "filtered": a sample the filters took out, in meta/syn_annotations.jsonl only (hub_pgen.filters)
Status = Literal["ok", "failed", "filtered"]
_OPT = type(None)
# the JSON types of a record's fields, as hub-pgen writes them (JournalRecord.from_json checks them)
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "sample_id": (str,), "status": (str,), "episode_id": (str,), "t": (int, _OPT), "skill_current": (str,),
    "task_description": (str,), "user_prompt": (str, _OPT), "robot_utterance": (str, _OPT),
    "scenario_type": (str,), "response_type": (str,), "episode_index": (int, _OPT), "frame_index": (int, _OPT),
    "timestamp": (float, int, _OPT), "frame_start": (int, _OPT), "frame_end": (int, _OPT),
    "task_index_high_level": (int, _OPT), "error": (str, _OPT), "raw_text": (str, _OPT), "attempts": (int,),
    "fingerprint": (str,), "verified": (dict, _OPT),
}


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One line of the journal and of ``meta/syn_annotations.jsonl`` (the D_syn record of SPEC)."""

    sample_id: str
    status: Status
    episode_id: str
    t: int | None
    images: tuple[str, ...]
    skill_current: str
    skill_history: tuple[str, ...]
    task_description: str
    user_prompt: str | None
    robot_utterance: str | None
    scenario_type: str
    response_type: str
    episode_index: int | None = None
    frame_index: int | None = None
    timestamp: float | None = None
    frame_start: int | None = None
    frame_end: int | None = None
    task_index_high_level: int | None = None  # filled at write time
    error: str | None = None
    raw_text: str | None = None
    attempts: int = 1
    fingerprint: str = ""
    # earlier failed tries of this sample, oldest first: {"error", "attempts", "raw_text"} each
    # (kept by --retry-failed, so a recovered sample still shows what went wrong before)
    earlier: tuple[dict[str, Any], ...] = ()
    # --verify: {"skill": what the verifier read (None: no usable answer), "agrees": bool}; filled at write time
    verified: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object of its line (field order; containers copied, so a caller may
        set or pop keys). Built field by field: ``dataclasses.asdict``'s deep copy was a third of the
        journal's write time."""
        d = {name: getattr(self, name) for name in _RECORD_FIELDS}
        d["images"] = list(self.images)
        d["skill_history"] = list(self.skill_history)
        if self.earlier:
            d["earlier"] = [dict(e) for e in self.earlier]
        else:
            del d["earlier"]  # records that never failed keep the journal format they had
        if self.verified is None:
            del d["verified"]  # likewise: only --verify runs carry it
        else:
            d["verified"] = dict(self.verified)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], shared: dict[Any, Any] | None = None) -> JournalRecord:
        """The record a line holds; TypeError when a field is not of the type hub-pgen writes (a line from
        an edited or damaged file must not reach code that sorts, formats or indexes it). ``shared``: a
        reader's table of values already seen — the fields most records repeat (episode, skill, task,
        history, types, fingerprint) become one object each, not one per line (a file of 480k records
        read back costs a third less memory)."""
        cls.check_json(d)
        return cls.from_checked(d, shared)

    @staticmethod
    def check_json(d: Any) -> None:
        """TypeError where :meth:`from_json` refuses ``d`` (a field of another type, a field every record has
        missing), without building the record: what a journal's index needs of a line
        (:meth:`hub_pgen.journal.JournalView.load` keeps the lines :func:`hub_pgen.journal.load_journal` keeps)."""
        if not isinstance(d, dict):
            raise TypeError(f"expected a JSON object, got {type(d).__name__}")
        for key, value in d.items():
            types = _RECORD_TYPES.get(key)
            if types is not None and type(value) not in types and (not isinstance(value, types)
                                                                   or isinstance(value, bool)):
                raise TypeError(f"{key!r} is {type(value).__name__}")
        for key in ("images", "skill_history"):
            if key in d and not (isinstance(d[key], list) and all(isinstance(x, str) for x in d[key])):
                raise TypeError(f"{key!r} must list strings")
        if "earlier" in d and not (isinstance(d["earlier"], list) and all(isinstance(e, dict) for e in d["earlier"])):
            raise TypeError("'earlier' must list objects")
        for key in _REQUIRED_FIELDS:
            if key not in d:
                raise TypeError(f"missing {key!r}")

    @classmethod
    def from_checked(cls, d: dict[str, Any], shared: dict[Any, Any] | None = None) -> JournalRecord:
        """The record of a line whose types are known good: checked by :meth:`from_json` (which ends
        here), or the run's own journal read back again (:class:`hub_pgen.journal.JournalView`, which
        skips the second check)."""
        kw = dict(d) if d.keys() <= _FIELD_SET else {k: v for k, v in d.items() if k in _FIELD_SET}
        kw["images"] = tuple(kw.get("images", ()))
        kw["skill_history"] = tuple(kw.get("skill_history", ()))
        earlier = kw.get("earlier")
        kw["earlier"] = tuple(dict(e) for e in earlier if isinstance(e, dict)) if earlier else ()
        if "verified" in kw and not isinstance(kw["verified"], dict):
            del kw["verified"]
        if shared is not None:
            for key in _SHARED_FIELDS:
                if key in kw:
                    kw[key] = shared.setdefault(kw[key], kw[key])
        return cls(**kw)

    def as_earlier(self) -> dict[str, Any]:
        """This (failed) record as an entry of a retried record's ``earlier`` list."""
        return {"error": self.error, "attempts": self.attempts, "raw_text": self.raw_text}

    @property
    def dialogue(self) -> Dialogue | None:
        if self.status != "ok" or not self.user_prompt or not self.robot_utterance:
            return None
        return Dialogue(self.scenario_type, self.response_type, self.user_prompt, self.robot_utterance)


_RECORD_FIELDS = tuple(f.name for f in fields(JournalRecord))
# the fields a line must have (the others have defaults; from_checked gives images and history theirs)
_REQUIRED_FIELDS = tuple(f.name for f in fields(JournalRecord) if f.default is MISSING
                         and f.default_factory is MISSING and f.name not in ("images", "skill_history"))
_FIELD_SET = frozenset(_RECORD_FIELDS)
_SHARED_FIELDS = ("status", "episode_id", "skill_current", "skill_history", "task_description", "scenario_type",
                  "response_type", "fingerprint")
