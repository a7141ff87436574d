"""What a run costs, before it runs (``--dry-run``): tokens per sample, model calls, and GPU time.

Image tokens are the processor's own arithmetic: a Qwen-VL processor resizes each image to a
multiple of ``patch_size * merge_size`` pixels a side, within ``[min_pixels, max_pixels]`` (its
``smart_resize``), and the model sees one token per ``merge_size x merge_size`` patches. Where
transformers is installed and the model's ``preprocessor_config.json`` is at hand (a local folder,
or the Hub cache), that processor answers (``get_number_of_image_patches``); else the same formula
runs here with the family's published defaults (:data:`FAMILY_DEFAULTS`), so ``--dry-run`` needs
neither torch nor transformers. Text tokens come from the model's tokenizer where it is at hand,
else from a stated estimate (:data:`CHARS_PER_TOKEN`). The GPU time is an estimate at the stated
rates of :data:`RATES`, never a measurement: ``scripts/gpu_bench.sh`` measures one machine.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# the published checkpoints' preprocessor_config.json (Qwen2-VL-7B-Instruct, Qwen2.5-VL-7B-Instruct,
# Qwen3-VL-8B-Instruct / Qwen3-VL-30B-A3B-Instruct): patch size, merge size, min and max pixels
FAMILY_DEFAULTS: dict[str, dict[str, int]] = {
    "qwen2_vl": {"patch_size": 14, "merge_size": 2, "min_pixels": 3136, "max_pixels": 12845056},
    "qwen2_5_vl": {"patch_size": 14, "merge_size": 2, "min_pixels": 3136, "max_pixels": 12845056},
    "qwen3_vl": {"patch_size": 16, "merge_size": 2, "min_pixels": 65536, "max_pixels": 16777216},
    "qwen3_vl_moe": {"patch_size": 16, "merge_size": 2, "min_pixels": 65536, "max_pixels": 16777216},
}
CHARS_PER_TOKEN = 4.0  # English prose in Qwen's BPE, when the tokenizer is not at hand (an estimate)
TEMPLATE_TOKENS = 30  # the chat template's role markers and the vision start/end tokens around images
ANSWER_TOKENS = 120  # a dialogue's JSON answer, typically (the schema bounds it; --max-new-tokens caps it)
# the stated rates of the GPU-time estimate: one H100/H200-class GPU, a 7-8B model in bfloat16, batch
# --batch-size; a 30B-A3B MoE decodes at about the same rate, a 72B one about 8x slower. Calibrated on
# docs/benchmarks.md's H100 figures (Qwen2.5-VL-7B, 640x480, 80 new tokens: 0.5 samples/s at batch 1,
# about 4 at batch 16)
RATES = {"prefill_tokens_per_s": 10_000.0, "decode_tokens_per_s_per_sequence": 40.0}


@dataclass(frozen=True)
class Processor:
    """The arithmetic of one model's image processor, and where its numbers came from."""

    family: str
    patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int
    source: str  # "processor" (its own config, through transformers) or "formula" (published defaults)
    counter: Any = None  # a transformers image processor, when it answered

    def image_tokens(self, height: int, width: int, max_pixels: int | None = None) -> int:
        if self.counter is not None:
            kwargs = {"max_pixels": max_pixels} if max_pixels else {}
            patches = self.counter.get_number_of_image_patches(height, width, kwargs)
            return int(patches) // self.merge_size ** 2
        h, w = smart_resize(height, width, self.patch_size * self.merge_size, self.min_pixels,
                            min(max_pixels, self.max_pixels) if max_pixels else self.max_pixels)
        return (h // (self.patch_size * self.merge_size)) * (w // (self.patch_size * self.merge_size))


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's resize (transformers' ``qwen2_vl.image_processing_qwen2_vl.smart_resize``): each side a
    multiple of ``factor``, the area within ``[min_pixels, max_pixels]``, the aspect ratio kept."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def family_of(model: str | None) -> str:
    """The Qwen-VL family of ``model``: a local folder's config.json says; a Hub id by its name."""
    if model:
        config = Path(model).expanduser() / "config.json"
        if config.is_file():
            try:
                kind = json.loads(config.read_text(encoding="utf-8")).get("model_type")
            except (OSError, json.JSONDecodeError):
                kind = None
            if kind in FAMILY_DEFAULTS:
                return str(kind)
        name = model.lower().replace("-", "").replace("_", "").replace(".", "")
        if "qwen3vl" in name:
            return "qwen3_vl_moe" if "a3b" in name or "a22b" in name else "qwen3_vl"
        if "qwen25vl" in name:
            return "qwen2_5_vl"
        if "qwen2vl" in name:
            return "qwen2_vl"
    return "qwen2_5_vl"


