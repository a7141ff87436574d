"""A run's parameters, and the fingerprint that says which outputs belong to which parameters."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from hub_pgen import layout
from hub_pgen.errors import UsageError
from hub_pgen.generate.options import OPTION_GROUPS, DecodingOptions, OptionGroup
from hub_pgen.generate.registry import DEFAULT_MODEL  # noqa: F401  (re-exported)
from hub_pgen.generate.schema import DEFAULT_MAX_NEW_TOKENS

if TYPE_CHECKING:
    from hub_pgen.generate.servers import ServeOptions

G = TypeVar("G", bound=OptionGroup)

BackendName = Literal["template", "transformers", "openai"]
MIN_SAMPLE_INTERVAL_S = 1e-3  # below a millisecond every frame is a sample: use --sampling frame


@dataclass(frozen=True)
class RunConfig:
    # source (exactly one of root / repo_id / input_jsonl)
    root: Path | None = None
    repo_id: str | None = None
    revision: str | None = None
    input_jsonl: Path | None = None
    # output
    output_dir: Path | None = None
    output_format: str = layout.DEFAULT_FORMAT  # a key of layout.FORMATS
    # skills
    skills: str = "auto"  # auto | file | language | annotate (hub_pgen.skills)
    skills_file: Path | None = None  # --skills-file: a skills.json elsewhere than the dataset's meta/ (implies file)
    min_skill_seconds: float = 1.0  # --skills annotate: no labelled skill is shorter
    # plan
    sampling: Literal["segment", "interval", "frame"] = "segment"
    sample_interval: float | None = None
    episodes: tuple[int, ...] | None = None
    image_keys: tuple[str, ...] | None = None
    num_image_views: int | None = None
    max_pixels: int | None = None
    seed: int = 0
    scenario_mix: dict[str, float] | None = None
    response_mix: dict[str, float] | None = None
    # generate
    backend: BackendName = "transformers"
    model: str | None = None  # None: the backend's default (transformers: DEFAULT_MODEL; openai: the served one)
    model_revision: str | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    constrained: bool = True
    max_retries: int = 2
    batch_size: int = 1
    device: str | None = None
    dtype: str | None = None
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    # openai
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 16
    request_timeout: float = 300.0
    serve: str | None = None  # "vllm" | "sglang": start the servers (a preset of serve_command)
    serve_command: str | None = None  # a template with {model} and {port}
    num_servers: int | None = None  # None: one per visible GPU
    gpus_per_server: int = 1
    serve_timeout: float = 900.0
    # filters on the dialogues (hub_pgen.filters): filtered samples are recorded, never dropped silently
    min_chars: int | None = None
    dedupe: bool = False
    drop_degenerate: bool = False
    verify: str | None = None  # None | "report" | "filter" (hub_pgen.verify)
    # your own pgen prompt (--prompt-file): its text, checked; part of the fingerprint through its hash
    prompt_template: str | None = None
    prompt_file: str | None = None  # its file name, for provenance
    show_prompt: bool = False  # --dry-run --show-prompt: print one rendered prompt per scenario type
    # engine: where generation runs (hub_pgen.run.engine); not part of the fingerprint
    engine: str = "local"  # local | ray
    ray_address: str | None = None  # --engine ray: an existing cluster (default: start a local one)
    workers: int | None = None  # --engine ray: model actors (default: one per GPU of the cluster)
    # shards: this run generates one of num_shards parts of the plan (whole episodes); `hub-pgen merge`
    # writes the dataset from all of them. Not part of the fingerprint.
    num_shards: int = 1
    shard_index: int = 0
    # push
    push_to: str | None = None
    branch: str | None = None
    private: bool = False
    tag_version: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Every option is checked here, before anything touches the disk or loads a model."""
        from hub_pgen.generate.registry import get_backend

        sources = [x for x in (self.root, self.repo_id, self.input_jsonl) if x is not None]
        if len(sources) != 1:
            raise UsageError("give exactly one source: --root DIR, --repo-id OWNER/NAME, or --input-jsonl FILE")
        spec = get_backend(self.backend)
        if self.output_format not in layout.FORMATS:
            raise UsageError(f"--format must be one of {', '.join(layout.FORMATS)}, got {self.output_format!r}")
        if self.input_jsonl is not None and self.output_format != layout.DEFAULT_FORMAT:
            raise UsageError("--format shapes a dataset; --input-jsonl makes the D_syn JSONL alone",
                             hint="drop --format, or give a dataset source (--root or --repo-id)")
        if self.model is None and spec.default_model:
            object.__setattr__(self, "model", spec.default_model)
        if self.serve is not None or self.serve_command is not None:
            if not spec.can_serve:
                raise UsageError("--serve / --serve-command start OpenAI-compatible servers: they go with "
                                 "--backend openai", hint="add --backend openai (or leave --backend out)")
            if self.base_url:
                raise UsageError("give either --base-url (a server that runs) or --serve / --serve-command (servers "
                                 "hub-pgen starts), not both")
            if self.serve and self.serve_command:
                raise UsageError("give either --serve or --serve-command, not both")
            self.serve_options()  # the command template, server counts and timeout are checked there
        from hub_pgen.skills import SOURCES

        if self.skills not in SOURCES:
            raise UsageError(f"--skills must be one of {', '.join(SOURCES)}, got {self.skills!r}")
        if not math.isfinite(self.min_skill_seconds) or self.min_skill_seconds <= 0:
            raise UsageError(f"--min-skill-seconds must be a number of seconds > 0, got {self.min_skill_seconds}")
        if self.skills_file is not None and self.skills not in ("auto", "file"):
            raise UsageError(f"--skills-file gives the skills, --skills {self.skills} says to take them elsewhere",
                             hint="drop one of them")
        if self.skills_file is not None and self.skills == "auto":
            object.__setattr__(self, "skills", "file")
        if self.input_jsonl is not None and self.skills != "auto":
            raise UsageError("--skills chooses where a dataset's skills come from; --input-jsonl samples carry "
                             "their own", hint="drop --skills, or give a dataset source (--root or --repo-id)")
        if self.verify is not None:
            if self.verify not in ("report", "filter"):
                raise UsageError(f"--verify takes report or filter, got {self.verify!r}")
            for on, why in ((self.input_jsonl is not None, "--input-jsonl samples carry no episode's skills to choose "
                                                           "from"),
                            (self.num_shards > 1, "a shard writes no dataset (verify in a one-machine run)")):
                if on:
                    raise UsageError(f"--verify does not go with this run: {why}",
                                     hint="drop --verify here; verification runs where a dataset is written whole")
        if self.min_chars is not None and self.min_chars < 1:
            raise UsageError(f"--min-chars must be >= 1, got {self.min_chars}")
        if self.prompt_template is not None:
            from hub_pgen.generate.prompt import check_template

            try:
                check_template(self.prompt_template, where=f"--prompt-file {self.prompt_file or ''}".strip())
            except ValueError as e:
                raise UsageError(str(e), hint="start from the built-in template: python -c \"from hub_pgen.pgen "
                                              "import PGEN_PROMPT_TEMPLATE; print(PGEN_PROMPT_TEMPLATE)\"") from None
        from hub_pgen.run.engine import ENGINES, get_engine

        if self.engine not in ENGINES:
            raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        get_engine(self.engine).check_config(self)  # the flags that go with it
        if self.num_shards < 1:
            raise UsageError(f"--num-shards must be >= 1, got {self.num_shards}")
        if not 0 <= self.shard_index < self.num_shards:
            raise UsageError(f"--shard-index must be in 0..{self.num_shards - 1} (of --num-shards {self.num_shards}), "
                             f"got {self.shard_index}",
                             hint="shards are numbered from 0: --num-shards 4 --shard-index 0 … 3")
        if self.num_shards > 1:
            if self.input_jsonl is not None:
                raise UsageError("--num-shards splits a dataset's plan; --input-jsonl is one file",
                                 hint="split the JSONL file instead, one run per part")
            if self.push_to:
                raise UsageError("a shard writes no dataset, so it has nothing to push",
                                 hint="push from the merge: hub-pgen merge --output-dir OUT --root SRC SHARD... "
                                      "--push-to OWNER/NAME")
            if self.skills == "annotate":
                raise UsageError("--skills annotate cannot be sharded: every shard needs every episode's skills to "
                                 "compute the plan's type schedule",
                                 hint="label the skills once first: hub-pgen label (the same source and model "
                                      "options) --output-dir labels; then shard (and merge) with --skills-file "
                                      "labels/meta/skills.json")
        for group in OPTION_GROUPS:  # each group checks its own values (hub_pgen.generate.options)
            group.of(self).check(runs_model=spec.uses_model)
        if self.sample_interval is not None:
            if self.sampling != "interval":
                raise UsageError(
                    f"--sample-interval only applies to --sampling interval (this run samples by {self.sampling})",
                    hint=f"add --sampling interval, or drop --sample-interval {self.sample_interval:g}",
                )
            if not math.isfinite(self.sample_interval) or self.sample_interval < MIN_SAMPLE_INTERVAL_S:
                raise UsageError(
                    f"--sample-interval must be a number of seconds >= {MIN_SAMPLE_INTERVAL_S:g}, got "
                    f"{self.sample_interval}",
                    hint="for a sample at every frame use --sampling frame",
                )
        if self.sampling == "interval" and self.sample_interval is None:
            raise UsageError("--sampling interval needs --sample-interval SECONDS > 0",
                             hint="e.g. --sampling interval --sample-interval 1.0")
        if self.num_image_views is not None and self.num_image_views < 0:
            raise UsageError(f"--num-image-views-per-sample must be >= 0, got {self.num_image_views}")
        if self.max_pixels is not None and self.max_pixels < 28 * 28:
            raise UsageError(f"--max-pixels must be at least 784 (28x28), got {self.max_pixels}")
        if self.branch and not self.push_to:
            raise UsageError("--branch needs --push-to OWNER/NAME")
        for flag, repo in (("--repo-id", self.repo_id), ("--push-to", self.push_to)):
            if repo is not None:
                check_repo_id(flag, repo)
        if (self.push_to is not None and self.repo_id is not None and self.push_to.lower() == self.repo_id.lower()
                and not self.branch):  # the Hub's repo ids are not case-sensitive
            raise UsageError(f"--push-to {self.push_to} is the source dataset itself: its main branch and v3.0 tag "
                             "would become the new dataset",
                             hint=f"push to a repo of your own (--push-to YOUR-NAME/{self.push_to.split('/')[1]}-pgen), "
                                  f"or to a branch of the source (--branch pgen) if you may write there")
        if self.input_jsonl is not None and self.push_to:
            raise UsageError("--push-to needs a dataset source (--root or --repo-id); --input-jsonl only makes a JSONL")

    @property
    def decoding(self) -> DecodingOptions:
        """How answers are decoded and retried (every model backend's options)."""
        return DecodingOptions.of(self)

    def options_of(self, group: type[G]) -> G:
        """One option group's values (hub_pgen.generate.options)."""
        return group.of(self)

    def serve_options(self) -> ServeOptions | None:
        """The servers to start (``--serve`` / ``--serve-command``), checked; None for none."""
        if not (self.serve or self.serve_command):
            return None
        from hub_pgen.generate.servers import ServeOptions, preset

        if not self.model:
            raise UsageError("--serve needs --model: the model the servers load",
                             hint="e.g. --serve vllm --model Qwen/Qwen2.5-VL-7B-Instruct")
        if self.serve_command:
            command = self.serve_command
        else:
            assert self.serve is not None  # one of the two is given (above)
            command = preset(self.serve)
        return ServeOptions(command=command, model=self.model,
                            num_servers=self.num_servers, gpus_per_server=self.gpus_per_server,
                            startup_timeout=self.serve_timeout)

    def identity(self, *, cameras: tuple[str, ...], source_id: dict[str, Any], backend_id: dict[str, Any],
                 prompt_hash: str, skills_id: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything that changes what is generated — and nothing that does not (batch size,
        device, output path), so a run can resume with another batch size or on another machine."""
        from hub_pgen import filters
        from hub_pgen.generate.registry import get_backend

        model = get_backend(self.backend).uses_model
        return {
            "source": source_id,
            "sampling": self.sampling,
            "sample_interval": self.sample_interval if self.sampling == "interval" else None,
            "episodes": list(self.episodes) if self.episodes is not None else None,
            "cameras": list(cameras),
            "max_pixels": self.max_pixels,
            "seed": self.seed,
            "scenario_mix": self.scenario_mix,
            "response_mix": self.response_mix,
            "backend": backend_id,
            "temperature": self.temperature if model else None,
            "top_p": self.top_p if model and self.temperature > 0 else None,
            "max_new_tokens": self.max_new_tokens if model else None,
            "constrained": self.constrained if model else None,
            "max_retries": self.max_retries if model else None,
            "prompt_template": prompt_hash,
            "format": self.output_format if self.input_jsonl is None else None,
            "skills": skills_id,  # where the skills came from (file/language: their digest; annotate: how)
            "filters": filters.identity(self),
            "verify": self.verify,
        }

    def parameters(self) -> dict[str, Any]:
        """The parameters that shaped the result, JSON-ready, for provenance (paths as strings):
        the model options only when the backend runs a model."""
        from hub_pgen.generate.registry import MODEL_OPTIONS, get_backend

        used = get_backend(self.backend).options
        out = {}
        for k, v in asdict(self).items():
            if k in MODEL_OPTIONS and k not in used:
                continue
            if k == "prompt_template":  # the text is long: provenance has its hash (and prompt_file its name)
                continue
            out[k] = str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)
        return out


def check_repo_id(flag: str, repo_id: str) -> None:
    """``OWNER/NAME`` as the Hub accepts it (huggingface_hub's own rules), else a UsageError."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        if repo_id.count("/") != 1:
            raise HFValidationError("it must have the form OWNER/NAME")
        validate_repo_id(repo_id)
    except HFValidationError as e:
        example = ("lerobot/svla_so101_pickplace" if flag == "--repo-id"
                   else "your-name/svla_so101_pickplace-pgen")  # never the source's own repo
        raise UsageError(f"{flag} {repo_id!r} is not a Hub repo id: {e}",
                         hint=f"use {flag} OWNER/NAME, e.g. {flag} {example}") from None


def fingerprint(identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def diff_identity(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Which parameters differ, for a message that says what changed."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(diff_identity(a, b, prefix + key + "."))
        elif a != b:
            out[prefix + key] = (a, b)
    return out


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
