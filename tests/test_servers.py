"""Issue 10, part 3: servers hub-pgen starts itself (``--serve-command``; ``--serve vllm|sglang`` are
presets of it), with the loopback stand-in (tests/openai_server.py) run as a server process: free
ports, the health wait, a server that dies at start (its log quoted), round robin over two servers,
and no process left behind — after success, after Ctrl-C, and after hub-pgen is killed with -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub_pgen.cli import main
from hub_pgen.write.validate import validate

STAND_IN = Path(__file__).resolve().parent / "openai_server.py"


def command(pid_file: Path, *extra: str) -> str:
    return " ".join([sys.executable, str(STAND_IN), "--port", "{port}", "--model", "{model}", "--pid-file",
                     str(pid_file), *extra])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def pids(pid_file: Path) -> list[int]:
    return [int(x) for x in pid_file.read_text().split()] if pid_file.is_file() else []


def wait_dead(pid_list: list[int], timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pid_list):
        time.sleep(0.1)
    return [p for p in pid_list if alive(p)]


def run_args(example_root: Path, out: Path, serve_command: str, *extra: str) -> list[str]:
    return ["--root", str(example_root), "--output-dir", str(out), "--serve-command", serve_command,
            "--model", "tiny-pgen", "--batch-size", "8", *extra]


def test_two_started_servers_share_the_work_and_are_stopped(example_root, tmp_path, capsys):
    pid_file = tmp_path / "pids"
    out = tmp_path / "out"
    capsys.readouterr()
    rc = main(run_args(example_root, out, command(pid_file), "--num-servers", "2", "--json"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert json.loads(captured.out)["ok"] == 25
    validate(out, source=example_root)
    started = pids(pid_file)
    assert len(started) == 2 and wait_dead(started) == []  # stopped when the run ended
    runtime = json.loads((out / "meta/hub_pgen.json").read_text())["generation"]["backend_details"]["runtime"]
    # by least outstanding: two like servers share the work (a slow one gets less: test_stream_passes.py)
    assert runtime["servers"] == 2 and sum(runtime["requests_per_server"]) == 25
    assert min(runtime["requests_per_server"]) >= 5
    assert not out.with_name("out.partial").exists()


def test_a_server_that_dies_at_start_is_quoted_and_nothing_is_generated(example_root, tmp_path, capsys):
    pid_file = tmp_path / "pids"
    out = tmp_path / "out"
    capsys.readouterr()
    rc = main(run_args(example_root, out, command(pid_file, "--die-at-start")))
    err = capsys.readouterr().err
    assert rc == 6, err
    assert "exited with code 3 before it was ready" in err and "CUDA out of memory while loading" in err
    assert not out.exists() and not (out.with_name("out.partial") / "run.json").exists()
    assert wait_dead(pids(pid_file)) == []


def test_a_server_that_never_answers_times_out_with_its_log(example_root, tmp_path, capsys):
    pid_file = tmp_path / "pids"
    capsys.readouterr()
    rc = main(run_args(example_root, tmp_path / "out", command(pid_file, "--startup-delay", "60"),
                       "--serve-timeout", "1.5"))
    err = capsys.readouterr().err
    assert rc == 6 and "did not answer within 1.5 s" in err and "loading tiny-pgen" in err
    assert wait_dead(pids(pid_file)) == []


def test_usage_mistakes(example_root, tmp_path, capsys):
    for extra, fragment in ((["--serve-command", "x --no-port", "--model", "m"], "has no {port}"),
                            (["--serve", "vllm"], "--serve needs --model"),
                            (["--serve", "vllm", "--model", "m", "--base-url", "http://h/v1"], "not both"),
                            (["--serve", "vllm", "--model", "m", "--backend", "transformers"], "--backend openai")):
        capsys.readouterr()
        rc = main(["--root", str(example_root), "--output-dir", str(tmp_path / "o"), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and fragment in err, (extra, err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_no_server_outlives_hub_pgen(example_root, tmp_path, how):
    """Ctrl-C: hub-pgen stops its servers on the way out. kill -9: the kernel tells them (PDEATHSIG)."""
    pid_file = tmp_path / "pids"
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "hub_pgen",
                             *run_args(example_root, out, command(pid_file), "--num-servers", "2", "--batch-size",
                                       "1", "--concurrency", "1", "-q")],
                            env={**os.environ, "HUB_PGEN_DELAY_AT": "journal:0.5"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out.with_name("out.partial") / "journal.jsonl"
    deadline = time.monotonic() + 60
    while not (journal.is_file() and journal.read_text().count("\n") >= 2):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    started = pids(pid_file)
    assert len(started) == 2 and all(alive(p) for p in started)
    proc.send_signal(signal.SIGINT if how == "SIGINT" else signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if how == "SIGINT" else -9), err
    assert wait_dead(started) == [], f"servers outlived hub-pgen after {how}"
    # and the rerun resumes with fresh servers
    rerun = subprocess.run([sys.executable, "-m", "hub_pgen", *run_args(example_root, out, command(pid_file),
                                                                         "--num-servers", "2", "-q")],
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert wait_dead(pids(pid_file)) == []


def test_the_resume_hint_can_be_pasted_back(capsys):
    from hub_pgen.cli import _guarded

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert _guarded(interrupted, ["--root", "d", "--serve-command", "engine {model} --port {port}"]) == 130
    assert "hub-pgen --root d --serve-command 'engine {model} --port {port}'" in capsys.readouterr().err


def test_server_counts_are_checked_before_anything_happens(example_root, tmp_path, capsys):
    for extra, fragment in ((["--num-servers", "0"], "--num-servers"), (["--gpus-per-server", "0"], "--gpus-per-server"),
                            (["--serve-timeout", "0"], "--serve-timeout")):
        capsys.readouterr()
        rc = main(["--root", str(example_root), "--output-dir", str(tmp_path / "o"), "--serve", "vllm", "--model", "m",
                   *extra])
        err = capsys.readouterr().err
        assert rc == 2 and fragment in err, (extra, err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()
