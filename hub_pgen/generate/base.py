"""The one interface every generation backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hub_pgen.data import GenerationRequest, GenerationResult
from hub_pgen.errors import ModelLoadError
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


def check_local_model(model: str) -> None:
    """A local model folder that is not there, or lacks its config, fails here, before any download
    or output folder (the same mistake at load time costs the source download first)."""
    if not is_local_model(model):
        return
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model folder {model} does not exist",
                             hint="pass a Hub id such as Qwen/Qwen3-VL-8B-Instruct, or an existing model folder")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelLoadError(
            f"model folder {model} is incomplete: it has no config.json",
            hint="the folder needs config.json, the weights, and the processor files (tokenizer, preprocessor/"
                 "processor config, chat template) as save_pretrained writes them",
        )
