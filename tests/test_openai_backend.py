"""Issue 10, part 2: ``--backend openai`` against a loopback OpenAI-compatible stand-in
(tests/openai_server.py): the CLI end to end, structured output and servers that ignore it, transport
faults, concurrency, the API key, a server that goes down mid-run, and resume without resending."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub_pgen import layout
from hub_pgen.cli import main
from hub_pgen.write.validate import validate

from .contract import tree_hashes

try:
    from .openai_server import OpenAIServer
except ImportError:  # run as a plain module
    from openai_server import OpenAIServer


@pytest.fixture
def server():
    with OpenAIServer() as s:
        yield s


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setenv("HUB_PGEN_RETRY_SCALE", "0.01")
    for var in ("OPENAI_API_KEY", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def openai_run(example_root: Path, out: Path, server: OpenAIServer, *extra: str) -> list[str]:
    return ["--root", str(example_root), "--output-dir", str(out), "--backend", "openai", "--base-url", server.url,
            "--batch-size", "8", *extra]


def syn(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / layout.SYN_ANNOTATIONS_PATH).read_text().splitlines()]


def test_the_cli_runs_end_to_end_against_a_server(example_root, server, tmp_path, capsys):
    before = tree_hashes(example_root)
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, *openai_run(example_root, out, server), "--json")
    assert rc == 0, err
    result = json.loads(stdout)
    assert result["ok"] == result["samples"] == 25 and result["generated"] == 25
    assert len(server.requests) == 25 and server.images_seen == 50  # two cameras a sample
    for entry in server.requests:
        body = entry["body"]
        assert body["model"] == "tiny-pgen"  # the one model the server lists
        parts = body["messages"][0]["content"]
        assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
        assert parts[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        schema = body["response_format"]["json_schema"]["schema"]
        assert len(schema["properties"]["scenario_type"]["enum"]) == 1  # the assigned type, pinned
    rows = syn(out)
    sent = {r["body"]["response_format"]["json_schema"]["schema"]["properties"]["scenario_type"]["enum"][0]
            for r in server.requests}
    assert {r["scenario_type"] for r in rows} == sent
    validate(out, source=example_root)
    assert tree_hashes(example_root) == before
    prov = json.loads((out / layout.PROVENANCE_PATH).read_text())
    assert prov["generation"]["backend"] == "openai" and prov["generation"]["model"] == "tiny-pgen"
    assert "device" not in prov["parameters"] and prov["parameters"]["concurrency"] == 16
    assert server.url not in json.dumps(prov["identity"])  # where the server is does not make the dataset


def test_a_server_that_ignores_the_schema_is_reported(example_root, server, tmp_path, capsys):
    server.mode = "ignore"
    rc, stdout, err = cli(capsys, *openai_run(example_root, tmp_path / "out", server), "--episodes", "0",
                          "--max-retries", "1")
    assert rc == 8  # nothing usable came back
    assert "were not schema-valid: does this server support response_format json_schema" in err
    from collections import Counter

    prompts = Counter(r["body"]["messages"][0]["content"][-1]["text"] for r in server.requests)
    assert prompts and set(prompts.values()) == {2}  # each sample tried twice (--max-retries 1), then failed


def test_fenced_json_is_accepted(example_root, server, tmp_path, capsys):
    server.mode = "fenced"
    rc, stdout, err = cli(capsys, *openai_run(example_root, tmp_path / "out", server), "--episodes", "0", "--json")
    assert rc == 0, err
    assert json.loads(stdout)["failed"] == 0


def test_429_500_and_dropped_connections_are_retried_per_request(example_root, server, tmp_path, capsys):
    server.script = [429, 500, "drop", 503]
    rc, stdout, err = cli(capsys, *openai_run(example_root, tmp_path / "out", server), "--episodes", "0,1",
                          "--json")
    assert rc == 0, err
    result = json.loads(stdout)
    assert result["ok"] == result["samples"] and len(server.requests) == result["samples"] + 4


def test_k_requests_are_in_flight(example_root, server, tmp_path, capsys):
    server.delay = 0.3
    rc, _, err = cli(capsys, *openai_run(example_root, tmp_path / "out", server), "--episodes", "0,1",
                     "--concurrency", "4")
    assert rc == 0, err
    assert server.max_in_flight == 4


def test_concurrency_does_not_wait_on_the_batch_size(example_root, server, tmp_path, capsys):
    """--batch-size is the in-process model's knob; for a server, --concurrency alone sets what is in flight."""
    server.delay = 0.3
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(tmp_path / "out"), "--base-url",
                     server.url, "--episodes", "0,1", "--concurrency", "4")
    assert rc == 0, err
    assert server.max_in_flight == 4


def test_a_wrong_url_stops_before_anything_is_written(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--base-url",
                     "http://127.0.0.1:9/v1", "--model", "m")
    assert rc == 6 and "cannot reach http://127.0.0.1:9/v1/models" in err
    assert not out.exists() and not out.with_name("out.partial").exists()


