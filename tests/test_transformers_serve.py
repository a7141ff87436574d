"""``--backend openai`` against a real OpenAI-compatible server on loopback: ``transformers serve``
(the ``serve`` extra, installed by the test command) with a tiny random Qwen2-VL on CPU.

What a real server shows that the stand-in cannot: the request body hub-pgen sends is accepted
(base64 JPEG images, the JSON-schema ``response_format``, ``max_tokens``), the images reach the model,
and a server that ignores ``response_format`` (this one does: it logs "Ignoring unsupported fields")
is caught by validation and reported. A random tiny model never writes the pgen JSON by itself, so
every answer is recorded as a failure with its raw text (exit 8: written, not pushed); the output
still validates and loads in lerobot."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub_pgen import layout
from hub_pgen.cli import main
from hub_pgen.testing.tiny_qwen import tiny_model_dir
from hub_pgen.write.validate import validate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import httpx

    model = tiny_model_dir(tmp_path_factory.mktemp("models"), "qwen2_vl")
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    assert exe, "the transformers CLI is missing: the test command installs hub-pgen[test] (serve extra)"
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                                 str(model)], stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/v1", model, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_openai_backend_against_transformers_serve(served, example_root, tmp_path, capsys):
    url, model, log = served
    out = tmp_path / "out"
    capsys.readouterr()
    rc = main(["--root", str(example_root), "--output-dir", str(out), "--backend", "openai", "--base-url", url,
               "--model", str(model), "--episodes", "0", "--max-new-tokens", "211", "--max-retries", "0",
               "--concurrency", "2"])
    err = capsys.readouterr().err
    assert rc == 8, err  # a random model: no answer is the pgen JSON
    assert "not schema-valid: does this server support response_format json_schema" in err
    rows = [json.loads(x) for x in (out / layout.SYN_ANNOTATIONS_PATH).read_text().splitlines()]
    assert rows and all(r["status"] == "failed" and r["raw_text"] for r in rows)  # answers recorded
    assert "Ignoring unsupported fields" in log.read_text()  # the server itself says it dropped the schema
    validate(out, source=example_root)
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/served", root=out, video_backend="pyav")
    assert int(ds[0]["task_index_high_level"]) == -1
