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

from hub_pgen.errors import UsageError, scrub
from hub_pgen.generate.options import (
    OPTION_GROUPS,
    DecodingOptions,
    OptionGroup,
    ServerOptions,
    TransformersOptions,
)
from hub_pgen.generate.stream import Width

DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"

if TYPE_CHECKING:
    from hub_pgen.config import RunConfig
    from hub_pgen.generate.base import Backend

# RunConfig fields that belong to some backend: each backend names the option groups it uses
# (hub_pgen.generate.options); the others are left out of its provenance and reported as ignored
DECODING_OPTIONS = DecodingOptions.names()
TRANSFORMERS_OPTIONS = (*DECODING_OPTIONS, *TransformersOptions.names())
OPENAI_OPTIONS = (*DECODING_OPTIONS, *ServerOptions.names())
MODEL_OPTIONS = tuple(dict.fromkeys(name for group in OPTION_GROUPS for name in group.names()))  # every backend option


@dataclass(frozen=True)
class BackendSpec:
    name: str
    summary: str  # one line for --help
    needs_images: bool  # frames are decoded and shown to it
    identity: Callable[[RunConfig], dict[str, Any]]  # known before loading: refuses a mismatch early
    check: Callable[[RunConfig], None]  # before any side effect; may import heavy modules
    make: Callable[[RunConfig], Backend]
    option_types: tuple[type[OptionGroup], ...] = ()  # the option groups this backend uses
    resolve: Callable[[RunConfig], RunConfig] = lambda config: config  # fill defaults that need a look
    default_model: str | None = None  # --model when none is given (openai: asks the server)
    can_serve: bool = False  # talks to servers that --serve / --serve-command can start
    # samples handed to one generate() call: the batch for an in-process model; for a server, at least
    # as many as may be in flight (else --concurrency would wait on --batch-size)
    samples_per_call: Callable[[RunConfig], int] = lambda config: config.batch_size
    # how every pass (dialogues, labelling, verification) streams its calls to this backend
    # (hub_pgen.generate.stream): one batch of --batch-size at a time for a model-free backend
    width: Callable[[RunConfig], Width] = lambda config: Width(1, config.batch_size)

    @property
    def options(self) -> tuple[str, ...]:
        """The RunConfig fields this backend uses (of MODEL_OPTIONS)."""
        return tuple(name for group in self.option_types for name in group.names())

    @property
    def uses_model(self) -> bool:
        """It runs a model: the model options belong in its identity, provenance and card."""
        return "model" in self.options


def _template_identity(config: RunConfig) -> dict[str, Any]:
    return {"backend": "template", "version": 1}


def _make_template(config: RunConfig) -> Backend:
    from hub_pgen.generate.template import TemplateBackend

    return TemplateBackend()


def _transformers_identity(config: RunConfig) -> dict[str, Any]:
    return {"backend": "transformers", "model": config.model, "revision": config.model_revision, "dtype": config.dtype}


def require_packages(backend: str, modules: tuple[str, ...], extra: str) -> None:
    """A backend whose packages are missing stops before any output exists, naming the extra."""

    from hub_pgen.errors import MissingPackagesError
    from hub_pgen.install import pip_install

    missing = [m for m in modules if _missing(m)]
    if missing:
        raise MissingPackagesError(f"--backend {backend} needs {', '.join(missing)}, which this Python does not have",
                             hint=f"{pip_install(extra)} (or --backend openai with a model server, "
                                  "which needs neither torch nor transformers)")


