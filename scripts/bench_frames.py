#!/usr/bin/env python
"""Frames-stage benchmark: the images a per-segment plan needs, on a generated dataset shaped like
lerobot/svla_so101_pickplace (50 episodes x ~240 frames, cameras up + side, AV1, 25 episodes a file).

Three ways to get the same (sample, camera) frames, timed in one invocation:

- ``hub-pgen``: :func:`hub_pgen.frames.iter_sample_images` (forward-decoding cursors, keyframe seeks,
  one thread per camera).
- ``full decode``: every frame of every video file of those cameras, decoded once in order with
  PyAV (the floor for any reader that does not seek). Goal: hub-pgen <= 1.5x this.
- ``lerobot``: ``LeRobotDataset(...)[i]`` (lerobot 0.6.1, pyav backend) for each sampled frame.
  Goal: hub-pgen >= 10x faster. Skipped when lerobot is not installed.

    python scripts/bench_frames.py [--episodes 50] [--frames 240] [--strategy segment] [--data-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--frames", type=int, default=240)
    p.add_argument("--codec", choices=("av1", "h264"), default="av1")
    p.add_argument("--strategy", choices=("segment", "interval", "frame"), default="segment")
    p.add_argument("--interval", type=float, default=1.0, help="seconds, for --strategy interval")
    p.add_argument("--data-dir", type=Path, help="where to build (or reuse) the source dataset")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is reported)")
    p.add_argument("--no-lerobot", action="store_true", help="skip the lerobot baseline")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import av

    from hub_pgen.example import build_example_dataset, read_frame_id, svla_like_spec
    from hub_pgen.frames import iter_sample_images
    from hub_pgen.plan.planner import build_plan
    from hub_pgen.source.lerobot import load_source
    from hub_pgen.source.skills import load_skills

    root = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-frames-")) / "source"
    t0 = time.perf_counter()
    if not (root / "meta" / "info.json").is_file():
        build_example_dataset(root, svla_like_spec(n_episodes=args.episodes, frames=args.frames, codec=args.codec))
    build_s = time.perf_counter() - t0

    source = load_source(root)
    skills = load_skills(root / "meta" / "skills.json", known_episodes=set(source.episodes))
    cameras = source.video_keys
    plan = build_plan(source, skills, strategy=args.strategy,
                      interval=args.interval if args.strategy == "interval" else None, cameras=cameras)
    samples = plan.samples
    files = sorted({root / ep.videos[c].path for ep in source.episodes.values() for c in cameras})
    total_frames = sum(ep.length for ep in source.episodes.values()) * len(cameras)

    def best(fn):
        times, out = [], None
        for _ in range(args.repeat):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times), out

    def ours():
        stats: dict[str, int] = {}
        got = list(iter_sample_images(samples, source=source, stats=stats))
        return got, stats["decoded"], stats["seeks"]

    def full_decode():
        n = 0
        for f in files:
            with av.open(str(f)) as c:
                stream = c.streams.video[0]
                stream.thread_type = "AUTO"
                for _ in c.decode(stream):
                    n += 1
        return n

    ours_s, (got, decoded, seeks) = best(ours)
    for s, imgs in got:  # untimed check: the right frames came back
        assert all(read_frame_id(img) == (s.episode_index, s.frame_index) for img in imgs), s.sample_id
    del got
    full_s, full_n = best(full_decode)
    result = {
        "dataset": {"episodes": len(source.episodes), "frames": total_frames // len(cameras),
                    "cameras": list(cameras), "codec": args.codec, "video_files": len(files),
                    "build_s": round(build_s, 2)},
        "strategy": args.strategy,
        "samples": len(samples),
        "images": len(samples) * len(cameras),
        "hub_pgen_s": round(ours_s, 4),
        "hub_pgen_frames_decoded": decoded,
        "hub_pgen_seeks": seeks,
        "full_decode_s": round(full_s, 4),
        "full_decode_frames": full_n,
        "ratio_vs_full_decode": round(ours_s / full_s, 3),
    }

    if not args.no_lerobot:
        try:
            from lerobot.datasets.lerobot_dataset import LeRobotDataset
        except ImportError:
            result["lerobot"] = "not installed"
        else:
            ds = LeRobotDataset("bench/frames", root=root, video_backend="pyav")
            indices = [source.episodes[s.episode_index].dataset_from_index + s.frame_index for s in samples]

            def lerobot():
                for i in indices:
                    ds[i]

            le_s, _ = best(lerobot)
            result["lerobot_s"] = round(le_s, 4)
            result["speedup_vs_lerobot"] = round(le_s / ours_s, 1)

    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        d = result["dataset"]
        print(f"dataset: {d['episodes']} episodes, {d['frames']} frames, {len(cameras)} cameras ({args.codec}), "
              f"{d['video_files']} video files (built in {d['build_s']} s)")
        print(f"plan: {args.strategy}, {result['samples']} samples, {result['images']} images")
        print(f"hub-pgen frames:      {ours_s:8.3f} s  ({decoded} frames decoded, {seeks} seeks)")
        print(f"full sequential decode:{full_s:7.3f} s  ({full_n} frames)   ratio {result['ratio_vs_full_decode']}x "
              "(goal <= 1.5x)")
        if "lerobot_s" in result:
            print(f"lerobot __getitem__:  {result['lerobot_s']:8.3f} s               hub-pgen is "
                  f"{result['speedup_vs_lerobot']}x faster (goal >= 10x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
