"""The ``template`` backend: deterministic, offline dialogue writing with no model.

It is honest about what it is (``backend: template`` in provenance and the card): phrasings are
picked from hand-written patterns by a hash of the sample, so the same sample always gets the same
dialogue, different samples get varied ones, and every dialogue names the skill it leads to. It is
the engine of ``hub-pgen demo`` and of the fast tests, and a baseline for what a model must beat.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from hub_pgen.data import Dialogue, GenerationRequest, GenerationResult
from hub_pgen.errors import GenerationError
from hub_pgen.generate.layer import Call, CallFailed
from hub_pgen.generate.parse import validate_object

_LEADING = re.compile(r"^(the\s+)?robot(\s+arm)?\s+", re.IGNORECASE)

_PROMPTS: dict[str, tuple[str, ...]] = {
    "direct_request": (
        "Could you {action} now, please?",
        "Please {action}.",
        "Next, {action} for me.",
    ),
    "negative_task": (
        "Don't stop yet, and don't skip ahead: {action} first.",
        "Don't touch anything else — just {action}.",
        "Not that way. Please {action} instead.",
    ),
    "situated_correction": (
        "Actually, now that you've {last}, {action}.",
        "Wait, change of plan after that: {action}.",
        "Good. Before anything else, {action}.",
    ),
    "specific_constraint": (
        "Please {action}, and be gentle with it.",
        "{action_cap}, but slowly so nothing falls.",
        "Can you {action}? Keep it steady.",
    ),
    "implicit_request": (
        "We still need to {task} — what's next?",
        "I'd like this done: {task}. Go ahead.",
        "Let's keep going so we can {task}.",
    ),
}

_REPLIES: dict[str, tuple[str, ...]] = {
    "confirmation": (
        "Sure, I will {action}.",
        "Okay, I'll {action} now.",
        "On it: I'm going to {action}.",
    ),
    "clarification": (
        "Just to confirm: you want me to {action}, right? I'll do that.",
        "So the next step is to {action} — starting now.",
        "Understood, you'd like me to {action}.",
    ),
    "error_handling": (
        "I can't do everything at once, so first I'll {action}.",
        "That isn't possible from here yet; I'll {action} first.",
        "I see a problem with that, so I'll {action} instead.",
    ),
}


def imperative(skill: str) -> str:
    """'robot arm picks up pink lego brick' → 'pick up the pink lego brick'-ish imperative."""
    text = _LEADING.sub("", skill.strip()).rstrip(".")
    words = text.split()
    if words:
        first = words[0].lower()
        if first.endswith("es") and first[:-2].endswith(("ch", "sh", "ss", "x", "z", "o")):
            words[0] = first[:-2]
        elif first.endswith("ies"):
            words[0] = first[:-3] + "y"
        elif first.endswith("s") and not first.endswith("ss"):
            words[0] = first[:-1]
        else:
            words[0] = first
    return " ".join(words) or skill


def _past(skill: str) -> str:
    verb = imperative(skill)
    head, _, rest = verb.partition(" ")
    irregular = {"pick": "picked", "put": "put", "take": "taken", "move": "moved", "release": "released",
                 "place": "placed", "lift": "lifted", "close": "closed", "open": "opened", "grab": "grabbed",
                 "drop": "dropped", "approach": "approached", "retract": "retracted"}
    past = irregular.get(head, head + ("d" if head.endswith("e") else "ed"))
    return f"{past} {rest}".strip()


def _pick(options: Sequence[str], key: str) -> str:
    h = int(hashlib.sha256(key.encode()).hexdigest(), 16)
    return options[h % len(options)]


def write_dialogue(
    *, skill: str, history: Sequence[str], task: str, scenario_type: str, response_type: str, key: str
) -> Dialogue:
    action = imperative(skill)
    fields = {
        "action": action,
        "action_cap": action[:1].upper() + action[1:],
        "last": _past(history[-1]) if history else "started",
        "task": (task or action).rstrip(".").lower() if task else action,
    }
    prompt = _pick(_PROMPTS.get(scenario_type, _PROMPTS["direct_request"]), key + "/u").format(**fields)
    reply = _pick(_REPLIES.get(response_type, _REPLIES["confirmation"]), key + "/r").format(**fields)
    return Dialogue(scenario_type=scenario_type, response_type=response_type, user_prompt=prompt, robot_utterance=reply)


class TemplateBackend:
    """Backend protocol implementation with no model."""

    name = "template"
    needs_images = False  # writes from the labels alone; the pipeline skips decoding frames for it

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "identity": {"backend": self.name, "version": 1}}

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results = []
        for req in requests:
            s = req.sample
            dialogue = write_dialogue(
                skill=s.skill_current,
                history=s.skill_history,
                task=s.task_description,
                scenario_type=s.scenario_type,
                response_type=s.response_type,
                key=f"{s.sample_id}/{req.seed}",
            )
            try:  # the rules a model's answer meets (length, control characters): a skill name may break them
                dialogue = validate_object(asdict(dialogue), "", scenario_type=s.scenario_type or None,
                                           response_type=s.response_type or None)
            except GenerationError as e:
                results.append(GenerationResult(sample_id=s.sample_id, dialogue=None, error=e.message))
                continue
            results.append(GenerationResult(sample_id=s.sample_id, dialogue=dialogue, raw_text=""))
        return results

    def complete_calls(self, calls: list[Call]) -> list[str | CallFailed]:
        """Calls that carry their own model-free answer (the skills stage's equal spans); nothing
        else can be answered without a model."""
        return [c.offline() if c.offline is not None else
                CallFailed("the template backend answers only calls that carry an offline answer") for c in calls]
