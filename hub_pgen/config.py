"""A run's parameters, and the fingerprint that says which outputs belong to which parameters."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hub_pgen.errors import UsageError

BackendName = Literal["template", "transformers"]
DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"


@dataclass(frozen=True)
class RunConfig:
    # source (exactly one of root / repo_id / input_jsonl)
    root: Path | None = None
    repo_id: str | None = None
    revision: str | None = None
    input_jsonl: Path | None = None
    # output
    output_dir: Path | None = None
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
    model: str = DEFAULT_MODEL
    model_revision: str | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    constrained: bool = True
    max_retries: int = 2
    batch_size: int = 1
    device: str | None = None
    dtype: str | None = None
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    # push
    push_to: str | None = None
    branch: str | None = None
    private: bool = False
    tag_version: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sources = [x for x in (self.root, self.repo_id, self.input_jsonl) if x is not None]
        if len(sources) != 1:
            raise UsageError("give exactly one source: --root DIR, --repo-id OWNER/NAME, or --input-jsonl FILE")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.temperature < 0:
            raise UsageError(f"--temperature must be >= 0, got {self.temperature}")
        if self.max_retries < 0:
            raise UsageError(f"--max-retries must be >= 0, got {self.max_retries}")
        if self.sampling == "interval" and (self.sample_interval is None or self.sample_interval <= 0):
            raise UsageError("--sampling interval needs --sample-interval SECONDS > 0")
        if self.max_pixels is not None and self.max_pixels < 28 * 28:
            raise UsageError(f"--max-pixels must be at least 784 (28x28), got {self.max_pixels}")
        if self.branch and not self.push_to:
            raise UsageError("--branch needs --push-to OWNER/NAME")
        for flag, repo in (("--repo-id", self.repo_id), ("--push-to", self.push_to)):
            if repo is not None:
                check_repo_id(flag, repo)
        if self.input_jsonl is not None and self.push_to:
            raise UsageError("--push-to needs a dataset source (--root or --repo-id); --input-jsonl only makes a JSONL")

    def identity(self, *, cameras: tuple[str, ...], source_id: dict[str, Any], backend_id: dict[str, Any],
                 prompt_hash: str) -> dict[str, Any]:
        """Everything that changes what is generated — and nothing that does not (batch size,
        device, output path), so a run can resume with another batch size or on another machine."""
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
            "temperature": self.temperature,
            "top_p": self.top_p if self.temperature > 0 else None,
            "max_new_tokens": self.max_new_tokens if self.backend != "template" else None,
            "constrained": self.constrained if self.backend != "template" else None,
            "max_retries": self.max_retries if self.backend != "template" else None,
            "prompt_template": prompt_hash,
        }

    def parameters(self) -> dict[str, Any]:
        """All parameters, JSON-ready, for provenance (paths as strings)."""
        out = {}
        for k, v in asdict(self).items():
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
        raise UsageError(f"{flag} {repo_id!r} is not a Hub repo id: {e}",
                         hint=f"use {flag} OWNER/NAME, e.g. {flag} lerobot/svla_so101_pickplace") from None


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
