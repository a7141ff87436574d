"""The pgen prompt: the seed's template, grown with what the Hi Robot paper's appendix A says.

A.1: the scenario and response types are assigned per sample (see ``hub_pgen.plan.taxonomy``) and
the model is told which to write. A.2: a detailed task description, grounding in the images and
the prior skills, and licence to use world knowledge (preferences, implicit requests).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from hub_pgen.data import Sample
from hub_pgen.plan.taxonomy import RESPONSE_TYPES, SCENARIO_TYPES

PGEN_PROMPT_TEMPLATE = """You are a robot-assistant dialogue generator for hierarchical robot policies.

You will receive:
- A list of images showing the current robot scene ({num_images} camera view(s)).
- The high-level task: {task_description}
- Previous skill steps completed: {skill_history}
- The next skill to be performed by the robot: {skill_current}

Generate two things in JSON:
1. "user_prompt": a natural-sounding user request that logically leads to the robot performing the skill "{skill_current}" given the task and history.
2. "robot_utterance": a natural robot reply acknowledging or clarifying the request.

Write this kind of interaction:
- scenario_type "{scenario_type}": {scenario_description}.
- response_type "{response_type}": {response_description}.

The responses must be grounded in the visual scene, the task, and the skill history: mention only objects that are plausibly visible or part of the task, and keep the request consistent with what the robot has already done. You may use everyday world knowledge (preferences, implicit needs) to make the user sound real. The user speaks to the robot in one or two short sentences and never names the skill verbatim; the robot answers in one short sentence, in the first person.

Respond ONLY in JSON:
{{
  "scenario_type": "{scenario_type}",
  "response_type": "{response_type}",
  "user_prompt": "...",
  "robot_utterance": "..."
}}"""


def _field(sample: Sample | Mapping[str, Any], name: str, default: Any = None) -> Any:
    if isinstance(sample, Mapping):
        return sample.get(name, default)
    return getattr(sample, name, default)


PLACEHOLDERS = ("num_images", "task_description", "skill_history", "skill_current", "scenario_type",
                "scenario_description", "response_type", "response_description")


def check_template(text: str, *, where: str = "the prompt template") -> None:
    """A user's template (``--prompt-file``) uses only :data:`PLACEHOLDERS`, and formats: raises
    ValueError naming what is wrong (literal braces must be doubled, as in the built-in one)."""
    import string

    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as e:
        raise ValueError(f"{where} does not format ({e}); write a literal brace as {{{{ or }}}}") from None
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        literal = any(not u.isidentifier() for u in unknown)  # e.g. {"user_prompt": ...}: JSON, not a placeholder
        raise ValueError(f"{where} uses unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
                         f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
                         + ("; a literal brace (as in JSON) is written {{ or }}, as the built-in template does"
                            if literal else ""))
    if "skill_current" not in fields:
        raise ValueError(f"{where} never names {{skill_current}}: the model would not know which skill the dialogue "
                         "leads to")


def construct_prompt(sample: Sample | Mapping[str, Any], template: str | None = None) -> str:
    """The full text prompt for one sample (a :class:`Sample` or the seed's D_labeled dict), from
    ``template`` (``--prompt-file``) or the built-in :data:`PGEN_PROMPT_TEMPLATE`.

    A dict without assigned types gets ``direct_request`` / ``confirmation``.
    """
    history = list(_field(sample, "skill_history", []) or [])
    scenario = _field(sample, "scenario_type") or "direct_request"
    response = _field(sample, "response_type") or "confirmation"
    images = _field(sample, "images", []) or []
    return (template or PGEN_PROMPT_TEMPLATE).format(
        num_images=len(images),
        task_description=_field(sample, "task_description", "") or "(not given)",
        skill_history="; ".join(history) if history else "(none yet: this is the first skill)",
        skill_current=_field(sample, "skill_current", ""),
        scenario_type=scenario,
        scenario_description=SCENARIO_TYPES.get(scenario, scenario),
        response_type=response,
        response_description=RESPONSE_TYPES.get(response, response),
    )


def prompt_template_hash(template: str | None = None) -> str:
    """Identifies the prompt wording and taxonomy in provenance and the configuration fingerprint."""
    blob = json.dumps([template or PGEN_PROMPT_TEMPLATE, SCENARIO_TYPES, RESPONSE_TYPES], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
