#!/usr/bin/env python
"""End-to-end pipeline benchmark on a generated svla_so101_pickplace-shaped dataset.

Reports samples planned per strategy (segment / interval 1 s / frame) and end-to-end seconds of
``hub-pgen`` with the template backend for each, as ratios against a baseline measured in the same
invocation: copying the source dataset folder (``shutil.copytree``), the least any tool that writes
a new dataset must do.

    python scripts/bench_pipeline.py [--episodes 50] [--frames 240] [--data-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--frames", type=int, default=240)
    p.add_argument("--data-dir", type=Path, help="where to build (or reuse) the source dataset")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is reported)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from hub_pgen import run as runner
    from hub_pgen.config import RunConfig
    from hub_pgen.example import build_example_dataset, svla_like_spec

    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    src = args.data_dir or work / "source"
    t0 = time.perf_counter()
    if not (src / "meta" / "info.json").is_file():
        build_example_dataset(src, svla_like_spec(n_episodes=args.episodes, frames=args.frames))
    build_s = time.perf_counter() - t0

    def best(fn) -> float:
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    n = [0]

    def copy() -> None:
        n[0] += 1
        shutil.copytree(src, work / f"copy{n[0]}")

    baseline = best(copy)
    rows = []
    for strategy, interval in (("segment", None), ("interval", 1.0), ("frame", None)):
        def run() -> runner.RunResult:
            n[0] += 1
            cfg = RunConfig(root=src, output_dir=work / f"out{n[0]}", backend="template",  # run within its iteration
                            sampling=strategy, sample_interval=interval)  # noqa: B023
            return runner.run(cfg)

        result = run()
        seconds = best(run)
        rows.append({"strategy": strategy + (f" {interval:g}s" if interval else ""), "samples": result.samples,
                     "seconds": round(seconds, 3), "x_copy": round(seconds / baseline, 2),
                     "samples_per_s": round(result.samples / seconds, 1)})
    # what the load-time checks and the validation of the staged result cost, inside those runs
    from hub_pgen.source.lerobot import load_source
    from hub_pgen.write.validate import problems

    last = work / f"out{n[0]}"
    load_s = best(lambda: load_source(src))
    validate_s = best(lambda: problems(last))
    segment_s = rows[0]["seconds"]
    shutil.rmtree(work, ignore_errors=True)
    report = {"episodes": args.episodes, "frames_per_episode": args.frames, "build_s": round(build_s, 1),
              "copytree_s": round(baseline, 3), "runs": rows,
              "load_with_checks_s": round(load_s, 3), "validate_staged_s": round(validate_s, 3),
              "validate_share_of_segment_run": round(validate_s / segment_s, 3)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"dataset: {args.episodes} episodes x ~{args.frames} frames, 2 cameras (built in {build_s:.1f} s)")
        print(f"baseline copytree of the source: {baseline:.3f} s")
        print(f"{'strategy':<14}{'samples':>9}{'seconds':>10}{'x copy':>9}{'samples/s':>12}")
        for r in rows:
            print(f"{r['strategy']:<14}{r['samples']:>9}{r['seconds']:>10.3f}{r['x_copy']:>9.2f}{r['samples_per_s']:>12.1f}")
        print(f"inside each run: loading with every source check {load_s:.3f} s; validating the staged result "
              f"{validate_s:.3f} s ({100 * validate_s / segment_s:.0f}% of the segment run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
