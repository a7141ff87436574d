"""Scenario and response types (Hi Robot, appendix A.1, after Stephan et al. 2024), and the seeded,
stratified schedule that assigns them to samples.

The model is told which types to write for each sample instead of choosing them, so the mix of the
dataset is a parameter of the run (and is reported), not a habit of the model.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

SCENARIO_TYPES: dict[str, str] = {
    "direct_request": "the user plainly asks for what the robot does next",
    "negative_task": "the user tells the robot what NOT to do, which still leads to the next skill",
    "situated_correction": "the user adjusts or corrects an earlier command given how the task has progressed so far",
    "specific_constraint": "the user adds a particular constraint or preference (which object, where, how) the next skill satisfies",
    "implicit_request": "the user states a need or wish indirectly, and the robot must infer the next skill from it",
}

RESPONSE_TYPES: dict[str, str] = {
    "confirmation": "the robot simply confirms and says what it will do",
    "clarification": "the robot restates or clarifies what it understood before acting",
    "error_handling": "the robot points out a problem or impossibility in the request and says how it will proceed instead",
}


def parse_mix(text: str | None, known: Mapping[str, str], *, flag: str) -> dict[str, float]:
    """``"a=2,b=1"`` or ``"a,b"`` → weights over known types. ``None`` → all types, equal weight."""
    if text is None or not text.strip():
        return {name: 1.0 for name in known}
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition("=")
        name = name.strip()
        if name not in known:
            raise ValueError(f"{flag}: unknown type {name!r}; known types: {', '.join(known)}")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"{flag}: weight of {name!r} must be a number, got {weight!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{flag}: weight of {name!r} must be a finite number >= 0, got {weight!r}")
        if name in weights:
            raise ValueError(f"{flag}: {name!r} is given twice")
        weights[name] = value
    if not any(weights.values()):
        raise ValueError(f"{flag}: at least one type needs a weight above 0")
    return {k: v for k, v in weights.items() if v > 0}


def stratified(n: int, weights: Mapping[str, float], rng: random.Random) -> list[str]:
    """``n`` labels whose counts follow ``weights`` as closely as integers allow (largest
    remainder), in a seeded random order. Deterministic for a given ``rng`` state."""
    names = list(weights)
    return [names[c] for c in stratified_codes(n, weights, rng)]


def stratified_codes(n: int, weights: Mapping[str, float], rng: random.Random) -> np.ndarray:
    """:func:`stratified` as codes (the position of each label in ``weights``), uint8: the same shuffle
    (it depends on the length and ``rng`` only), without a list of ``n`` labels held."""
    if n <= 0:
        return np.zeros(0, dtype=np.uint8)
    total = sum(weights.values())
    exact = {k: n * w / total for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    short = n - sum(counts.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), list(weights).index(k)))[:short]:
        counts[k] += 1
    codes = [i for i, k in enumerate(weights) for _ in range(counts[k])]
    rng.shuffle(codes)
    return np.array(codes, dtype=np.uint8)


def type_codes(
    n: int,
    *,
    seed: int,
    scenario_mix: Mapping[str, float] | None = None,
    response_mix: Mapping[str, float] | None = None,
) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...], np.ndarray]:
    """:func:`assign_types` as (scenario names, their codes by sample, response names, their codes)."""
    rng = random.Random(f"hub-pgen-schedule-{seed}")
    scenario_weights = scenario_mix or {k: 1.0 for k in SCENARIO_TYPES}
    response_weights = response_mix or {k: 1.0 for k in RESPONSE_TYPES}
    scenarios = stratified_codes(n, scenario_weights, rng)
    responses = stratified_codes(n, response_weights, rng)
    return tuple(scenario_weights), scenarios, tuple(response_weights), responses


def assign_types(
    n: int,
    *,
    seed: int,
    scenario_mix: Mapping[str, float] | None = None,
    response_mix: Mapping[str, float] | None = None,
) -> list[tuple[str, str]]:
    """(scenario_type, response_type) for samples 0..n-1 in plan order."""
    sc_names, sc, rt_names, rt = type_codes(n, seed=seed, scenario_mix=scenario_mix, response_mix=response_mix)
    return [(sc_names[a], rt_names[b]) for a, b in zip(sc.tolist(), rt.tolist())]


def mix_report(pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    counts = Counter(pairs)
    scenario: Counter[str] = Counter()
    response: Counter[str] = Counter()
    for (s, r), k in counts.items():
        scenario[s] += k
        response[r] += k
    return {
        "scenario_type": dict(sorted(scenario.items())),
        "response_type": dict(sorted(response.items())),
    }
