"""Loading a Qwen-VL model and its processor through transformers, once per process.

:func:`load_model` resolves a Hub id to one commit (so model and processor come from one snapshot
and provenance can name it), loads with left padding, and caches the result by
:class:`LoadOptions`: every backend with the same weights, device and dtype shares one model.
Failures become :class:`ModelLoadError` with the next step to take.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import transformers

from hub_pgen.errors import ModelLoadError

if TYPE_CHECKING:
    from hub_pgen.generate.constrained import GrammarCache

logger = logging.getLogger(__name__)

SUPPORTED_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")
_DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}


@dataclass(frozen=True)
class LoadOptions:
    """What selects the weights in memory: two backends with equal options share one model."""

    model: str
    revision: str | None
    device: str
    dtype: str
    attn_implementation: str | None
    trust_remote_code: bool


@dataclass
class LoadedModel:
    model: Any
    processor: Any
    options: LoadOptions
    commit: str | None  # resolved Hub commit, None for a local folder
    grammars: GrammarCache | None = None  # built on first constrained use, shared by its backends

    @property
    def family(self) -> str:
        return str(getattr(self.model.config, "model_type", "unknown"))


_MODELS: dict[LoadOptions, LoadedModel] = {}


def clear_models() -> None:
    """Forget every loaded model (the caller frees GPU memory with ``gc.collect()``)."""
    _MODELS.clear()


def resolve_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str | None, device: str) -> str:
    if dtype in (None, ""):
        return "float32" if device == "cpu" else "bfloat16"
    if dtype != "auto" and dtype not in _DTYPES:
        raise ModelLoadError(
            f"unknown dtype {dtype!r}; expected one of auto, {', '.join(sorted(_DTYPES))}",
            hint="pass --dtype bfloat16 (GPU) or --dtype float32 (CPU)",
        )
    return dtype


def load_model(options: LoadOptions) -> LoadedModel:
    """Load (or reuse) the model and processor. Raises :class:`ModelLoadError` saying what failed."""
    if options in _MODELS:
        return _MODELS[options]
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1":  # non-interactive run: no shard bars
        transformers.utils.logging.disable_progress_bar()
    commit = _resolve_commit(options)
    revision = commit or options.revision
    torch_dtype: Any = "auto" if options.dtype == "auto" else _DTYPES[options.dtype]
    kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": options.trust_remote_code}
    try:
        processor = transformers.AutoProcessor.from_pretrained(options.model, padding_side="left", **kwargs)
        if options.attn_implementation:
            kwargs["attn_implementation"] = options.attn_implementation
        if options.device != "cpu":
            kwargs["device_map"] = "auto" if options.device == "auto" else {"": options.device}
        model = transformers.AutoModelForImageTextToText.from_pretrained(
            options.model, dtype=torch_dtype, **kwargs
        )
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ImportError... here
        raise _load_error(options, exc) from exc
    model.eval()
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None or not hasattr(processor, "apply_chat_template"):
        raise ModelLoadError(
            f"{options.model}: AutoProcessor gave {type(processor).__name__}, not a vision-language "
            "processor with a tokenizer",
            hint="use a Qwen-VL Instruct checkpoint",
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    loaded = LoadedModel(model=model, processor=processor, options=options, commit=commit)
    if loaded.family not in SUPPORTED_FAMILIES:
        logger.warning(
            "%s is a %s model; hub-pgen is tested with %s",
            options.model,
            loaded.family,
            ", ".join(SUPPORTED_FAMILIES),
        )
    _MODELS[options] = loaded
    logger.info("loaded %s (%s, %s, %s)", options.model, loaded.family, options.device, options.dtype)
    return loaded


def _resolve_commit(options: LoadOptions) -> str | None:
    """The commit a Hub id resolves to, so model and processor load from one snapshot and provenance
    can name it. None for a local folder."""
    if Path(options.model).expanduser().exists():
        return None
    from transformers.utils.hub import cached_file, extract_commit_hash

    try:
        path = cached_file(
            options.model,
            "config.json",
            revision=options.revision,
            _raise_exceptions_for_missing_entries=True,
        )
    except Exception as exc:
        raise _load_error(options, exc) from exc
    return extract_commit_hash(path, None)


def _load_error(options: LoadOptions, exc: BaseException) -> ModelLoadError:
    where = options.model + (f"@{options.revision}" if options.revision else "")
    local = Path(options.model).expanduser()
    looks_local = local.is_absolute() or options.model.startswith((".", "~")) or options.model.count("/") > 1
    if looks_local and not local.exists():
        return ModelLoadError(
            f"model folder {options.model} does not exist",
            hint="pass a Hub id such as Qwen/Qwen3-VL-8B-Instruct, or an existing model folder",
        )
    if local.is_dir():
        hint = (
            "the folder needs config.json, the weights, and the processor files (tokenizer, "
            "preprocessor/processor config, chat template) as save_pretrained writes them"
        )
    elif os.environ.get("HF_HUB_OFFLINE"):
        hint = (
            f"HF_HUB_OFFLINE is set and {options.model} is not in the cache: "
            f"run `hf download {options.model}` first"
        )
    else:
        hint = (
            f"check the model id and network access; for a gated or private repo run `hf auth login`; "
            f"to prefetch: `hf download {options.model}`"
        )
    return ModelLoadError(f"cannot load pgen model {where}: {type(exc).__name__}: {exc}", hint=hint)