def test_the_api_key_is_sent_never_written(example_root, server, tmp_path, capsys, monkeypatch):
    server.api_key = "sk-test-0123456789"
    rc, _, err = cli(capsys, *openai_run(example_root, tmp_path / "no-key", server), "--episodes", "0")
    assert rc == 6 and "refused the API key" in err and "OPENAI_API_KEY" in err
    monkeypatch.setenv("PGEN_KEY", "sk-test-0123456789")
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, *openai_run(example_root, out, server), "--episodes", "0",
                          "--api-key-env", "PGEN_KEY")
    assert rc == 0, err
    assert "sk-test" not in stdout + err
    assert all(b"sk-test" not in p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_usage_mistakes_stop_before_anything_is_written(example_root, server, tmp_path, capsys):
    out = tmp_path / "new" / "out"
    cases = [
        (["--backend", "openai"], 2, "--base-url"),
        (["--backend", "openai", "--base-url", server.url, "--api-key-env", "NO_SUCH_VAR_X"], 2, "NO_SUCH_VAR_X"),
        (["--backend", "openai", "--base-url", "localhost:8000"], 2, "http(s) URL"),
        (["--backend", "openai", "--base-url", server.url, "--concurrency", "0"], 2, "--concurrency"),
    ]
    for extra, code, fragment in cases:
        rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), *extra)
        assert rc == code and fragment in err, (extra, err)
    server.models = ["a", "b"]
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "openai",
                     "--base-url", server.url)
    assert rc == 2 and "serves 2 models (a, b)" in err
    assert not (tmp_path / "new").exists() and server.requests == []


def test_a_server_that_goes_down_stops_the_run_and_the_rerun_sends_only_what_is_missing(
        example_root, server, tmp_path, capsys):
    out = tmp_path / "out"
    args = openai_run(example_root, out, server, "--batch-size", "5", "--concurrency", "1", "--json")
    server.script = [200] * 5 + ["drop"] * 20  # the first batch lands, then the server is gone
    rc, stdout, err = cli(capsys, *args)
    assert rc == 6 and "cannot reach" in err and "after 6 tries" in err
    assert json.loads(stdout)["exit_code"] == 6
    journal = (out.with_name("out.partial") / "journal.jsonl").read_text().splitlines()
    assert len(journal) == 5
    server.reset()
    server.script = []
    rc, stdout, err = cli(capsys, *args)
    assert rc == 0, err
    assert json.loads(stdout)["resumed"] == 5 and len(server.requests) == 20  # 25 - 5: nothing sent twice


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_is_byte_identical_and_sends_nothing_twice(example_root, server, tmp_path):
    def run(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hub_pgen", *openai_run(example_root, out, server,
                                                                              "--batch-size", "4", "--concurrency",
                                                                              "4", "-q")],
                              capture_output=True, text=True, env={**os.environ, **env}, timeout=300)

    reference = tmp_path / "ref"
    assert run(reference, {}).returncode == 0
    server.settle()  # (a client's requests are logged by the server's threads: let them all land first)
    server.reset()
    out = tmp_path / "out"
    killed = run(out, {"HUB_PGEN_KILL_AT": "journal:3"})
    assert killed.returncode == -9
    kept = (out.with_name("out.partial") / "journal.jsonl").read_text().splitlines()
    assert len(kept) == 3  # the stream journals each answer as it comes: killed after the third
    server.settle()  # a request cut short by the kill is logged late (a 400, no body): not the rerun's
    assert 3 <= len([r for r in server.requests if r["body"] is not None]) <= 3 + 4  # and at most
    server.reset()  # --concurrency more were in flight (lost)
    again = run(out, {})
    assert again.returncode == 0, again.stderr
    assert len(server.requests) == 25 - 3  # only what the journal lacked
    for rel in ("meta/tasks.parquet", "meta/info.json", "meta/stats.json", "data/chunk-000/file-000.parquet",
                "data/chunk-000/file-001.parquet", layout.SYN_ANNOTATIONS_PATH):
        assert (out / rel).read_bytes() == (reference / rel).read_bytes(), rel


BLOCK_MODEL_STACK = """
import sys
# as if not installed: `import torch` fails, importlib.util.find_spec("torch") is None
for name in ("torch", "torchvision", "transformers", "accelerate", "xgrammar"):
    sys.modules[name] = None
"""


def test_without_torch_or_transformers_openai_works_and_transformers_names_its_extra(example_root, server,
                                                                                      tmp_path):
    """As after `pip install hub-pgen` (no extra): the model stack cannot be imported at all."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_MODEL_STACK)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "HUB_PGEN_RETRY_SCALE": "0.01"}
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('torch'))"],
                           capture_output=True, text=True, env=env)
    assert probe.stdout.strip() == "None", probe  # the blocker works
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "hub_pgen", *openai_run(example_root, out, server), "--episodes", "0,1",
                        "-q"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    validate(out, source=example_root)
    p = subprocess.run([sys.executable, "-m", "hub_pgen", "--root", str(example_root), "--output-dir",
                        str(tmp_path / "t"), "--model", "Qwen/Qwen2.5-VL-7B-Instruct"], capture_output=True,
                       text=True, env=env, timeout=300)
    from hub_pgen.install import pip_install

    # this checkout was installed editable (as the README does): the TIP installs the extra from it
    assert p.returncode == 5 and pip_install("transformers") in p.stderr and "-e " in p.stderr, p.stderr
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.partial").exists()
