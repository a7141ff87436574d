"""The step every engine runs: a batch of (sample, images) through the backend into journal records,
and the journal's side of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub_pgen import faults
from hub_pgen.config import RunConfig
from hub_pgen.data import GenerationRequest, GenerationResult, JournalRecord, Sample
from hub_pgen.errors import FrameError
from hub_pgen.generate.base import Backend
from hub_pgen.generate.parse import checked_result
from hub_pgen.generate.prompt import construct_prompt
from hub_pgen.journal import JournalView, to_record
from hub_pgen.journal_writer import JournalWriter
from hub_pgen.plan.table import sample_ids
from hub_pgen.progress import Reporter

if TYPE_CHECKING:
    from hub_pgen.run.prepare import Prepared
from hub_pgen.generate.layer import sample_seed

logger = logging.getLogger(__name__)


FRAME_CHUNK = 16  # samples a frame lane decodes at a time


def iter_images(
    samples: Sequence[Sample], prep: Prepared, backend: Backend, max_pixels: int | None, *, ready: int = 0,
    keep: Callable[[Sample, int, Any], None] | None = None,
) -> Iterator[tuple[Sample, list[Any] | FrameError]]:
    """Each sample with its images as ``backend`` takes them: decoded in the frame lanes, at least
    ``ready`` samples ahead of the caller, and put in the backend's own form there when it has one
    (``prepare_image``: the OpenAI backend's JPEG data URLs). ``keep(sample, i, image)`` sees each
    decoded image first (the review's thumbnails)."""
    if not backend.needs_images:
        for s in samples:
            yield s, []
        return
    from hub_pgen.frames import iter_sample_images

    convert = getattr(backend, "prepare_image", None)

    def prepare(sample: Sample, i: int, image: Any) -> Any:
        if keep is not None:
            keep(sample, i, image)
        return image if convert is None else convert(image)

    yield from iter_sample_images(samples, source=prep.source, base_dir=prep.base_dir, max_pixels=max_pixels,
                                  chunk=FRAME_CHUNK, ahead=max(2, -(-ready // FRAME_CHUNK)),
                                  prepare=prepare if convert is not None or keep is not None else None)


def tries(journal: Mapping[str, JournalRecord], samples: Sequence[Sample]) -> dict[str, int]:
    """Attempts each sample already had (a failure being retried with --retry-failed), by sample id; a
    sample that never ran is not in it (``.get(sample_id, 0)``: not one entry per pending sample)."""
    out = {}
    for sid in sample_ids(samples):
        before = journal.get(sid)
        if before is not None:
            out[sid] = before.attempts + sum(int(e.get("attempts") or 0) for e in before.earlier)
    return out


def generate_batch(
    batch: Sequence[tuple[Sample, list[Any] | FrameError]], prep: Prepared, config: RunConfig, backend: Backend,
    tried: dict[str, int],
) -> tuple[list[JournalRecord], int]:
    """One batch of (sample, images) → one journal record per sample, and how many went to the backend."""
    requests: list[GenerationRequest] = []
    records: list[JournalRecord] = []
    for sample, images in batch:
        if isinstance(images, FrameError):
            records.append(to_record(sample, GenerationResult(sample.sample_id, None, error=f"frames: {images}"),
                                     prep.fingerprint))
            continue
        requests.append(GenerationRequest(sample, construct_prompt(sample, config.prompt_template), tuple(images),
                                          sample_seed(config.seed, sample.sample_id),
                                          first_attempt=tried.get(sample.sample_id, 0)))
    faults.point("frames")
    if requests:
        results = backend.generate(requests)
        faults.point("generate")
        by_id = {res.sample_id: checked_result(res) for res in results}
        missing = [req.sample.sample_id for req in requests if req.sample.sample_id not in by_id]
        if missing:
            raise RuntimeError(f"backend {backend.name} returned no result for {missing[:5]}")
        records += [to_record(req.sample, by_id[req.sample.sample_id], prep.fingerprint) for req in requests]
    return records, len(requests)


def record_batch(records: list[JournalRecord], writer: JournalWriter, journal: JournalView,
                 reporter: Reporter) -> None:
    """A batch's records into the journal (fsync'ed), then into the run's view of it (where they are)."""
    records = [with_earlier(r, journal.get(r.sample_id)) for r in records]
    journal.add(records, writer.append(records))  # at once: an interrupt after this counts them
    faults.point("journal")
    reporter.samples_advance(sum(r.status == "ok" for r in records), sum(r.status != "ok" for r in records))


def with_earlier(record: JournalRecord, before: JournalRecord | None) -> JournalRecord:
    """A retried sample's new record keeps the earlier failed tries (oldest first)."""
    if before is None or before.status == "ok":
        return record
    return replace(record, earlier=before.earlier + (before.as_earlier(),))
