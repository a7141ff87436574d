"""``--engine local`` (the default): generation in this process, batch after batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from hub_pgen.errors import UsageError
from hub_pgen.generate.layer import batched
from hub_pgen.generate.registry import get_backend
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
                 journal: dict[str, JournalRecord]) -> Iterator[tuple[list[JournalRecord], int]]:
        """Frames → backend, ``samples_per_call`` samples a batch (the frames of the next batch are
        decoded once this one is journaled)."""
        config, prep, backend = ctx.config, ctx.prep, ctx.backend
        per_call = get_backend(config.backend).samples_per_call(config)
        for batch in batched(iter_images(pending, prep, backend, config.max_pixels), per_call):
            yield generate_batch(batch, prep, config, backend, tries(journal, [s for s, _ in batch]))
