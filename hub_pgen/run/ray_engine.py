"""``--engine ray`` (extra ``hub-pgen[ray]``): the pending samples become a Ray Dataset of sample ids;
``map_batches`` runs them through a pool of model actors (``ActorPoolStrategy``; one model load per
actor, one actor per GPU of the cluster by default, ``--workers N`` on a CPU-only one). Each actor
decodes its batch's frames itself, beside its model, with the same code as the local engine (so the
model sees the same pixels and the records are the same), and returns one record per sample,
carrying the sample id (Ray does not keep the order). The driver streams the batches back and
appends each to the journal as it arrives, so a killed driver resumes like a local run. The
dataset's files (data, videos) must be readable at the same path on every node: one machine, a
shared filesystem, or the Hub cache on a shared volume. ``--ray-address`` joins a running cluster;
without it a local one is started (and stopped at the end).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub_pgen.errors import UsageError
from hub_pgen.plan.table import locator, sample_ids

if TYPE_CHECKING:
    from hub_pgen.config import RunConfig
    from hub_pgen.data import JournalRecord, Sample
    from hub_pgen.generate.base import Backend
    from hub_pgen.run.context import RunContext

logger = logging.getLogger(__name__)

class RayBackendInfo:
    """The driver's stand-in for the actors' backend: what the provenance and the summary need."""

    def __init__(self, name: str, needs_images: bool) -> None:
        self.name = name
        self.needs_images = needs_images
        self.details: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        return self.details or {"backend": self.name, "engine": "ray"}

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        raise RuntimeError("--engine ray generates in its actors, not in the driver")

    def complete_calls(self, calls: list[Any]) -> list[Any]:
        raise RuntimeError("--engine ray labels no skills (--skills annotate runs with the local engine)")


class _Worker:
    """One Ray actor: a backend (one model load) that turns batches of sample ids into records."""

    def __init__(self, config: Any) -> None:
        if (config.device or "cpu").startswith("cpu"):
            try:
                import torch

                torch.set_num_threads(1)  # one CPU actor, one thread: actors share the node's cores
            except ImportError:
                pass
        from hub_pgen.progress import NullReporter
        from hub_pgen.run.prepare import make_backend, prepare

        # the plan, made again from the configuration (deterministic: the same samples, types and seeds as
        # the driver's), rather than shipped: small constructor arguments, and the actor reads the dataset
        # where it runs
        prep = prepare(config, NullReporter())
        self.config, self.prep = config, prep
        self.backend = make_backend(config)
        self.position = locator(prep.samples)  # a sample by id: the plan's table finds it without a dict

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from hub_pgen.run.steps import generate_batch, iter_images

        ids = [str(i) for i in batch["sample_id"]]
        tried = {i: int(t) for i, t in zip(ids, batch["tried"])}
        samples = [self.prep.samples[self.position(i)] for i in ids]
        pairs = list(iter_images(samples, self.prep, self.backend, self.config.max_pixels))
        records, sent = generate_batch(pairs, self.prep, self.config, self.backend, tried)
        details = json.dumps(self.backend.describe(), default=str)
        return {"sample_id": [r.sample_id for r in records],
                "record": [json.dumps(r.to_json(), ensure_ascii=False) for r in records],
                "sent": [sent] + [0] * (len(records) - 1), "details": [details] * len(records)}


class RayEngine:
    name = "ray"

    def check_config(self, config: RunConfig) -> None:
        if config.workers is not None and config.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {config.workers}")
        if config.serve or config.serve_command:
            raise UsageError("--engine ray with --serve: the servers would start on this machine only",
                             hint="start the servers yourself and give --base-url, or drop --engine ray")
        if config.verify is not None:
            raise UsageError("--verify does not go with this run: --engine ray generates in its actors (verify "
                             "with the local engine)",
                             hint="drop --verify here; verification runs where a dataset is written whole")

    def check(self, config: RunConfig) -> None:
        import importlib.util

        from hub_pgen.errors import ModelLoadError
        from hub_pgen.install import pip_install

        if importlib.util.find_spec("ray") is None:
            raise ModelLoadError("--engine ray needs ray, which this Python does not have",
                                 hint=f"{pip_install('ray')} (or leave --engine out: one process)")

    def checks_backend_here(self, config: RunConfig) -> bool:
        return config.ray_address is None  # a remote cluster's nodes are not this one

    def cannot_label(self) -> str | None:
        return "--engine ray generates in its actors; the labelling runs with the local engine"

    def driver_backend(self, config: RunConfig, spec: Any) -> Backend | None:
        return RayBackendInfo(config.backend, spec.needs_images)

    def generate(self, pending: Sequence[Sample], ctx: RunContext,
                 journal: Mapping[str, JournalRecord]) -> Iterator[tuple[list[JournalRecord], int]]:
        """``pending`` on a Ray cluster; records come back batch by batch, as the actors finish them."""
        if pending:
            yield from _generate(pending, ctx, journal)


def _generate(pending: Sequence[Sample], ctx: RunContext,
              journal: Mapping[str, JournalRecord]) -> Iterator[tuple[list[JournalRecord], int]]:
    prep, config, backend, reporter = ctx.prep, ctx.config, ctx.backend, ctx.reporter
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster of this user's own processes
    import ray

    from hub_pgen.data import JournalRecord
    from hub_pgen.generate.registry import get_backend
    from hub_pgen.run.steps import tries

    started = not ray.is_initialized()
    if started:
        ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=False)
    try:
        if not logger.isEnabledFor(logging.DEBUG):  # Ray Data's own progress chatter; hub-pgen reports progress
            logging.getLogger("ray.data").setLevel(logging.ERROR)
        data_ctx = ray.data.DataContext.get_current()
        data_ctx.enable_progress_bars = False
        data_ctx.print_on_execution_start = False
        gpus = int(ray.cluster_resources().get("GPU", 0))
        on_gpu = gpus > 0 and not (config.device or "").startswith("cpu") and get_backend(config.backend).uses_model
        workers = config.workers or (gpus if on_gpu else 0)
        if workers < 1:
            raise UsageError("--engine ray on a cluster without GPUs needs --workers N (model actors to start)",
                             hint="e.g. --workers 2 --device cpu, or join a GPU cluster with --ray-address")
        per_call = get_backend(config.backend).samples_per_call(config)
        before = tries(journal, pending)
        rows = [{"sample_id": sid, "tried": before.get(sid, 0)} for sid in sample_ids(pending)]
        # the actors read the source the driver read: a Hub source at the commit it resolved
        actor_config = replace(config, revision=prep.source.revision) if prep.source is not None and \
            prep.source.repo_id else config
        results = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // per_call))).map_batches(
            _Worker, fn_constructor_kwargs={"config": actor_config}, batch_size=per_call,
            compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=1 if on_gpu else 0, num_cpus=1)
        reporter.stage("ray", f"{workers} model actor(s){' on GPUs' if on_gpu else ''}, batches of {per_call}")
        if not logger.isEnabledFor(logging.DEBUG):
            for name in ("ray.data", "ray.data._internal.execution.streaming_executor", "ray.data._internal.progress"):
                logging.getLogger(name).setLevel(logging.ERROR)
        batch: Any  # a pandas DataFrame (batch_format="pandas"); ray's type is the union of its batch formats
        for batch in results.iter_batches(batch_size=None, batch_format="pandas"):
            records = [JournalRecord.from_json(json.loads(r)) for r in batch["record"]]
            if isinstance(backend, RayBackendInfo) and backend.details is None and len(batch):
                backend.details = json.loads(batch["details"].iloc[0])
            yield records, int(batch["sent"].sum())
    finally:
        if started:
            ray.shutdown()
