"""What a shard ran on, for the merge to check: a local source's data and video files, fingerprinted.

A shard records the digests of its source's files in its provenance (``source_files``); the merge
computes them again on the source it is given and refuses the shards when a file differs, so a
source changed after the shards ran is refused, not merged. (A Hub source is pinned by its commit
sha, which the identity holds.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from hub_pgen.errors import ShardError
from hub_pgen.run.merging import SHOWN, ShardResult, quoted
from hub_pgen.run.shards import label

# A video is fingerprinted by its size and these many 64 KiB blocks spread over it (reading every
# byte of every video on every shard and merge would cost minutes on a large dataset); data files,
# which the plan reads, are hashed whole.
VIDEO_BLOCKS = 16
VIDEO_BLOCK_BYTES = 64 << 10


def source_files(root: Path) -> dict[str, str]:
    """Digests of a local source's data and video files, by path in the dataset: what a shard saw.
    (A Hub source is pinned by its commit sha, which the identity holds.)"""
    out: dict[str, str] = {}
    for top in ("data", "videos"):
        base = root / top
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.is_file():
                rel = p.relative_to(root).as_posix()
                out[rel] = _digest(p, whole=top == "data")
    return out


def _digest(path: Path, *, whole: bool) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        if whole or size <= VIDEO_BLOCKS * VIDEO_BLOCK_BYTES:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        else:
            for i in range(VIDEO_BLOCKS):  # the first block at byte 0, the last ending at the last byte
                fh.seek(i * (size - VIDEO_BLOCK_BYTES) // (VIDEO_BLOCKS - 1))
                h.update(fh.read(VIDEO_BLOCK_BYTES))
    return h.hexdigest()[:16]


def check_source_files(shards: Sequence[ShardResult], root: Path | None) -> None:
    """A local source: the data and video files are those every shard ran on."""
    if root is None:
        return
    here = source_files(root)
    for shard in shards:
        theirs = shard.provenance.get("source_files")
        if not isinstance(theirs, dict):
            raise ShardError(f"shard {shard.path} does not record its source's data and video files (made by an older "
                             "hub-pgen, or its meta/hub_pgen.json was edited)",
                             hint="rerun the shards with this hub-pgen, then merge")
        changed = sorted(k for k in set(here) | set(theirs) if here.get(k) != theirs.get(k))
        if changed:
            shown = ", ".join(quoted(k) for k in changed[:SHOWN]) + (", …" if len(changed) > SHOWN else "")
            raise ShardError(f"the source's data or video files are not those shard {label(shard.index, shard.count)} "
                             f"ran on: {len(changed)} file(s) differ ({shown})",
                             hint="merge on the source the shards ran on; if the dataset changed since, rerun the "
                                  "shards on it")

