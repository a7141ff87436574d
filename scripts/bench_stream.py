#!/usr/bin/env python
"""Generation as a stream (issue 22): how close each pass comes to K requests always in flight, the
client's own ceiling, and memory against K. Every figure is a ratio against a baseline measured in the
same invocation, on the loopback stand-in (tests/openai_server.py):

1. **Fraction of ideal, per pass**: a server whose latency is 0.4 s +- 50 % (seeded), K = 8, a
   ``--skills annotate --verify`` run of 96 unlabelled episodes (96 labelling calls, 96 dialogues,
   96 verdicts). Each pass's rate (its requests over first arrival to last answer, from the stand-in's
   log) against K / the mean latency the stand-in gave. A train of batches reaches ~0.78 here; a pass
   that sends one request at a time, 1/K.
2. **Client ceiling**: latency 0, 2 cameras at 640x480, K = 8: the dialogue pass's samples/s (first
   arrival to last answer), against the floor of decoding those frames once and JPEG-encoding them
   (frames stage + encoder, no HTTP) in the same process.
3. **Memory**: peak RSS of a whole ``hub-pgen`` run (a child process) at K = 64 against K = 1, the
   640x480 dataset, latency 0.05 s.

    python scripts/bench_stream.py [--episodes 96] [--k 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

PASSES = {"labelling": "hub_pgen_skills", "dialogues": "pgen_dialogue", "verification": "hub_pgen_verify"}


def run_cli(*argv: str) -> None:
    from hub_pgen.cli import main

    rc = main([*argv, "-q"])
    if rc != 0:
        raise SystemExit(f"hub-pgen {' '.join(argv)} exited {rc}")


def pass_figures(server, k: int) -> dict[str, dict[str, float]]:
    out = {}
    for label, schema in PASSES.items():
        entries = [e for e in server.requests if e["schema"] == schema]
        if not entries:
            continue
        span = max(e["answered"] for e in entries) - min(e["arrived"] for e in entries)
        rate = len(entries) / span
        latency = statistics.mean(e["delay"] for e in entries)
        ideal = k / latency if latency > 0 else float("inf")
        out[label] = {"requests": len(entries), "seconds": round(span, 2), "per_s": round(rate, 2),
                      "ideal_per_s": round(ideal, 2), "fraction": round(rate / ideal, 3),
                      "arrivals_with_k_in_flight": round(server.in_flight_fraction(k, schema), 3)}
    return out


def floor_per_s(prep) -> float:
    """Decode every sample's frames once (the frames stage, its lanes) and JPEG-encode them."""
    from hub_pgen.frames import iter_sample_images
    from hub_pgen.generate.openai import image_data_url

    t = time.perf_counter()
    n = 0
    for _ in iter_sample_images(prep.samples, source=prep.source, base_dir=prep.base_dir,
                                prepare=lambda s, i, im: image_data_url(im)):
        n += 1
    return n / (time.perf_counter() - t)


def peak_rss_mb(argv: list[str]) -> float:
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "hub_pgen", *argv, "-q"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return int(proc.stderr.strip().splitlines()[-1]) / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=96, help="unlabelled episodes for the per-pass figures")
    p.add_argument("--k", type=int, default=8, help="--concurrency")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HUB_PGEN_RETRY_SCALE", "0.01")

    from openai_server import OpenAIServer

    from hub_pgen.example import ExampleSpec, build_example_dataset

    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    figures: dict[str, object] = {}

    # 1. every pass against a varying latency
    src = build_example_dataset(work / "unlabelled", ExampleSpec(n_episodes=args.episodes, skills="none",
                                                                 frames_per_episode=40))
    with OpenAIServer(delay=0.4, jitter=0.5, seed=0) as server:
        run_cli("--root", str(src), "--output-dir", str(work / "o1"), "--backend", "openai", "--base-url",
                server.url, "--skills", "annotate", "--verify", "--concurrency", str(args.k))
        figures["passes"] = pass_figures(server, args.k)

    # 2. the client's ceiling at latency 0, 2 cameras 640x480
    big = build_example_dataset(work / "big", ExampleSpec(n_episodes=6, width=640, height=480,
                                                          frames_per_episode=60, skills="regular"))
    interval = ["--sampling", "interval", "--sample-interval", "0.04"]
    with OpenAIServer() as server:
        run_cli("--root", str(big), "--output-dir", str(work / "o2"), "--backend", "openai", "--base-url", server.url,
                "--concurrency", str(args.k), *interval)
        client = pass_figures(server, args.k)["dialogues"]
    from hub_pgen.config import RunConfig
    from hub_pgen.progress import NullReporter
    from hub_pgen.run.prepare import prepare

    with OpenAIServer() as server:
        cfg = RunConfig(root=big, output_dir=work / "o3", backend="openai", base_url=server.url, model="tiny-pgen",
                        sampling="interval", sample_interval=0.04)
        floor = floor_per_s(prepare(cfg, NullReporter()))
    figures["client"] = {"samples": client["requests"], "per_s": client["per_s"], "floor_per_s": round(floor, 1),
                         "x_floor": round(client["per_s"] / floor, 3)}

    # 3. memory at K = 64 against K = 1
    with OpenAIServer(delay=0.05) as server:
        rss = {}
        for k in (1, 64):
            rss[k] = peak_rss_mb(["--root", str(big), "--output-dir", str(work / f"m{k}"), "--backend", "openai",
                                  "--base-url", server.url, "--concurrency", str(k), *interval])
    figures["memory"] = {"peak_rss_mb_k1": round(rss[1], 1), "peak_rss_mb_k64": round(rss[64], 1),
                         "x_k1": round(rss[64] / rss[1], 3)}

    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"1. latency 0.4 s +- 50 %, K = {args.k}: each pass against K / mean latency")
        print(f"   {'pass':<14}{'requests':>9}{'seconds':>9}{'per s':>8}{'ideal':>8}{'fraction':>10}{'K in flight':>13}")
        for label, f in figures["passes"].items():  # type: ignore[union-attr]
            print(f"   {label:<14}{f['requests']:>9}{f['seconds']:>9.2f}{f['per_s']:>8.2f}{f['ideal_per_s']:>8.2f}"
                  f"{f['fraction']:>10.3f}{f['arrivals_with_k_in_flight']:>13.3f}")
        c = figures["client"]
        print(f"2. latency 0, 2 cameras 640x480, K = {args.k}: {c['samples']} samples at {c['per_s']:.1f}/s; "  # type: ignore[index]
              f"decode-once + JPEG floor {c['floor_per_s']:.1f}/s: x{c['x_floor']:.2f}")  # type: ignore[index]
        m = figures["memory"]
        print(f"3. peak RSS K = 64 {m['peak_rss_mb_k64']:.0f} MB vs K = 1 {m['peak_rss_mb_k1']:.0f} MB: "  # type: ignore[index]
              f"x{m['x_k1']:.2f}")  # type: ignore[index]
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
