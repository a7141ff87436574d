"""The seed brief's module API, kept visible: ``PGEN_PROMPT_TEMPLATE``, ``construct_prompt(sample)``,
``call_qwen(images, prompt)`` and ``annotate_sample(sample)``.

These are thin shims over the pipeline's pieces for notebook use and for people coming from the
original ``annotate_pgen.py``; the CLI runs the batched, resumable pipeline instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hub_pgen.config import DEFAULT_MODEL
from hub_pgen.generate.prompt import PGEN_PROMPT_TEMPLATE, construct_prompt

__all__ = ["PGEN_PROMPT_TEMPLATE", "construct_prompt", "call_qwen", "annotate_sample"]


def _load_images(images: Sequence[Any]) -> list[Any]:
    from PIL import Image

    out = []
    for im in images:
        if isinstance(im, (str, Path)):
            with Image.open(im) as f:
                out.append(f.convert("RGB"))
        else:
            out.append(im)
    return out


def call_qwen(
    images: Sequence[Any],
    prompt: str,
    *,
    model: str = DEFAULT_MODEL,
    scenario_type: str | None = None,
    response_type: str | None = None,
    seed: int = 0,
    **load_kwargs: Any,
) -> dict[str, str]:
    """Images (paths or PIL) + prompt → the parsed JSON object. The model is loaded once per process
    (``TransformersBackend.load`` caches it) and reused by every later call."""
    from hub_pgen.generate.parse import parse_dialogue
    from hub_pgen.generate.qwen import TransformersBackend

    backend = TransformersBackend.load(model, **load_kwargs)
    raw = backend.complete(_load_images(images), prompt, seed=seed, scenario_type=scenario_type,
                           response_type=response_type)
    dialogue = parse_dialogue(raw, scenario_type=scenario_type, response_type=response_type)
    return {
        "scenario_type": dialogue.scenario_type,
        "response_type": dialogue.response_type,
        "user_prompt": dialogue.user_prompt,
        "robot_utterance": dialogue.robot_utterance,
    }


def annotate_sample(sample: Mapping[str, Any], *, model: str = DEFAULT_MODEL, **load_kwargs: Any) -> dict[str, Any]:
    """A D_labeled sample dict → the same dict plus ``user_prompt`` and ``robot_utterance`` (D_syn)."""
    scenario = sample.get("scenario_type") or "direct_request"
    response = sample.get("response_type") or "confirmation"
    fields = {**sample, "scenario_type": scenario, "response_type": response}
    out = call_qwen(sample.get("images", []), construct_prompt(fields), model=model, scenario_type=scenario,
                    response_type=response, **load_kwargs)
    return {**sample, **out}
