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
from hub_pgen.generate.base import check_local_model, is_local_model  # noqa: F401  (re-exported)

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


DEVICE_HELP = "cpu, cuda, cuda:N (one GPU), or auto (spread over every GPU, else CPU)"


def check_device(device: str | None) -> None:
    """Refuse a ``--device`` that cannot work here, before anything is loaded or written: a string
    torch cannot parse is a usage error, a CUDA device on a machine without one a load error."""
    from hub_pgen.errors import UsageError

    if device == "cpu":
        return
    if device in (None, "", "auto"):  # a GPU when there is one: one that is there but unusable is said
        if not cuda_usable():
            present = gpu_present()
            if present:
                raise ModelLoadError(
                    f"this machine has a GPU ({present}), but torch cannot use it: {_no_cuda_reason()}"
                    + (f" [{_cuda_warning}]" if _cuda_warning else "") + "; hub-pgen does not fall back to the CPU "
                    "silently", hint=_unusable_gpu_hint())
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {device!r} is not a device torch knows", hint=f"use {DEVICE_HELP}") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"--device {device}: {_no_cuda_reason()}", hint=_no_cuda_hint())
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered 0..{torch.cuda.device_count() - 1}",
                hint="pick an existing GPU, or --device auto to use all of them",
            )


_cuda_warning: str | None = None  # what torch said when CUDA did not initialise (a driver too old, say)


def cuda_usable() -> bool:
    """``torch.cuda.is_available()``, keeping the warning torch gives when CUDA fails to initialise."""
    import warnings

    global _cuda_warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = bool(torch.cuda.is_available())
    said = [str(w.message).strip().splitlines()[0] for w in caught if "cuda" in str(w.message).lower()]
    if said:
        _cuda_warning = said[0][:300]
    return ok


def gpu_present() -> str | None:
    """The NVIDIA GPU this machine has, whatever torch can do with it: ``nvidia-smi -L``'s first line,
    else the driver's or the device node's presence. None on a machine without one."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=15)
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    if Path("/proc/driver/nvidia/version").is_file():
        return "an NVIDIA driver is loaded (/proc/driver/nvidia/version)"
    if Path("/dev/nvidia0").exists():
        return "an NVIDIA device node (/dev/nvidia0)"
    return None


def _unusable_gpu_hint() -> str:
    if torch.version.cuda is None:
        fix = ("this torch is a CPU-only build: install a CUDA one, e.g. pip install --force-reinstall torch "
               "torchvision --index-url https://download.pytorch.org/whl/cu128 (see the README's GPU runner checklist)")
    else:
        fix = (f"torch {torch.__version__} needs an NVIDIA driver for CUDA {torch.version.cuda} or newer: update the "
               "driver (nvidia-smi shows its version), or install the torch build that matches it; check "
               "CUDA_VISIBLE_DEVICES too")
    return fix + "; or pass --device cpu to run on the CPU on purpose"


def resolve_device(device: str | None) -> str:
    """``None`` → one GPU when there is one, else the CPU; ``auto`` stays ``auto`` (accelerate's
    ``device_map="auto"``: every GPU, spilling to the CPU)."""
    if device:
        return device
    return "cuda" if cuda_usable() else "cpu"


def resolve_dtype(dtype: str | None, device: str) -> str:
    if dtype in (None, ""):
        on_gpu = device != "cpu" and (device != "auto" or torch.cuda.is_available())
        return "bfloat16" if on_gpu else "float32"
    if dtype != "auto" and dtype not in _DTYPES:
        raise ModelLoadError(
            f"unknown dtype {dtype!r}; expected one of auto, {', '.join(sorted(_DTYPES))}",
            hint="pass --dtype bfloat16 (GPU) or --dtype float32 (CPU)",
        )
    return dtype


def from_pretrained_kwargs(options: LoadOptions, revision: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyword arguments of ``AutoProcessor.from_pretrained`` and of the model's
    ``from_pretrained``, the same shape for every device: ``device_map`` is always given
    (``{"": device}`` for one device, ``"auto"`` to spread), so the CPU tests load through exactly
    the path a GPU run takes — accelerate included, which transformers 5 needs for any device_map."""
    common: dict[str, Any] = {"revision": revision, "trust_remote_code": options.trust_remote_code}
    processor_kwargs = {**common, "padding_side": "left"}
    model_kwargs: dict[str, Any] = {
        **common,
        "dtype": "auto" if options.dtype == "auto" else _DTYPES[options.dtype],
        "device_map": "auto" if options.device == "auto" else {"": options.device},
    }
    if options.attn_implementation:
        model_kwargs["attn_implementation"] = options.attn_implementation
    return processor_kwargs, model_kwargs