def _missing(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is None
    except (ValueError, ImportError):  # sys.modules[module] = None: blocked
        return True


TRANSFORMERS_MODULES = ("torch", "torchvision", "transformers", "accelerate", "xgrammar")


def _model(config: RunConfig) -> str:
    """``--model`` as the backend gets it: RunConfig fills in the backend's default, ``resolve`` the
    one model an OpenAI server lists, and ``--serve`` refuses to start without one."""
    assert config.model is not None, "RunConfig and the backend's resolve step fill in the model"
    return config.model


def _check_transformers(config: RunConfig) -> None:
    from hub_pgen.generate.base import check_local_model

    check_local_model(_model(config))  # before the packages: a wrong path is said whatever is installed
    require_packages("transformers", TRANSFORMERS_MODULES, "transformers")
    from hub_pgen.generate.loading import check_device

    check_device(config.device)


def _make_transformers(config: RunConfig) -> Backend:
    from hub_pgen.generate.qwen import TransformersBackend

    decoding, load = DecodingOptions.of(config), TransformersOptions.of(config)
    return TransformersBackend.load(
        _model(config),
        device=load.device,
        dtype=load.dtype,
        attn_implementation=load.attn_implementation,
        trust_remote_code=load.trust_remote_code,
        max_new_tokens=decoding.max_new_tokens,
        temperature=decoding.temperature,
        top_p=decoding.top_p,
        constrained=decoding.constrained,
        max_retries=decoding.max_retries,
        max_pixels=config.max_pixels,
        revision=load.model_revision,
    )


def _openai_identity(config: RunConfig) -> dict[str, Any]:
    # the served model's name, not where the server is: a run resumes against another server of it
    return {"backend": "openai", "model": config.model}


def _check_openai(config: RunConfig) -> None:
    from hub_pgen.generate.keys import api_key

    if not config.base_url and not (config.serve or config.serve_command):
        raise UsageError("--backend openai needs --base-url URL (an OpenAI-compatible server), or --serve vllm|sglang "
                         "to start servers", hint="e.g. --base-url http://127.0.0.1:8000/v1 for `vllm serve MODEL`")
    api_key(config.api_key_env)  # a named variable that is not set: said now, not after the plan


def _resolve_openai(config: RunConfig) -> RunConfig:
    """Without --model, the one model the server lists."""
    import dataclasses

    if config.model or not config.base_url:
        return config
    from hub_pgen.generate.openai import served_models

    models = served_models(config.base_url, api_key_env=config.api_key_env, timeout=config.request_timeout)
    if len(models) != 1:
        shown = ", ".join(models[:10]) + (f", … ({len(models) - 10} more)" if len(models) > 10 else "")
        raise UsageError(f"--model: {scrub(config.base_url)} serves {len(models)} models ({shown or 'none'}); "
                         "say which", hint="add --model NAME, a name GET /v1/models lists")
    return dataclasses.replace(config, model=models[0])


def _make_openai(config: RunConfig) -> Backend:
    from hub_pgen.generate.openai import OpenAIBackend, OpenAIOptions

    serve = config.serve_options()  # first: --serve without --model is a UsageError saying so
    decoding, server = DecodingOptions.of(config), ServerOptions.of(config)
    return OpenAIBackend(OpenAIOptions(
        base_url=server.base_url or "", model=_model(config), api_key_env=server.api_key_env,
        serve=serve, concurrency=server.concurrency, request_timeout=server.request_timeout,
        max_new_tokens=decoding.max_new_tokens, temperature=decoding.temperature, top_p=decoding.top_p,
        constrained=decoding.constrained, max_retries=decoding.max_retries,
    ))


BACKENDS: dict[str, BackendSpec] = {
    "transformers": BackendSpec(
        name="transformers",
        summary="a Qwen-VL model through transformers, in this process (default)",
        needs_images=True,
        identity=_transformers_identity,
        check=_check_transformers,
        make=_make_transformers,
        option_types=(DecodingOptions, TransformersOptions),
        default_model=DEFAULT_MODEL,
        # two calls open: the next batch's processor runs while the device generates this one
        width=lambda config: Width(2, config.batch_size),
    ),
    "openai": BackendSpec(
        name="openai",
        summary="any OpenAI-compatible server (vLLM, SGLang, TGI, transformers serve): --base-url",
        needs_images=True,
        identity=_openai_identity,
        check=_check_openai,
        make=_make_openai,
        option_types=(DecodingOptions, ServerOptions),
        resolve=_resolve_openai,
        can_serve=True,
        samples_per_call=lambda config: max(config.batch_size, config.concurrency),
        # --concurrency requests of one sample each: a slow answer holds up no other
        width=lambda config: Width(config.concurrency, 1),
    ),
    "template": BackendSpec(
        name="template",
        summary="offline and deterministic, no model (demos, tests, dry plumbing runs)",
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
