"""The generation layer every backend shares: attempts, parsing, type enforcement, retries.

A backend is small: it turns a list of :class:`Call` s (prompt, images, seed, temperature and the
types the schedule assigned) into one raw answer — or a :class:`CallFailed` — per call. Everything
else lives here, once: each request's attempts (a new seed each time; a greedy run retries by
sampling, since greedy would repeat itself), parsing and validating the answer
(:func:`hub_pgen.generate.parse.parse_dialogue`, which also enforces the assigned types), and the
final :class:`GenerationResult` with the raw text and the reason of a failure. Results are matched
to requests by sample id, never by position.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hub_pgen.data import GenerationRequest, GenerationResult
from hub_pgen.errors import GenerationError
from hub_pgen.generate.parse import keep_raw, parse_dialogue
from hub_pgen.generate.schema import DEFAULT_BOUNDS, AnswerBounds

logger = logging.getLogger(__name__)

def sample_seed(seed: int, sample_id: str) -> int:
    """Per-sample seed: the same sample gets the same seed whatever batch or resume it lands in."""
    return (seed * 1_000_003 + zlib.crc32(sample_id.encode())) & 0x7FFFFFFF


def batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``n`` (the last one shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


RETRY_TEMPERATURE = 0.7  # a greedy run's retries sample at this temperature (seed + attempt)


@dataclass(frozen=True)
class Call:
    """One model call: what a backend needs to produce one raw answer."""

    sample_id: str
    prompt: str
    images: tuple[Any, ...]
    seed: int
    temperature: float
    scenario_type: str | None = None
    response_type: str | None = None
    # a call for another answer than a pgen dialogue (the skills stage's segmentation): the JSON schema
    # to enforce instead of the dialogue's, its token budget, and what a model-free backend answers
    schema: dict[str, Any] | None = None
    max_new_tokens: int | None = None
    offline: Callable[[], str] | None = None


@dataclass(frozen=True)
class CallFailed:
    """A call that produced no answer (CUDA OOM at batch 1, a request the server kept refusing, ...)."""

    reason: str


RunCalls = Callable[[list[Call]], list["str | CallFailed"]]


def make_call(request: GenerationRequest, attempt: int, temperature: float) -> Call:
    """The ``attempt``-th call of a request (counting the tries of earlier runs: ``first_attempt``)."""
    attempt += request.first_attempt
    if attempt > 0 and temperature == 0:
        temperature = RETRY_TEMPERATURE
    return Call(request.sample.sample_id, request.prompt, tuple(request.images), request.seed + attempt,
                temperature, request.sample.scenario_type or None, request.sample.response_type or None)


def generate_with_retries(
    run: RunCalls, requests: Sequence[GenerationRequest], *, temperature: float, max_retries: int,
    on_answer: Callable[[str, bool], None] | None = None, bounds: AnswerBounds = DEFAULT_BOUNDS,
) -> list[GenerationResult]:
    """One result per request (in the requests' order, matched by sample id): answers that do not
    parse are tried again up to ``max_retries`` times, then returned as failures with the raw text
    (bounded: :func:`~hub_pgen.generate.parse.keep_raw`). ``on_answer(raw, valid)`` sees every answer
    (a backend counts schema-invalid ones); ``bounds``: the string bounds the schema stated
    (:func:`~hub_pgen.generate.schema.answer_limits`)."""
    by_id = {r.sample.sample_id: r for r in requests}
    if len(by_id) != len(requests):
        raise ValueError("requests of one batch must have distinct sample ids")
    results: dict[str, GenerationResult] = {}
    last: dict[str, tuple[str, str]] = {}
    todo = list(by_id)
    for attempt in range(max_retries + 1):
        if not todo:
            break
        calls = [make_call(by_id[sid], attempt, temperature) for sid in todo]
        outputs = run(calls)
        if len(outputs) != len(calls):
            raise RuntimeError(f"backend returned {len(outputs)} answers for {len(calls)} calls")
        retry: list[str] = []
        for call, out in zip(calls, outputs):
            sid = call.sample_id
            tries = attempt + 1
            if isinstance(out, CallFailed):
                results[sid] = GenerationResult(sid, None, error=out.reason, attempts=tries)
                continue
            sample = by_id[sid].sample
            try:
                dialogue = parse_dialogue(out, scenario_type=sample.scenario_type or None,
                                          response_type=sample.response_type or None, bounds=bounds)
            except GenerationError as exc:
                logger.debug("sample %s attempt %d: %s", sid, tries, exc)
                if on_answer is not None:
                    on_answer(out, False)
                last[sid] = (exc.message, keep_raw(out))
                retry.append(sid)
                continue
            if on_answer is not None:
                on_answer(out, True)
            results[sid] = GenerationResult(sid, dialogue, raw_text=keep_raw(out), attempts=tries)
        todo = retry
    for sid in todo:
        reason, raw = last[sid]
        results[sid] = GenerationResult(sid, None, raw_text=raw, error=reason, attempts=max_retries + 1)
    return [results[r.sample.sample_id] for r in requests]