def load_model(options: LoadOptions) -> LoadedModel:
    """Load (or reuse) the model and processor. Raises :class:`ModelLoadError` saying what failed."""
    if options in _MODELS:
        return _MODELS[options]
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1":  # non-interactive run: no shard bars
        transformers.utils.logging.disable_progress_bar()
    commit = _resolve_commit(options)
    processor_kwargs, model_kwargs = from_pretrained_kwargs(options, commit or options.revision)
    try:
        processor = transformers.AutoProcessor.from_pretrained(options.model, **processor_kwargs)
        model = transformers.AutoModelForImageTextToText.from_pretrained(options.model, **model_kwargs)
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


def _no_cuda_hint() -> str:
    if torch.version.cuda is None:
        return "pass --device cpu (slow, for trying things out), or install a CUDA build of torch on a GPU machine"
    return ("pass --device cpu (slow, for trying things out), or run on a machine whose NVIDIA driver works "
            "(`nvidia-smi` lists the GPU) and whose CUDA_VISIBLE_DEVICES shows it")


def _no_cuda_reason() -> str:
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    return (f"torch {torch.__version__} is built for CUDA {torch.version.cuda}, but no CUDA device is usable "
            "(no GPU, no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them)")


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return out


def _known_cause(options: LoadOptions, exc: BaseException) -> tuple[str, str] | None:
    """(what happened, TIP) for the causes users hit; None when the exception is not one of them."""
    import re

    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    low = text.lower()
    if any(isinstance(e, GatedRepoError) for e in chain) or "gated repo" in low:
        return ("the model repo is gated",
                f"accept its terms on https://huggingface.co/{options.model}, then `hf auth login` "
                "(or set HF_TOKEN) with that account")
    if any(isinstance(e, RevisionNotFoundError) for e in chain):
        return (f"revision {options.revision!r} does not exist", "check --model-revision (a branch, tag or commit)")
    if any(isinstance(e, RepositoryNotFoundError) for e in chain) or "is not a local folder and is not a valid model" in low:
        return ("no such model repo (or it is private)",
                "check the --model id (e.g. Qwen/Qwen2.5-VL-7B-Instruct); for a private repo `hf auth login`")
    if any(s in low for s in ("unrecognized configuration class", "does not recognize this architecture")):
        return ("this transformers cannot build that architecture",
                f"hub-pgen runs Qwen-VL models ({', '.join(SUPPORTED_FAMILIES)}) through transformers "
                f"{transformers.__version__}; pick a Qwen-VL Instruct checkpoint, or `pip install -U transformers` "
                "for a newer one")
    if any(s in low for s in ("found no nvidia driver", "not compiled with cuda", "cuda driver version is insufficient",
                              "no cuda gpus are available", "cuda_visible_devices")):
        return (_no_cuda_reason(), _no_cuda_hint())
    if "out of memory" in low:
        return ("the model does not fit in the device's memory",
                "use --device auto to spread it over every GPU, --dtype bfloat16, or a smaller model")
    if isinstance(exc, ImportError) or ("requires" in low and "pip install" in low):
        named = (re.search(r"requires `([A-Za-z0-9_.\-]+)`", text)
                 or re.search(r"pip install (?:-U |--upgrade )?`?([A-Za-z][A-Za-z0-9_.\-]*)", text))
        pkg = named.group(1) if named else getattr(exc, "name", None)
        return ("a Python package the model needs is missing",
                f"pip install {pkg}" if pkg else "install the package the message names, then rerun")
    return None


def _load_error(options: LoadOptions, exc: BaseException) -> ModelLoadError:
    where = options.model + (f"@{options.revision}" if options.revision else "")
    local = Path(options.model).expanduser()
    if is_local_model(options.model) and not local.exists():
        return ModelLoadError(
            f"model folder {options.model} does not exist",
            hint="pass a Hub id such as Qwen/Qwen3-VL-8B-Instruct, or an existing model folder",
        )
    known = _known_cause(options, exc)
    if local.is_dir() and not (local / "config.json").is_file():
        known = None  # an incomplete folder says so below, whatever transformers tripped over first
    if known is not None:
        what, hint = known
        return ModelLoadError(f"cannot load pgen model {where}: {what} ({type(exc).__name__}: {_first_line(exc)})",
                              hint=hint)
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
