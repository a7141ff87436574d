"""Generation backends by name: what each one is, which options apply to it, and how to build it.

The pipeline, the CLI and provenance ask the registry instead of comparing backend names: a
backend's entry says whether it runs a model (so the model options belong in its identity and its
provenance), whether it needs images, how to check its options before anything is written, and how
to build it. A new backend is one module plus one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub_pgen.errors import UsageError

if TYPE_CHECKING:
    from hub_pgen.config import RunConfig
    from hub_pgen.generate.base import Backend

# RunConfig fields that only mean something to a backend that runs a model
MODEL_OPTIONS = ("model", "model_revision", "device", "dtype", "attn_implementation", "trust_remote_code",
                 "temperature", "top_p", "max_new_tokens", "constrained", "max_retries", "batch_size")


@dataclass(frozen=True)
class BackendSpec:
    name: str
    summary: str  # one line for --help
    uses_model: bool  # the MODEL_OPTIONS apply (identity, provenance, card)
    needs_images: bool  # frames are decoded and shown to it
    identity: Callable[[RunConfig], dict[str, Any]]  # known before loading: refuses a mismatch early
    check: Callable[[RunConfig], None]  # before any side effect; may import heavy modules
    make: Callable[[RunConfig], Backend]


def _template_identity(config: RunConfig) -> dict[str, Any]:
    return {"backend": "template", "version": 1}


def _make_template(config: RunConfig) -> Backend:
    from hub_pgen.generate.template import TemplateBackend

    return TemplateBackend()


def _transformers_identity(config: RunConfig) -> dict[str, Any]:
    return {"backend": "transformers", "model": config.model, "revision": config.model_revision, "dtype": config.dtype}


def _check_transformers(config: RunConfig) -> None:
    from hub_pgen.generate.loading import check_device, check_local_model

    check_device(config.device)
    check_local_model(config.model)


def _make_transformers(config: RunConfig) -> Backend:
    from hub_pgen.generate.qwen import TransformersBackend

    return TransformersBackend.load(
        config.model,
        device=config.device,
        dtype=config.dtype,
        attn_implementation=config.attn_implementation,
        trust_remote_code=config.trust_remote_code,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        constrained=config.constrained,
        max_retries=config.max_retries,
        max_pixels=config.max_pixels,
        revision=config.model_revision,
    )


BACKENDS: dict[str, BackendSpec] = {
    "transformers": BackendSpec(
        name="transformers",
        summary="a Qwen-VL model through transformers, in this process (default)",
        uses_model=True,
        needs_images=True,
        identity=_transformers_identity,
        check=_check_transformers,
        make=_make_transformers,
    ),
    "template": BackendSpec(
        name="template",
        summary="offline and deterministic, no model (demos, tests, dry plumbing runs)",
        uses_model=False,
        needs_images=False,
        identity=_template_identity,
        check=lambda config: None,
        make=_make_template,
    ),
}


def get_backend(name: str) -> BackendSpec:
    try:
        return BACKENDS[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}", hint=f"choose one of {', '.join(BACKENDS)}") from None
