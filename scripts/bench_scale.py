#!/usr/bin/env python
"""Shards and Ray on one box: samples/s of 1 process vs N shard processes at once and vs 1 and 2 Ray
actors (``--engine ray``, a local cluster), and what the merge costs.

With the tiny random-weight Qwen2-VL on CPU (the GPU figures come from a GPU machine: scripts/gpu_bench.sh), on a generated
svla_so101-shaped dataset: the one-machine run, then N shard runs started together (wall time until
the last ends), then ``hub-pgen merge`` of the shards, against the template backend's one-machine
run of the same plan (generation free, so its time is the writing a merge must also do). Ratios
are measured in the same invocation; the outputs of the one-machine run and of the merge are
compared file by file.

    python scripts/bench_scale.py [--shards 2] [--episodes 8] [--no-ray] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "hub_pgen.json"}


def cli(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hub_pgen", *args, "-q"], check=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--no-ray", action="store_true", help="skip the Ray arms")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from hub_pgen.example import build_example_dataset, svla_like_spec
    from hub_pgen.testing.tiny_qwen import tiny_model_dir

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    src = work / "src"
    build_example_dataset(src, svla_like_spec(n_episodes=args.episodes, frames=90))
    tiny = tiny_model_dir(work / "tiny", "qwen2_vl")
    model = ("--model", str(tiny), "--device", "cpu", "--batch-size", "4", "--sampling", "interval",
             "--sample-interval", "1.0")
    one = cli("--root", str(src), "--output-dir", str(work / "one"), *model)
    samples = sum(1 for _ in (work / "one" / "meta" / "syn_annotations.jsonl").open())
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "hub_pgen", "--root", str(src), "--output-dir",
                               str(work / f"s{i}"), *model, "--num-shards", str(args.shards), "--shard-index", str(i),
                               "-q"], env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
             for i in range(args.shards)]
    assert all(proc.wait() == 0 for proc in procs)
    sharded = time.perf_counter() - t
    merge = cli("merge", *[str(work / f"s{i}") for i in range(args.shards)], "--root", str(src),
                "--output-dir", str(work / "merged"))
    write = cli("--root", str(src), "--output-dir", str(work / "template"), "--backend", "template",
                "--sampling", "interval", "--sample-interval", "1.0")
    same = tree(work / "one") == tree(work / "merged")
    ray_rows = {}
    if not args.no_ray:
        for n in (1, 2):
            ray_rows[n] = cli("--root", str(src), "--output-dir", str(work / f"ray{n}"), *model, "--engine", "ray",
                              "--workers", str(n))
    result = {
        "samples": samples, "cpus": os.cpu_count(), "shards": args.shards,
        "one_process_s": round(one, 2), "one_process_samples_per_s": round(samples / one, 2),
        "shards_wall_s": round(sharded, 2), "shards_samples_per_s": round(samples / sharded, 2),
        "shards_x_one_process": round(one / sharded, 2),
        "merge_s": round(merge, 2), "template_one_machine_s": round(write, 2),
        "merge_x_template_run": round(merge / write, 2), "merged_equals_one_machine": same,
    }
    for n, seconds in ray_rows.items():  # whole command: includes starting the local cluster and the actors
        result[f"ray_{n}_actor_s"] = round(seconds, 2)
        result[f"ray_{n}_actor_x_one_process"] = round(one / seconds, 2)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        for k, v in result.items():
            print(f"{k:>28}: {v}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
