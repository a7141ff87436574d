"""The one interface every generation backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hub_pgen.data import GenerationRequest, GenerationResult
from hub_pgen.generate.layer import Call, CallFailed


@runtime_checkable
class Backend(Protocol):
    """Turns a batch of requests into one result per request, in order.

    A backend never raises for one bad sample: it returns a failed ``GenerationResult`` (with the
    raw text and the reason) so the run goes on. It raises only when it cannot work at all
    (e.g. the model cannot be loaded), before the first batch.
    """

    name: str
    needs_images: bool  # frames are decoded and shown to it

    def describe(self) -> dict[str, Any]:
        """What identifies this backend's outputs (model id/revision, dtype, constrained, ...):
        goes into the provenance record and the configuration fingerprint."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]: ...

    def complete_calls(self, calls: list[Call]) -> list[str | CallFailed]:
        """One raw answer (or failure) per call, in order, under each call's own ``schema`` when it
        has one: what another stage (the skills stage's segmentation) asks the model; that stage
        parses, validates and retries."""
        ...

    # Optional hooks the pipeline calls when a backend has them: ``start(log_dir)`` once the output
    # folder is locked (servers it starts), ``notes() -> list[str]`` after generation (what the
    # summary should say, e.g. a server that ignored the schema), ``close()`` at the end, always.


def is_local_model(model: str) -> bool:
    """A model given as a path (a folder on disk) rather than a Hub id ``OWNER/NAME``."""
    path = Path(model).expanduser()
    return path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1 or path.exists()
