#!/usr/bin/env python
"""``--backend openai``: samples/s at concurrency 1 vs K, and the client's own cost per request.

Two servers, in one invocation:

- the loopback stand-in (``tests/openai_server.py``), which answers instantly: what is left is the
  client's own work per request — frames, JPEG + base64 encoding, HTTP, parsing, the journal — so
  its samples/s is the ceiling hub-pgen itself puts on any server;
- ``transformers serve`` with a tiny random Qwen2-VL on CPU (needs the ``serve`` extra): a real
  server whose model time dominates; concurrency 1 vs K shows what overlap buys on it (it handles
  requests one at a time, so little: vLLM and SGLang batch them).

Answers from the tiny model are not valid pgen JSON (it is random), which does not matter for speed:
every request is sent once (``--max-retries 0``), constrained budget 211 tokens.

    python scripts/bench_openai.py [--episodes 6] [--concurrency 8] [--no-serve] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _run(src: Path, out: Path, url: str, concurrency: int, model: str | None, batch: int) -> tuple[float, int]:
    from hub_pgen import run as runner
    from hub_pgen.config import RunConfig

    cfg = RunConfig(root=src, output_dir=out, backend="openai", base_url=url, model=model, concurrency=concurrency,
                    batch_size=batch, max_retries=0, max_new_tokens=211)
    t = time.perf_counter()
    result = runner.run(cfg)
    return time.perf_counter() - t, result.samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--no-serve", action="store_true", help="only the stand-in (no transformers serve)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from openai_server import OpenAIServer

    from hub_pgen.example import ExampleSpec, build_example_dataset

    work = Path(tempfile.mkdtemp(prefix="bench-openai-"))
    src = build_example_dataset(work / "src", ExampleSpec(n_episodes=args.episodes))
    rows = []
    n = [0]

    def measure(label: str, url: str, model: str | None) -> None:
        for k in (1, args.concurrency):
            n[0] += 1
            seconds, samples = _run(src, work / f"out{n[0]}", url, k, model, batch=max(k, 8))
            rows.append({"server": label, "concurrency": k, "samples": samples, "seconds": round(seconds, 3),
                         "samples_per_s": round(samples / seconds, 2)})

    with OpenAIServer() as stand_in:
        measure("stand-in (instant)", stand_in.url, None)

    if not args.no_serve:
        from hub_pgen.testing.tiny_qwen import tiny_model_dir

        model = tiny_model_dir(work / "models", "qwen2_vl")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(work / "serve.log", "wb")
        exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
        proc = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                                 str(model)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            import httpx

            deadline = time.time() + 120
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("transformers serve did not start: " + (work / "serve.log").read_text()[-2000:])
                time.sleep(0.25)
            measure("transformers serve (tiny, CPU)", f"http://127.0.0.1:{port}/v1", str(model))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    shutil.rmtree(work, ignore_errors=True)

    base = {r["server"]: r["samples_per_s"] for r in rows if r["concurrency"] == 1}
    for r in rows:
        r["x_concurrency_1"] = round(r["samples_per_s"] / base[r["server"]], 2)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'server':<32}{'conc.':>6}{'samples':>9}{'seconds':>9}{'samples/s':>11}{'x conc 1':>10}")
        for r in rows:
            print(f"{r['server']:<32}{r['concurrency']:>6}{r['samples']:>9}{r['seconds']:>9.2f}"
                  f"{r['samples_per_s']:>11.2f}{r['x_concurrency_1']:>10.2f}")
        inst = next(r for r in rows if r["concurrency"] == 1)
        print(f"client cost per request (instant server, concurrency 1): {1000 * inst['seconds'] / inst['samples']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
