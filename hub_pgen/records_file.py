"""The D_syn records of a finished result (``meta/syn_annotations.jsonl``, a shard's
``syn_annotations.jsonl``), read strictly: a result is input once it is written (a merge's shards come
from other machines, a report's folder may have been edited), unlike the run's own journal
(:mod:`hub_pgen.journal`), which the run alone writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from hub_pgen.data import JournalRecord
from hub_pgen.errors import HubPgenError, SourceError

MAX_RECORD_BYTES = 4 << 20  # one line of a finished result's records (real ones are a few KiB)


def read_records(path: Path, *, error: type[HubPgenError] = SourceError,
                 hint: str = "the file is damaged or was edited: rerun the run that wrote it") -> dict[str, JournalRecord]:
    """The D_syn records of a finished result (``meta/syn_annotations.jsonl``, a shard's
    ``syn_annotations.jsonl``), strictly (:func:`iter_records`), by sample id: a sample twice is an
    ``error`` naming the line too."""
    records: dict[str, JournalRecord] = {}
    for n, rec in iter_records(path, error=error, hint=hint):
        if rec.sample_id in records:
            raise error(f"{path}:{n}: sample {rec.sample_id[:60]!r} appears twice", hint=hint)
        records[rec.sample_id] = rec
    return records


def iter_records(path: Path, *, error: type[HubPgenError] = SourceError,
                 hint: str = "the file is damaged or was edited: rerun the run that wrote it"
                 ) -> Iterator[tuple[int, JournalRecord]]:
    """Each D_syn record of a finished result with its line number, as it is read: it is a result, not a
    journal being written, so a line that is not whole, not a record of the types hub-pgen writes, or
    too long is an ``error`` naming the line — never skipped, never passed on to code that trusts its
    types. (Whether a sample comes twice is the caller's to say: :func:`read_records` does.)"""
    from hub_pgen.source.jsonfile import JsonProblem, loads_strict

    shared: dict[object, object] = {}
    if not path.is_file():
        raise error(f"{path} is missing: a finished result holds its records there", hint=hint)
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if len(line) > MAX_RECORD_BYTES:
                raise error(f"{path}:{n}: a record of {len(line):,} bytes (at most {MAX_RECORD_BYTES:,})", hint=hint)
            if not line.strip():
                continue
            try:
                rec = JournalRecord.from_json(loads_strict(line.decode("utf-8")), shared)
            except (UnicodeDecodeError, json.JSONDecodeError, JsonProblem, TypeError, ValueError) as e:
                raise error(f"{path}:{n}: not a record hub-pgen writes ({e})", hint=hint) from None
            yield n, rec
