#!/usr/bin/env python
"""Are the outputs byte for byte what an earlier checkout writes? Every file of eleven results, compared.

A refactor that must not change what users get (issue 23's "outputs byte-identical to today's") runs
the same commands with this checkout and with ``--baseline DIR`` (``git worktree add DIR COMMIT``) on
one generated dataset, then compares every file of every result, with the times a run records
(ISO dates, elapsed seconds) masked. The configurations: per-frame; the filters with ``--verify
filter``; interval sampling with ``--format lerobot-language`` and ``--drop-degenerate``; ``--format
hirobot`` on some episodes; per-segment; three shards and their merge; a run killed when 700 samples
are journaled and then resumed.

    python scripts/same_outputs.py --baseline /tmp/base [--work DIR] [--episodes 30]

Prints each file that differs (with the first differing lines given ``--diff``) and exits 1 if any does.
A file this checkout adds on purpose where the baseline wrote none (:data:`ADDED`) is named, not counted.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# files added on purpose since issue 23 began: a shard's pictures for the merged page (hub_pgen.review.shard_thumbs)
ADDED = re.compile(r"shard\d+/meta/hub_pgen_thumbs\.jsonl")

RUNS: list[tuple[str, list[str]]] = [
    ("frame", ["--backend", "template", "--sampling", "frame"]),
    ("filters", ["--backend", "template", "--sampling", "frame", "--dedupe", "--min-chars", "30", "--verify", "filter"]),
    ("interval", ["--backend", "template", "--sampling", "interval", "--sample-interval", "0.5",
                  "--format", "lerobot-language", "--drop-degenerate"]),
    ("hirobot", ["--backend", "template", "--format", "hirobot", "--episodes", "0-9", "--sampling", "frame"]),
    ("segment", ["--backend", "template"]),
]
SHARDS = 3
_ISO = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?")
_SECONDS = re.compile(rb'("(elapsed_s|seconds|elapsed|wall_s|duration_s|started_s|generate_s)"\s*:\s*)[0-9.e+-]+')
_PAGE_TIME = re.compile(rb"(in |took |elapsed )[0-9.]+ ?(s|ms)\b")


def masked(data: bytes) -> bytes:
    return _PAGE_TIME.sub(rb"\1<S>", _SECONDS.sub(rb"\1<S>", _ISO.sub(b"<T>", data)))


def hub_pgen(code: Path, argv: list[str], env: dict[str, str] | None = None) -> int:
    """``python -m hub_pgen`` of the checkout ``code`` (run in it: ``-m`` imports from the working folder)."""
    proc = subprocess.run([sys.executable, "-m", "hub_pgen", *argv, "-q"], cwd=code,
                          env={**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1", **(env or {})},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode not in (0, -9):
        print(proc.stderr.decode(errors="replace")[-2000:], file=sys.stderr)
    return proc.returncode


def results(code: Path, src: Path, out: Path) -> None:
    """Every configuration's result of ``code``, under ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name, flags in RUNS:
        assert hub_pgen(code, ["--root", str(src), "--output-dir", str(out / name), *flags]) == 0, name
    frame = RUNS[0][1]
    shards = [out / f"shard{i}" for i in range(SHARDS)]
    for i, shard in enumerate(shards):
        assert hub_pgen(code, ["--root", str(src), "--output-dir", str(shard), *frame,
                               "--num-shards", str(SHARDS), "--shard-index", str(i)]) == 0
    assert hub_pgen(code, ["merge", *map(str, shards), "--root", str(src), "--output-dir", str(out / "merged")]) == 0
    resumed = ["--root", str(src), "--output-dir", str(out / "resumed"), *frame]
    assert hub_pgen(code, resumed, env={"HUB_PGEN_KILL_AT": "journal:700"}) == -9  # killed there
    assert hub_pgen(code, resumed) == 0


def compare(a: Path, b: Path, diff: bool) -> int:
    files = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    files |= {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    differ = 0
    for rel in sorted(files):
        x, y = a / rel, b / rel
        if not (x.is_file() and y.is_file()):
            added = x.is_file() and ADDED.fullmatch(rel)
            print(f"only in {'this checkout' if x.is_file() else 'the baseline'}: {rel}" + (" (added on purpose)" if added else ""))
            differ += not added
            continue
        bx, by = x.read_bytes(), y.read_bytes()
        if bx == by or masked(bx) == masked(by):
            continue
        differ += 1
        print(f"differs: {rel} ({len(bx)} vs {len(by)} bytes)")
        if diff:
            lines = difflib.unified_diff(masked(by).decode(errors="replace").splitlines(),
                                         masked(bx).decode(errors="replace").splitlines(), lineterm="", n=0)
            for line in list(lines)[:12]:
                print("    " + line[:300])
    print(f"{len(files)} files, {differ} differ")
    return differ


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, required=True, help="a checkout of the earlier commit")
    p.add_argument("--work", type=Path, default=None, help="where the dataset and the results go (kept)")
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--diff", action="store_true", help="show the first differing lines of each file")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="same-outputs-"))
    src = work / f"src{args.episodes}"
    if not (src / "meta" / "info.json").is_file():
        from hub_pgen.example import ExampleSpec, build_example_dataset

        build_example_dataset(src, ExampleSpec(n_episodes=args.episodes, episodes_per_file=8))  # every edge case
    results(REPO, src, work / "this")
    results(args.baseline.resolve(), src, work / "baseline")
    return 1 if compare(work / "this", work / "baseline", args.diff) else 0


if __name__ == "__main__":
    sys.exit(main())