def processor_for(model: str | None, revision: str | None = None) -> Processor:
    """The model's own image processor when transformers and its config are at hand (no download), else
    the family's published numbers."""
    family = family_of(model)
    d = FAMILY_DEFAULTS[family]
    if model:
        try:
            from transformers import AutoImageProcessor

            proc = AutoImageProcessor.from_pretrained(model, revision=revision, local_files_only=True)
            size = getattr(proc, "size", None) or {}
            if hasattr(proc, "get_number_of_image_patches"):
                return Processor(family, int(getattr(proc, "patch_size", d["patch_size"])),
                                 int(getattr(proc, "merge_size", d["merge_size"])),
                                 int(size.get("shortest_edge", d["min_pixels"])),
                                 int(size.get("longest_edge", d["max_pixels"])), "processor", proc)
        except Exception as e:  # noqa: BLE001 — not installed, not cached, another processor: the formula
            logger.debug("image processor of %s not at hand (%s): the published numbers", model, e)
    return Processor(family, d["patch_size"], d["merge_size"], d["min_pixels"], d["max_pixels"], "formula")


def text_tokens(texts: list[str], model: str | None, revision: str | None = None) -> tuple[list[int], str]:
    """Tokens of each text: the model's tokenizer when it is at hand (no download), else an estimate."""
    if model:
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(model, revision=revision, local_files_only=True)
            return [len(tok(t)["input_ids"]) for t in texts], "tokenizer"
        except Exception as e:  # noqa: BLE001
            logger.debug("tokenizer of %s not at hand (%s): estimated", model, e)
    return [math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts], f"estimate ({CHARS_PER_TOKEN:g} characters a token)"


def gpu_seconds(calls: int, input_tokens: float, output_tokens: float, batch: int) -> float:
    """At :data:`RATES`: every call's prompt prefilled, the answers decoded ``batch`` at a time."""
    prefill = calls * input_tokens / RATES["prefill_tokens_per_s"]
    decode = math.ceil(calls / max(1, batch)) * output_tokens / RATES["decode_tokens_per_s_per_sequence"]
    return prefill + decode


