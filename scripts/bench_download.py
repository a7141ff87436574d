#!/usr/bin/env python
"""Bytes a Hub source sends per shard: each shard downloads only its own episodes' files.

Against the loopback Hub stand-in (``tests/hubserver.py``) and the loopback OpenAI-compatible
stand-in (``tests/openai_server.py``, so frames are decoded and every camera's videos are needed), on
a generated dataset with one data and one video file per episode (how large public LeRobot datasets
come: files roll over at a size), and again with four episodes a file. For ``--num-shards N``, each
shard runs on a fresh cache; the baseline in the same invocation is the one-machine run on the same
dataset (every file, once). Reported: bytes per shard as a ratio of the whole dataset (ideal 1/N),
and the merge's own download (everything, once: it writes the dataset).

    python scripts/bench_download.py [--episodes 24] [--shards 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.pop("HF_HUB_OFFLINE", None)


def _bytes(server, repo_id: str, files: dict[str, bytes]) -> tuple[int, int, int]:
    """(meta, data, video) bytes the stand-in served for ``repo_id`` since its log was cleared."""
    got = server.downloaded(repo_id)
    meta = sum(len(files[p]) for p in got if p.startswith("meta/"))
    data = sum(len(files[p]) for p in got if p.startswith("data/"))
    video = sum(len(files[p]) for p in got if p.startswith("videos/"))
    return meta, data, video


def _cli(argv: list[str]) -> None:
    from hub_pgen.cli import main

    rc = main(argv)
    if rc != 0:
        raise SystemExit(f"hub-pgen {' '.join(argv)} exited {rc}")


def measure(work: Path, episodes: int, per_file: int, shards: int) -> dict:
    from hub_pgen import layout
    from hub_pgen.example import ExampleSpec, build_example_dataset
    from tests.hubserver import HubServer
    from tests.openai_server import OpenAIServer

    src = build_example_dataset(work / f"src-{per_file}", ExampleSpec(
        n_episodes=episodes, episodes_per_file=per_file, skills="regular", width=160, height=120,
        frames_per_episode=(90, 75, 105, 60)))
    repo = f"bench/per-file-{per_file}"
    with HubServer() as hub, OpenAIServer() as model:
        hub.create_repo(repo)
        sha = hub.commit_folder(repo, src)
        hub.set_tag(repo, layout.CODEBASE_VERSION, sha)
        files = hub.files_at(repo, sha)
        whole = {k: sum(len(v) for p, v in files.items() if p.startswith(k)) for k in ("meta/", "data/", "videos/")}
        os.environ["HF_ENDPOINT"] = hub.url
        common = ["--repo-id", repo, "--backend", "openai", "--base-url", model.url, "--model", "tiny-pgen", "-q"]

        def run(tag: str, argv: list[str]) -> dict:
            os.environ["HF_HOME"] = str(work / f"cache-{per_file}-{tag}")  # a fresh machine each time
            hub.clear_log()
            t = time.perf_counter()
            _cli(argv)
            meta, data, video = _bytes(hub, repo, files)
            return {"meta": meta, "data": data, "videos": video, "total": meta + data + video,
                    "seconds": round(time.perf_counter() - t, 2)}

        one = run("one", [*common, "--output-dir", str(work / f"one-{per_file}")])
        per_shard = [run(f"s{i}", [*common, "--num-shards", str(shards), "--shard-index", str(i), "--output-dir",
                                   str(work / f"s{per_file}-{i}")]) for i in range(shards)]
        merge = run("merge", ["merge", *(str(work / f"s{per_file}-{i}") for i in range(shards)), "--repo-id", repo,
                              "--output-dir", str(work / f"merged-{per_file}"), "-q"])
    total = sum(whole.values())
    payload = whole["data/"] + whole["videos/"]
    return {
        "episodes": episodes, "episodes_per_file": per_file, "shards": shards,
        "dataset_bytes": total, "dataset_files": len(files) - 1,
        "one_machine": one, "per_shard": per_shard, "merge": merge,
        "shard_payload_ratio_max": round(max((s["data"] + s["videos"]) / payload for s in per_shard), 3),
        "shard_payload_ratio_mean": round(sum((s["data"] + s["videos"]) / payload for s in per_shard) / shards, 3),
        "shards_payload_sum_ratio": round(sum(s["data"] + s["videos"] for s in per_shard) / payload, 3),
        "one_machine_payload_ratio": round((one["data"] + one["videos"]) / payload, 3),
        "merge_payload_ratio": round((merge["data"] + merge["videos"]) / payload, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=24)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hub-pgen-bench-download-"))
    try:
        results = [measure(work, args.episodes, per_file, args.shards) for per_file in (1, 4)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        print(f"{r['episodes']} episodes, {r['episodes_per_file']} a file ({r['dataset_files']} files, "
              f"{r['dataset_bytes'] / 1e6:.2f} MB), {r['shards']} shards:")
        print(f"  one machine     {r['one_machine']['total'] / 1e6:8.3f} MB  (payload ratio "
              f"{r['one_machine_payload_ratio']:.3f})")
        for i, s in enumerate(r["per_shard"]):
            print(f"  shard {i}         {s['total'] / 1e6:8.3f} MB  (data {s['data'] / 1e6:.3f}, videos "
                  f"{s['videos'] / 1e6:.3f}, meta {s['meta'] / 1e6:.3f})")
        print(f"  per shard: payload ratio max {r['shard_payload_ratio_max']:.3f}, mean "
              f"{r['shard_payload_ratio_mean']:.3f} (ideal {1 / r['shards']:.3f}); all shards together "
              f"{r['shards_payload_sum_ratio']:.3f}")
        print(f"  merge           {r['merge']['total'] / 1e6:8.3f} MB  (payload ratio {r['merge_payload_ratio']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
