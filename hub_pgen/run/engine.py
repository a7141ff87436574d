"""Where generation runs: an :class:`Engine`, chosen by name from :data:`ENGINES` (``--engine``).

An engine turns the pending samples into journal records and yields them batch by batch, with how
many samples of each batch went to a model; the driver journals what it yields (so a killed run
resumes the same way whatever the engine) and never asks which engine runs. What differs between
engines is said by the engine: the flags that go with it, the packages it needs, whether the model
loads in this process (else the driver gets a stand-in that describes it), and whether a run can label
skills there. The split of step (:mod:`hub_pgen.run.steps`) and executor is datatrove's.

This module imports no engine: :func:`get_engine` imports the one asked for, so ``RunConfig`` can
check ``--engine`` without importing Ray's engine (or Ray).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hub_pgen.config import RunConfig
    from hub_pgen.data import JournalRecord, Sample
    from hub_pgen.generate.base import Backend
    from hub_pgen.run.context import RunContext

# name -> "module:class"; the first is the default
ENGINES: dict[str, str] = {
    "local": "hub_pgen.run.local_engine:LocalEngine",
    "ray": "hub_pgen.run.ray_engine:RayEngine",
}


class Engine(Protocol):
    name: str

    def check_config(self, config: RunConfig) -> None:
        """The flags that go (or not) with this engine: a UsageError naming the flag otherwise."""

    def check(self, config: RunConfig) -> None:
        """Before anything happens: the engine's packages are there."""

    def checks_backend_here(self, config: RunConfig) -> bool:
        """Whether the backend's own checks (a GPU, a model folder) are about this machine."""

    def cannot_label(self) -> str | None:
        """Why a run on this engine cannot label skills itself (--skills annotate), or None."""

    def driver_backend(self, config: RunConfig, spec: Any) -> Backend | None:
        """The backend the driver holds when the model loads elsewhere (it describes the one that ran), or
        None: the driver makes the backend itself."""

    def generate(self, pending: Sequence[Sample], ctx: RunContext,
                 journal: Mapping[str, JournalRecord]) -> Iterator[tuple[list[JournalRecord], int]]:
        """The records of ``pending``, batch by batch, with how many of each batch went to the backend.
        ``journal`` is the run's view of the journal, up to date whenever a batch is asked for."""


def get_engine(name: str) -> Engine:
    """The engine called ``name``; a ValueError naming the ones there are otherwise."""
    target = ENGINES.get(name)
    if target is None:
        raise ValueError(f"no engine {name!r} (there are: {', '.join(ENGINES)})")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)()
