#!/usr/bin/env python
"""What lerobot's language columns cost to write and to check, on a large synthetic data file.

One data parquet of ``--episodes`` x ``--frames`` rows (svla_so101-shaped columns), ``--skills``
skill segments per episode and a dialogue every ``--every`` frames inside them (interval sampling).
Reported as ratios against a baseline measured in the same invocation: the hirobot format's own
work on that file (read it, append task_index_high_level, write it).

- write: ``language_columns`` (subtask + dialogue rows merged with none from the source) + writing the file
- check: what ``hub-pgen validate`` does per data file for the language columns
- source check: what the load does for a source that already has language columns

    python scripts/bench_language.py [--episodes 2000] [--frames 500] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def build(path: Path, episodes: int, frames: int, fps: float = 30.0) -> None:
    n = episodes * frames
    fi = np.tile(np.arange(frames, dtype=np.int64), episodes)
    table = pa.table({
        "action": pa.FixedSizeListArray.from_arrays(pa.array(np.random.rand(n * 6).astype(np.float32)), 6),
        "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(np.random.rand(n * 6).astype(np.float32)), 6),
        "timestamp": pa.array((fi / fps).astype(np.float32)),
        "frame_index": pa.array(fi),
        "episode_index": pa.array(np.repeat(np.arange(episodes, dtype=np.int64), frames)),
        "index": pa.array(np.arange(n, dtype=np.int64)),
        "task_index": pa.array(np.zeros(n, dtype=np.int64)),
    })
    pq.write_table(table, path)


def language_plan(episodes: int, frames: int, skills: int, every: int):
    from hub_pgen.write.language import LanguagePlan

    seg = frames // skills
    subtasks = {e: tuple((k * seg, f"skill {k}") for k in range(skills)) for e in range(episodes)}
    dialogues = {(e, f): (f"Please do step {f} now, carefully.", f"On it: step {f}.")
                 for e in range(episodes) for f in range(0, frames, every)}
    return LanguagePlan(subtasks, dialogues)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=2000)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--skills", type=int, default=5)
    p.add_argument("--every", type=int, default=30, help="frames between dialogues (30 = 1 s at 30 fps)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from hub_pgen import language as lang
    from hub_pgen.source import checks
    from hub_pgen.write import dataset as wd
    from hub_pgen.write.language import LanguageCounts
    from hub_pgen.write.validate import _check_language

    work = Path(tempfile.mkdtemp(prefix="bench-language-"))
    src = work / "file-000.parquet"
    build(src, args.episodes, args.frames)
    n = args.episodes * args.frames
    per_episode = {e: np.zeros(args.frames, dtype=np.int64) for e in range(args.episodes)}
    plan = language_plan(args.episodes, args.frames, args.skills, args.every)

    def timed(fn) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    baseline = timed(lambda: wd._write_data_file(src, work / "hirobot.parquet", per_episode, None, LanguageCounts()))
    counts = LanguageCounts()
    write = timed(lambda: wd._write_data_file(src, work / "both.parquet", per_episode, plan, counts))
    table = pq.read_table(work / "both.parquet", columns=["episode_index", "frame_index", "timestamp", *lang.COLUMNS])
    expected = {k: (*v, None) for k, v in plan.dialogues.items()}
    check = timed(lambda: _check_language("both.parquet", table, dict(expected)))
    root = work / "ds"
    (root / "data").mkdir(parents=True)
    (work / "both.parquet").rename(root / "data" / "file.parquet")
    info = {"features": {c: dict(lang.FEATURE_SPEC) for c in lang.COLUMNS}}
    source_check = timed(lambda: checks.check_language(root, info, ["data/file.parquet"]))
    size = {k: (root / "data" / "file.parquet" if k == "both" else work / "hirobot.parquet").stat().st_size
            for k in ("hirobot", "both")}
    result = {
        "frames": n, "subtask_rows": counts.subtask_rows, "dialogues": counts.dialogues,
        "baseline_s": round(baseline, 3), "write_s": round(write, 3), "check_s": round(check, 3),
        "source_check_s": round(source_check, 3),
        "write_x_baseline": round(write / baseline, 2), "check_x_baseline": round(check / baseline, 2),
        "source_check_x_baseline": round(source_check / baseline, 2),
        "file_mb": {k: round(v / 1e6, 1) for k, v in size.items()},
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        for k, v in result.items():
            print(f"{k:>26}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
