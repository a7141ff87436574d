"""What decides the next token besides the model: the JSON grammar (xgrammar), a repetition
penalty that ignores padding, and a per-row seeded sampler. All are ``transformers`` logits
processors the backend hands to one ``model.generate`` call.

Why constrain the JSON: small or quantised VLMs often wrap the object in prose, forget a key, or
pick their favourite scenario type. With a grammar the model can only write the four keys in order, with the
scenario and response types the schedule assigned to *this* row (one grammar per batch row), and
strings that must close: a ``pattern`` with a length bound and no control characters, quotes or
backslashes. (xgrammar's ``maxLength`` lets control characters through, xgrammar#800, and
unbounded strings from a weak model never close.) The bounds come from ``max_new_tokens``
(:mod:`hub_pgen.generate.schema`), so the longest answer the grammar allows always fits the budget,
whatever the tokenizer. ``any_whitespace=False`` keeps the model from spending its budget on spaces.

Compiled grammars are cached per (tokenizer, types, bounds): there are only 5 x 3 type pairs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import torch
import transformers

from hub_pgen.generate.schema import (  # noqa: F401  (re-exported: the schema lives in schema.py)
    KEYS,
    AnswerBounds,
    answer_bounds,
    dialogue_schema,
    string_pattern,
)

logger = logging.getLogger(__name__)



class GrammarCache:
    """One xgrammar compiler per (tokenizer, model vocabulary), one compiled grammar per schema.

    Building it reads the tokenizer's whole vocabulary (a second or two for Qwen's 151k tokens), so
    the backend makes one at load time and keeps it.
    """

    def __init__(self, tokenizer: Any, *, vocab_size: int, stop_token_ids: Sequence[int]) -> None:
        import xgrammar as xgr

        self.vocab_size = int(vocab_size)
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=self.vocab_size, stop_token_ids=list(stop_token_ids)
        )
        self._compiler = xgr.GrammarCompiler(info)
        self._compiled: dict[tuple[tuple[str, ...], tuple[str, ...], AnswerBounds], Any] = {}
        self._by_schema: dict[str, Any] = {}

    def for_schema(self, schema: dict[str, Any]) -> Any:
        """The compiled grammar of any JSON schema (another stage's answer), compiled once."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._by_schema:
            self._by_schema[key] = self._compiler.compile_json_schema(key, any_whitespace=False, strict_mode=True)
        return self._by_schema[key]

    def grammar(self, scenario_types: Sequence[str], response_types: Sequence[str], bounds: AnswerBounds) -> Any:
        key = (tuple(scenario_types), tuple(response_types), bounds)
        if key not in self._compiled:
            schema = dialogue_schema(
                key[0],
                key[1],
                max_prompt_chars=bounds.max_prompt_chars,
                max_utterance_chars=bounds.max_utterance_chars,
            )
            self._compiled[key] = self._compiler.compile_json_schema(
                json.dumps(schema), any_whitespace=False, strict_mode=True
            )
            logger.debug("compiled grammar for %s", key)
        return self._compiled[key]

    def processor(self, grammars: Sequence[Any]) -> JsonLogitsProcessor:
        return JsonLogitsProcessor(grammars, vocab_size=self.vocab_size)


class JsonLogitsProcessor(transformers.LogitsProcessor):
    """Masks each batch row's logits to what its own grammar allows next. One use per ``generate``.

    Unlike ``xgrammar.contrib.hf.LogitsProcessor`` it never asserts inside ``generate``: a row whose
    token the grammar rejects (it cannot happen with a mask, but a bug elsewhere must not crash a
    whole batch) is logged and left unconstrained, and its answer then fails validation and is
    retried like any bad answer. Rows that finished are skipped.
    """

    def __init__(self, grammars: Sequence[Any], *, vocab_size: int) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.matchers = [xgr.GrammarMatcher(g) for g in grammars]
        self.vocab_size = vocab_size
        self.bitmask = xgr.allocate_token_bitmask(len(self.matchers), vocab_size)
        self.broken: set[int] = set()
        self._prompt_len: int | None = None
        self._batch = xgr.BatchGrammarMatcher(max_threads=1) if len(self.matchers) > 1 else None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != len(self.matchers):
            raise ValueError(f"{len(self.matchers)} grammars for a batch of {input_ids.shape[0]} rows")
        if self._prompt_len is None:
            self._prompt_len = input_ids.shape[1]
        else:
            self._accept(input_ids[:, -1].tolist())
        active = [i for i, m in enumerate(self.matchers) if i not in self.broken and not m.is_terminated()]
        if not active:
            return scores
        if self._batch is not None:
            self._batch.batch_fill_next_token_bitmask(
                [self.matchers[i] for i in active], self.bitmask, active
            )
        else:
            self.matchers[0].fill_next_token_bitmask(self.bitmask, 0)
        mask = (
            self.bitmask if scores.device.type == "cpu" else self.bitmask.to(scores.device, non_blocking=True)
        )
        self._xgr.apply_token_bitmask_inplace(scores, mask, vocab_size=self.vocab_size, indices=active)
        return scores

    def _accept(self, tokens: list[int]) -> None:
        for i, (matcher, token) in enumerate(zip(self.matchers, tokens)):
            if i in self.broken or matcher.is_terminated():
                continue
            if not matcher.accept_token(token):
                logger.warning(
                    "grammar rejected token %d in batch row %d; leaving the row unconstrained", token, i
                )
                self.broken.add(i)


# --- penalty and sampling --------------------------------------------------------------------------


class PaddingAwareRepetitionPenalty(transformers.LogitsProcessor):
    """transformers' repetition penalty, minus the left padding: the pad token is a Qwen stop token,
    so counting it would penalise stopping in padded rows only, and batching would change answers."""

    def __init__(self, penalty: float, pad_lengths: torch.Tensor) -> None:
        self.penalty = float(penalty)
        self.pad_lengths = pad_lengths

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        batch, vocab = scores.shape
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        valid = positions[None, :] >= self.pad_lengths.to(input_ids.device)[:, None]
        ids = torch.where(valid, input_ids, torch.full_like(input_ids, vocab))  # pads go to a spare column
        picked = torch.gather(scores, 1, input_ids.clamp(max=vocab - 1))
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        out = torch.cat([scores, scores.new_zeros(batch, 1)], dim=1)
        out.scatter_(1, ids, picked)
        return out[:, :vocab]  # type: ignore[return-value]  # transformers annotates logits FloatTensor; torch gives Tensor


class SeededSampler(transformers.LogitsProcessor):
    """Samples each row with its own generator and leaves only that token possible, so greedy search
    then picks it: per-row seeds make a sampled answer independent of its batch."""

    def __init__(self, seeds: Sequence[int], device: torch.device) -> None:
        gen_device = device if device.type in ("cuda", "cpu") else torch.device("cpu")
        self.device = gen_device
        self.generators = [torch.Generator(device=gen_device).manual_seed(s) for s in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float(), dim=-1).to(self.device)
        out = torch.full_like(scores, float("-inf"))
        for row, generator in enumerate(self.generators):
            if not torch.isfinite(probs[row]).all() or probs[row].sum() <= 0:
                out[row] = scores[row]  # nothing sampleable: let greedy decide, validation will judge
                continue
            token = torch.multinomial(probs[row], 1, generator=generator).to(scores.device)
            out[row, token] = 0.0
        return out  # type: ignore[return-value]  # transformers annotates logits FloatTensor; torch gives Tensor