def sample_cost(*, model: str | None, revision: str | None, shapes: list[tuple[int, int]], prompts: list[str],
                calls: int, batch: int, max_pixels: int | None, uses_model: bool, max_new_tokens: int,
                extra_calls: int = 0, extra_input_tokens: int = 0) -> dict[str, Any]:
    """The ``cost`` of a plan: ``shapes`` are the (height, width) of the images one sample shows,
    ``prompts`` a rendered prompt per scenario type; ``extra_*`` a labelling pass's calls and tokens."""
    if not uses_model:
        return {"model_calls": 0, "gpu_seconds_estimate": 0.0, "note": "the template backend runs no model"}
    proc = processor_for(model, revision)
    image = [proc.image_tokens(h, w, max_pixels) for h, w in shapes]
    text, how = text_tokens(prompts, model, revision) if prompts else ([], "none")
    per_text = sum(text) / len(text) if text else 0.0
    per_sample = sum(image) + per_text + TEMPLATE_TOKENS
    answer = min(ANSWER_TOKENS, max_new_tokens)
    seconds = gpu_seconds(calls, per_sample, answer, batch)
    if extra_calls:
        seconds += gpu_seconds(extra_calls, extra_input_tokens / max(1, extra_calls), 200, batch)
    return {
        "family": proc.family,
        "image_tokens_per_sample": sum(image),
        "image_tokens_per_image": image,
        "image_tokens_from": ("the model's image processor" if proc.source == "processor" else
                              f"Qwen's smart_resize with {proc.family}'s published defaults (patch {proc.patch_size}, "
                              f"merge {proc.merge_size}, {proc.min_pixels}-{proc.max_pixels} pixels)"),
        "text_tokens_per_sample": round(per_text),
        "text_tokens_from": how,
        "input_tokens_per_sample": round(per_sample),
        "output_tokens_per_sample": answer,
        "model_calls": calls + extra_calls,
        "input_tokens": round(calls * per_sample + extra_input_tokens),
        "gpu_seconds_estimate": round(seconds, 1),
        "gpu_rate_assumed": (f"{RATES['prefill_tokens_per_s']:,.0f} prefill tokens/s, "
                             f"{RATES['decode_tokens_per_s_per_sequence']:g} decode tokens/s per sequence, "
                             f"{batch} sequence(s) at once (--batch-size; with --backend openai, --concurrency): "
                             "one H100/H200-class GPU and a 7-8B model in bfloat16; an estimate, not a measurement"),
    }


def camera_shape(feature: dict[str, Any] | None) -> tuple[int, int] | None:
    """(height, width) of a camera feature of ``info.json`` (``names`` say the axis order when given)."""
    if not feature:
        return None
    shape, names = feature.get("shape") or [], feature.get("names") or []
    if len(shape) != 3:
        return None
    if isinstance(names, list) and "height" in names and "width" in names:
        return int(shape[names.index("height")]), int(shape[names.index("width")])
    return (int(shape[1]), int(shape[2])) if shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4) else (
        int(shape[0]), int(shape[1]))


def of_run(config: Any, prep: Any, *, labelling: dict[str, Any] | None = None) -> dict[str, Any]:
    """The cost of the run ``config`` on the prepared plan ``prep`` (``labelling``: its labelling
    pass's calls and image tokens, for ``--skills annotate`` and auto on a dataset without skills)."""
    from hub_pgen.generate.prompt import PGEN_PROMPT_TEMPLATE, construct_prompt
    from hub_pgen.generate.registry import get_backend
    from hub_pgen.plan.table import type_pairs

    spec = get_backend(config.backend)
    features = prep.source.features if prep.source is not None else {}
    shapes = [s for c in prep.cameras if (s := camera_shape(features.get(c)))]
    prompts: dict[str, str] = {}
    for i, (scenario, _) in enumerate(type_pairs(prep.samples)):  # one prompt per scenario type
        if scenario not in prompts:
            prompts[scenario] = construct_prompt(prep.samples[i], config.prompt_template)
    texts = list(prompts.values()) or [(config.prompt_template or PGEN_PROMPT_TEMPLATE) + " " * 200]
    calls = len(prep.samples)
    out = sample_cost(model=config.model, revision=config.model_revision, shapes=shapes, prompts=texts, calls=calls,
                      batch=max(config.batch_size, config.concurrency if spec.can_serve else 1),
                      max_pixels=config.max_pixels, uses_model=spec.uses_model, max_new_tokens=config.max_new_tokens,
                      extra_calls=(labelling or {}).get("labelling_model_calls", 0),
                      extra_input_tokens=(labelling or {}).get("image_tokens") or 0)
    if config.verify and spec.uses_model:  # a text-only call per sample, a skill name back
        out["model_calls"] += calls
        out["gpu_seconds_estimate"] = round(out["gpu_seconds_estimate"] + gpu_seconds(
            calls, out["text_tokens_per_sample"] + TEMPLATE_TOKENS, 20, config.batch_size), 1)
    if labelling is not None and not prep.samples:
        out["note"] = ("the dialogues' calls are known once the skills are labelled (about one per skill with "
                       "segment sampling): the figures count the labelling only")
    return out
