"""Issue 13, part 3: ``--job FLAVOR`` runs the same command on Hugging Face Jobs. The real huggingface_hub
client talks to a loopback stand-in of the Jobs API (tests/jobs_server.py): what is sent (flavor, image,
command = the user's arguments minus the job's flags, timeout, the token only as a secret), ``--follow``
and its exit codes, and every refusal, which sends nothing."""

from __future__ import annotations

import json
import logging
import os
import signal

import huggingface_hub.constants
import pytest

from hub_pgen import __version__, jobs, jobs_api
from hub_pgen.cli import build_parser, config_from_args, main
from hub_pgen.errors import UsageError

try:
    from .jobs_server import JobsServer
except ImportError:  # run as a plain module
    from jobs_server import JobsServer

TOKEN = "hf_jobsTestTokenAbcdefghijklmnopqrstuv"
SPEC = "hub-pgen[transformers] @ git+https://github.com/someone/hub-pgen@" + "a" * 40
BASE = ["--repo-id", "lerobot/svla_so101_pickplace", "--push-to", "tester/pickplace_pgen"]


@pytest.fixture
def server(monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with JobsServer(token=TOKEN) as s:
        _point_at(monkeypatch, tmp_path, s)
        yield s


def _point_at(monkeypatch, tmp_path, s: JobsServer) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", s.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(jobs_api, "POLL_S", 0.05)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_no_token(server: JobsServer, caplog, *texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
    assert TOKEN not in caplog.text
    assert all(TOKEN not in line for line in server.access_log)
    for r in server.requests:
        body = dict(r.body or {})
        secrets = body.pop("secrets", {})
        assert TOKEN not in json.dumps(body)  # command, environment, labels: never the token
        assert set(secrets.values()) <= {TOKEN}


# --- what is sent --------------------------------------------------------------------------------


def test_the_job_gets_the_flavor_image_command_timeout_and_the_token_as_a_secret_only(server, tmp_path, capsys,
                                                                                     caplog):
    user_args = [*BASE, "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--batch-size", "8", "--sampling", "interval",
                 "--sample-interval=1.0", "--branch", "qwen"]
    rc, out, err = cli(capsys, *user_args[:4], "--job", "a10g-large", *user_args[4:8], "--output-dir",
                       str(tmp_path / "out"), "--job-timeout=90m", *user_args[8:], "--job-install", SPEC)
    assert rc == 0, err
    [sent] = server.submissions
    assert sent["flavor"] == "a10g-large"
    assert sent["dockerImage"] == jobs.IMAGE == "ghcr.io/astral-sh/uv:python3.12-bookworm"
    assert sent["command"] == ["uv", "tool", "run", "--from", SPEC, "hub-pgen", *user_args]
    assert sent["timeoutSeconds"] == 90 * 60
    assert sent["secrets"] == {"HF_TOKEN": TOKEN}
    assert sent["environment"] == {"PYTHONUNBUFFERED": "1"}
    assert sent["labels"] == {"name": "hub-pgen-tester-pickplace_pgen"}
    assert all(r.authorized for r in server.requests)
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/api/jobs/hardware"), ("GET", "/api/whoami-v2"), ("POST", "/api/jobs/tester")]
    [job_id] = server.jobs
    assert f"job {job_id} submitted: {server.url}/jobs/tester/{job_id}" in out
    assert "hf jobs logs " + job_id in out and "flavor   a10g-large" in out
    assert "--output-dir left out of the job" in err
    assert_no_token(server, caplog, out, err)


def test_the_jobs_command_is_the_local_configuration_minus_the_output_folder(server, tmp_path, capsys):
    user_args = [*BASE, "--backend", "openai", "--base-url", "https://example.org/v1", "--concurrency", "4",
                 "--scenario-mix", "negative_task=2,direct_request=1", "--seed", "7", "--format", "hirobot", "-q"]
    rc, out, err = cli(capsys, *user_args, "--job=h200", "--output-dir", str(tmp_path / "o"), "--job-install", SPEC)
    assert rc == 0, err
    assert out.strip() == f"{server.url}/jobs/tester/{next(iter(server.jobs))}"  # -q: the URL alone
    remote = server.submissions[0]["command"][6:]
    local = config_from_args(build_parser().parse_args([*user_args, "--output-dir", str(tmp_path / "o")]))
    there = config_from_args(build_parser().parse_args(remote))
    assert there == local.__class__(**{**local.__dict__, "output_dir": None})


def test_follow_streams_the_log_and_exits_0_when_the_job_completes(monkeypatch, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    lines = ("hub-pgen: 25 samples to generate", f"leaked HF_TOKEN={TOKEN}", "pushed: tester/pickplace_pgen")
    with JobsServer(token=TOKEN, log_lines=lines) as s:
        _point_at(monkeypatch, tmp_path, s)
        rc, out, err = cli(capsys, *BASE, "--job", "a10g-small", "--follow", "--job-install", SPEC, "-v")
        assert rc == 0, err
        assert "hub-pgen: 25 samples to generate" in out and "pushed: tester/pickplace_pgen" in out
        assert "leaked HF_TOKEN=***" in out  # a job that prints its secret: not passed on
        assert "===== Job started" not in out
        assert f"COMPLETED; the dataset: {s.url}/datasets/tester/pickplace_pgen" in err
        assert "--follow" not in s.submissions[0]["command"]
        assert any(r.path.endswith("/logs") for r in s.requests)
        assert_no_token(s, caplog, out, err)


@pytest.mark.parametrize("stage", ["ERROR", "CANCELED"])
def test_follow_exits_9_when_the_job_does_not_complete(stage, monkeypatch, tmp_path, capsys):
    with JobsServer(token=TOKEN, log_lines=("hub-pgen: error: boom",), final_stage=stage,
                    final_message="exit code 3") as s:
        _point_at(monkeypatch, tmp_path, s)
        rc, out, err = cli(capsys, *BASE, "--job", "a10g-small", "--follow", "--job-install", SPEC)
    assert rc == jobs.EXIT_JOB_FAILED == 9
    assert "hub-pgen: error: boom" in out
    assert f"ended {stage}: exit code 3" in err and "TIP:" in err


def test_follow_with_json_logs_to_stderr_and_the_outcome_on_stdout(monkeypatch, tmp_path, capsys):
    with JobsServer(token=TOKEN, log_lines=("line one",), final_stage="ERROR") as s:
        _point_at(monkeypatch, tmp_path, s)
        rc, out, err = cli(capsys, *BASE, "--job", "h200", "--follow", "--json", "--job-install", SPEC)
    assert rc == 9
    result = json.loads(out)
    assert result["state"] == "job-error" and result["stage"] == "ERROR" and result["exit_code"] == 9
    assert result["flavor"] == "h200" and result["secrets"] == ["HF_TOKEN"] and result["url"].endswith(result["job_id"])
    assert "--json" in result["command"]  # the job's own hub-pgen prints its result as JSON in the log too
    assert "line one" in err and "line one" not in out


def test_ctrl_c_while_following_leaves_the_job_running(server, capsys, monkeypatch):
    from huggingface_hub import HfApi

    def logs(self, **kwargs):
        yield "first line"
        os.kill(os.getpid(), signal.SIGINT)
        yield "never"

    monkeypatch.setattr(HfApi, "fetch_job_logs", logs)
    rc, out, err = cli(capsys, *BASE, "--job", "a10g-small", "--follow", "--job-install", SPEC)
    assert rc == 130
    assert "first line" in out and "never" not in out
    assert "stopped following job" in err and "hf jobs cancel" in err
    assert not any("cancel" in r.path for r in server.requests)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_dry_run_prints_the_job_and_sends_nothing(server, capsys, caplog):
    rc, out, err = cli(capsys, *BASE, "--job", "a10g-large", "--dry-run", "--job-install", SPEC)
    assert rc == 0, err
    assert server.requests == []
    assert "nothing was sent" in out and "secrets  HF_TOKEN" in out
    assert "command  uv tool run --from 'hub-pgen[transformers] @ git+https" in out
    [command] = [line for line in out.splitlines() if line.strip().startswith("command")]
    assert "--dry-run" not in command  # the command shown is the one submitted without --dry-run
    assert_no_token(server, caplog, out, err)


def test_an_openai_servers_key_goes_as_a_secret_too(server, capsys, monkeypatch, caplog):
    monkeypatch.setenv("MY_KEY", "sk-server-key-123456")
    rc, out, err = cli(capsys, *BASE, "--backend", "openai", "--base-url", "https://example.org/v1",
                       "--api-key-env", "MY_KEY", "--job", "cpu-basic", "--job-install", SPEC)
    assert rc == 0, err
    [sent] = server.submissions
    assert sent["secrets"] == {"HF_TOKEN": TOKEN, "MY_KEY": "sk-server-key-123456"}
    assert "sk-server-key" not in json.dumps(sent["command"]) + out + err


# --- refusals: a clear message, nothing sent ----------------------------------------------------


@pytest.mark.parametrize(("argv", "says"), [
    (["--repo-id", "lerobot/x", "--job", "a10g-large"], "without --push-to its result would be lost"),
    (["--root", "/data/x", "--push-to", "u/x", "--job", "a10g-large"], "--job cannot read --root /data/x"),
    (["--input-jsonl", "d.jsonl", "--push-to", "u/x", "--job", "a10g-large"], "--job cannot read --input-jsonl"),
    ([*BASE, "--retry-failed", "--job", "a10g-large"], "a job starts from an empty one"),
    ([*BASE, "--backend", "openai", "--base-url", "http://127.0.0.1:8000/v1", "--job", "t4-small"],
     "this machine's loopback"),
    ([*BASE, "--serve-command", "eng {model} --port {port}", "--model", "m/m", "--job", "t4-small"],
     "--serve-command starts an engine"),
    ([*BASE, "--job", "a10g-large", "--job-timeout", "soon"], "--job-timeout 'soon' is not a duration"),
    ([*BASE, "--job", "A10G large"], "is not a flavor name"),
    ([*BASE, "--model-revision", TOKEN, "--job", "a10g-large"], "an argument holds a secret"),
    ([*BASE, "--job", "a10g-large", "--job-install", "hub-pgen @ git+https://me:ghp_x@github.com/o/r"],
     "credentials in a --job-install URL"),
    ([*BASE, "--num-shards", "2", "--shard-index", "0", "--job", "a10g-large"], "a shard writes no dataset"),
    ([*BASE, "--follow"], "--follow only applies to a Hugging Face job"),
    ([*BASE, "--job-timeout", "1h", "--job-install", SPEC], "--job-timeout, --job-install only apply"),
])
def test_refusals_exit_2_and_send_nothing(argv, says, server, capsys, caplog):
    install = ["--job-install", SPEC] if "--job" in argv and "--job-install" not in argv else []
    rc, out, err = cli(capsys, *argv, *install)
    assert rc == 2, err
    assert says in err and "TIP:" in err
    assert server.requests == []
    assert_no_token(server, caplog, out, err)


def test_a_local_model_folder_is_refused(server, capsys, tmp_path):
    rc, _, err = cli(capsys, *BASE, "--model", str(tmp_path), "--job", "a10g-large", "--job-install", SPEC)
    assert rc == 2 and "is a folder on this machine" in err and server.requests == []


def test_no_token_is_refused_before_anything_is_sent(server, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    rc, _, err = cli(capsys, *BASE, "--job", "a10g-large", "--job-install", SPEC)
    assert rc == 2 and "no Hugging Face token here" in err and "hf auth login" in err
    assert server.requests == []


def test_a_local_install_needs_job_install(server, capsys, monkeypatch):
    monkeypatch.setattr(jobs, "_direct_url", lambda: {"url": "file:///home/me/hub-pgen", "dir_info": {"editable": True}})
    rc, _, err = cli(capsys, *BASE, "--job", "a10g-large")
    assert rc == 2 and "installed from a local folder" in err
    assert '--job-install "hub-pgen[transformers] @ git+https://' in err
    assert server.requests == []


def test_an_unknown_flavor_is_refused_from_the_hardware_list(server, capsys):
    rc, _, err = cli(capsys, *BASE, "--job", "a10g-larg", "--job-install", SPEC)
    assert rc == 2 and "has no such flavor" in err and "did you mean --job a10g-large?" in err
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/api/jobs/hardware")]
    assert server.submissions == []


def test_without_a_hardware_list_the_servers_answer_names_the_flavor(monkeypatch, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    with JobsServer(token=TOKEN, list_hardware=False) as s:
        _point_at(monkeypatch, tmp_path, s)
        rc, out, err = cli(capsys, *BASE, "--job", "a10g-huge", "--job-install", SPEC)
        assert rc == 6
        assert "the Jobs API answered 400: Invalid flavor: a10g-huge" in err
        assert "hf jobs hardware lists them" in err
        assert s.jobs == {}
        assert_no_token(s, caplog, out, err)


@pytest.mark.parametrize(("status", "hint"), [(402, "PRO account"), (403, "may not start Jobs")])
def test_a_refused_submission_is_exit_6_with_what_to_do(status, hint, monkeypatch, tmp_path, capsys):
    with JobsServer(token=TOKEN, submit_status=status) as s:
        _point_at(monkeypatch, tmp_path, s)
        rc, _, err = cli(capsys, *BASE, "--job", "a10g-large", "--job-install", SPEC)
    assert rc == 6 and f"answered {status}" in err and hint in err and TOKEN not in err


def test_a_token_the_hub_refuses_is_exit_6(server, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrongTokenAbcdefghijklmnopqrstuvwx")
    rc, _, err = cli(capsys, *BASE, "--job", "a10g-large", "--job-install", SPEC)
    assert rc == 6 and "answered 401" in err and "hf auth login" in err
    assert "hf_wrongToken" not in err and server.submissions == []


# --- where the job gets hub-pgen -----------------------------------------------------------------


def test_the_default_install_is_the_source_this_hub_pgen_came_from(monkeypatch):
    commit = "b" * 40
    monkeypatch.setattr(jobs, "_direct_url", lambda: {"url": "https://github.com/o/hub-pgen",
                                                      "vcs_info": {"vcs": "git", "commit_id": commit}})
    assert jobs.default_install("transformers", None) == [f"hub-pgen[transformers] @ git+https://github.com/o/hub-pgen@{commit}"]
    assert jobs.default_install("openai", "vllm") == [f"hub-pgen @ git+https://github.com/o/hub-pgen@{commit}", "vllm"]
    monkeypatch.setattr(jobs, "_direct_url", lambda: {"url": "https://x.org/hub_pgen-0.1.0-py3-none-any.whl",
                                                      "archive_info": {}})
    assert jobs.default_install("template", None) == ["hub-pgen @ https://x.org/hub_pgen-0.1.0-py3-none-any.whl"]
    monkeypatch.setattr(jobs, "_direct_url", lambda: None)
    monkeypatch.setattr(jobs, "installed_from_index", lambda: True)
    assert jobs.default_install("transformers", "sglang") == [f"hub-pgen[transformers]=={__version__}", "sglang"]
    monkeypatch.setattr(jobs, "_direct_url", lambda: {"url": "https://me:secret@git.example/o/r",
                                                      "vcs_info": {"vcs": "git", "commit_id": commit}})
    with pytest.raises(UsageError):  # credentials in the URL: never copied into a job's command
        jobs.default_install("transformers", None)


def test_job_install_repeats_as_with(server, capsys):
    rc, _, err = cli(capsys, *BASE, "--job", "a10g-large", "--job-install", SPEC, "--job-install", "flash-attn")
    assert rc == 0, err
    assert server.submissions[0]["command"][:8] == ["uv", "tool", "run", "--from", SPEC, "--with", "flash-attn",
                                                    "hub-pgen"]
