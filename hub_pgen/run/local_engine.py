"""``--engine local`` (the default): generation in this process, as a stream."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hub_pgen.errors import UsageError
from hub_pgen.generate.registry import get_backend
from hub_pgen.generate.stream import stream
from hub_pgen.run.steps import generate_batch, iter_images, tries

if TYPE_CHECKING:
    from hub_pgen.config import RunConfig
    from hub_pgen.data import JournalRecord, Sample
    from hub_pgen.generate.base import Backend
    from hub_pgen.run.context import RunContext


class LocalEngine:
    name = "local"

    def check_config(self, config: RunConfig) -> None:
        if config.ray_address is not None or config.workers is not None:
            raise UsageError("--ray-address and --workers go with --engine ray", hint="add --engine ray")

    def check(self, config: RunConfig) -> None:
        return None

    def checks_backend_here(self, config: RunConfig) -> bool:
        return True

    def cannot_label(self) -> str | None:
        return None

    def driver_backend(self, config: RunConfig, spec: Any) -> Backend | None:
        return None

    def generate(self, pending: Sequence[Sample], ctx: RunContext,
                 journal: Mapping[str, JournalRecord]) -> Iterator[tuple[list[JournalRecord], int]]:
        """Frames → backend as a stream (:mod:`hub_pgen.generate.stream`): the frame lanes decode (and
        encode, for a server) ahead; the backend's width of calls is always in flight; each call's
        records are yielded the moment it finishes."""
        config, prep, backend = ctx.config, ctx.prep, ctx.backend
        width = get_backend(config.backend).width(config)
        tried = tries(journal, pending)  # a pending sample's record changes only once it is generated
        units = iter_images(pending, prep, backend, config.max_pixels, ready=width.in_flight, keep=ctx.thumbs.keep if ctx.thumbs else None)
        for _, out in stream(units, lambda batch: generate_batch(batch, prep, config, backend, tried), width,
                             name="hub-pgen-generate"):
            yield out
