"""The options of generation, declared once, each group by what it belongs to.

:class:`DecodingOptions` are every model backend's (how answers are decoded and retried);
:class:`TransformersOptions` and :class:`ServerOptions` are one backend's own. A backend's entry in
the registry names its groups (``BackendSpec.option_types``), and that is the only list of which
``RunConfig`` fields a backend uses: its provenance, its ``--help`` and the "ignored with this backend"
warning are derived from it. Each group checks its own values (``check``), in one place, when a
``RunConfig`` is made; a backend builds itself from its typed groups (``of(config)``), never from
loose fields.

``RunConfig`` keeps one flat field per flag (the command line's flags, the provenance's
``parameters`` and the fingerprint stay as they were, byte for byte) and composes the groups from
them: ``config.decoding``, ``config.options_of(TransformersOptions)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from hub_pgen.errors import UsageError
from hub_pgen.generate.schema import DEFAULT_MAX_NEW_TOKENS, BudgetTooSmall, answer_bounds

G = TypeVar("G", bound="OptionGroup")


class OptionGroup:
    """A frozen dataclass of ``RunConfig`` fields (same names, same defaults)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    @classmethod
    def of(cls: type[G], config: Any) -> G:
        """The group's values in ``config`` (a ``RunConfig``)."""
        return cls(**{name: getattr(config, name) for name in cls.names()})

    def check(self, *, runs_model: bool) -> None:
        """A UsageError naming the flag of the first value that cannot work."""


@dataclass(frozen=True)
class DecodingOptions(OptionGroup):
    model: str | None = None  # None: the backend's default (transformers: DEFAULT_MODEL; openai: the served one)
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    constrained: bool = True
    max_retries: int = 2
    batch_size: int = 1

    def check(self, *, runs_model: bool) -> None:
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise UsageError(f"--temperature must be a number >= 0 (0 = greedy), got {self.temperature}")
        if not math.isfinite(self.top_p) or not 0 < self.top_p <= 1:
            raise UsageError(f"--top-p must be in (0, 1], got {self.top_p}",
                             hint="--top-p 1 (the default) keeps every token; 0.9 keeps the likeliest 90%")
        if self.max_new_tokens < 1:
            raise UsageError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if runs_model and self.constrained:
            try:
                answer_bounds(self.max_new_tokens)
            except BudgetTooSmall as e:
                raise UsageError(
                    f"--max-new-tokens {self.max_new_tokens} is too small for a constrained JSON answer: it needs "
                    f"at least {e.needed} tokens (up to that many bytes, and no tokenizer packs less than a byte "
                    "into a token)",
                    hint=f"use --max-new-tokens {e.needed} or more (default {DEFAULT_MAX_NEW_TOKENS}), or "
                         "--no-constrained",
                ) from None
        if self.max_retries < 0:
            raise UsageError(f"--max-retries must be >= 0, got {self.max_retries}")


@dataclass(frozen=True)
class TransformersOptions(OptionGroup):
    """``--backend transformers``: where and how the model loads in this process."""

    model_revision: str | None = None
    device: str | None = None
    dtype: str | None = None
    attn_implementation: str | None = None
    trust_remote_code: bool = False


@dataclass(frozen=True)
class ServerOptions(OptionGroup):
    """``--backend openai``: the servers asked, or started (``--serve``), and how they are asked."""

    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 16
    request_timeout: float = 300.0
    serve: str | None = None  # "vllm" | "sglang": start the servers (a preset of serve_command)
    serve_command: str | None = None  # a template with {model} and {port}
    num_servers: int | None = None  # None: one per visible GPU
    gpus_per_server: int = 1
    serve_timeout: float = 900.0

    def check(self, *, runs_model: bool) -> None:
        if self.concurrency < 1:
            raise UsageError(f"--concurrency must be >= 1, got {self.concurrency}")
        if not math.isfinite(self.request_timeout) or self.request_timeout <= 0:
            raise UsageError(f"--request-timeout must be a number of seconds > 0, got {self.request_timeout}")


# the order their values are checked in (a run with two bad values hears of the same one first)
OPTION_GROUPS: tuple[type[OptionGroup], ...] = (ServerOptions, DecodingOptions, TransformersOptions)
