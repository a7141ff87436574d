"""Issue 20, hostile input round 3: servers, commands and jobs. A crafted loopback server (below) or
the Jobs stand-in (tests/jobs_server.py) answers what a hostile or broken server would, and hub-pgen
must exit with a clear message (2 before anything starts, 6 for a server), never 70, never hang,
never hand a token to a host it was not meant for, and never record a secret or a local path.

1. ``--serve-command`` is split first, then filled: ``--model`` cannot add flags; bad templates exit 2.
2. What is recorded of a command (provenance, card, review page, server log, Jobs summary) is redacted.
3. ``HF_TOKEN`` goes to Hugging Face hosts only; no redirect is followed (the key goes nowhere else).
4. One deadline bounds a whole request (a dripping server); bodies are capped.
5. ``/models`` answers that are not a model list: exit 6.
6. Jobs answers that cannot be read after a submission: exit 6, "may have been submitted", where to look.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest

from hub_pgen import jobs_api, layout
from hub_pgen.cli import main
from hub_pgen.errors import ServerError, UsageError
from hub_pgen.generate import transport
from hub_pgen.generate.keys import api_key, sends_hub_token
from hub_pgen.generate.openai import OpenAIOptions, _client, served_models
from hub_pgen.generate.servers import ServeOptions
from hub_pgen.redact import printable, redact_argv, redact_command, redact_text

from .jobs_server import JobsServer
from .loopback import LoopbackServer, QuietHandler
from .openai_server import OpenAIServer

STAND_IN = Path(__file__).resolve().parent / "openai_server.py"
SERVER_KEY = "sk-servekey0123456789abcdef"
HUB_TOKEN = "hf_hostileTestTokenAbcdefghijklmnop"


@pytest.fixture(autouse=True)
def quiet_env(monkeypatch):
    monkeypatch.setenv("HUB_PGEN_RETRY_SCALE", "0.01")
    for var in ("OPENAI_API_KEY", "HF_TOKEN", "HF_ENDPOINT", "MY_KEY"):
        monkeypatch.delenv(var, raising=False)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def nothing_left(out: Path) -> bool:
    return not out.exists() and not out.with_name(out.name + ".partial").exists()


# --- a crafted server -----------------------------------------------------------------------------


class Crafted(LoopbackServer):
    """A loopback HTTP server whose answers a test writes byte by byte: ``behave(handler, method, path)``.
    Every request is kept in :attr:`seen` (method, path, its Authorization header)."""

    def __init__(self, behave: Callable[[Any, str, str], None]) -> None:
        self.behave = behave
        self.seen: list[dict[str, Any]] = []

    def __enter__(self) -> Crafted:
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

        self.serve(Handler, name="crafted-server")
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _handle(self, h: Any, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        self.seen.append({"method": method, "path": h.path, "authorization": h.headers.get("Authorization"),
                          "body": json.loads(body) if body else None})
        try:
            self.behave(h, method, h.path)
        except (BrokenPipeError, ConnectionResetError):  # the client went away: what a bound looks like
            h.close_connection = True

    @property
    def url(self) -> str:
        return self.address + "/v1"


def send(h: Any, status: int, body: bytes | Any, headers: dict[str, str] | None = None,
         length: int | None = None) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data) if length is None else length))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)
    h.wfile.flush()


def drip(h: Any, data: bytes, every: float = 0.05, at_most: float = 20.0) -> None:
    """``data`` one byte every ``every`` seconds (for ``at_most`` seconds), as a slowloris server does."""
    end = time.monotonic() + at_most
    for i in range(len(data)):
        if time.monotonic() > end:
            break
        h.wfile.write(data[i:i + 1])
        h.wfile.flush()
        time.sleep(every)
    h.close_connection = True


def models(h: Any, ids=("m",)) -> None:
    send(h, 200, {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})


_ANSWERER = OpenAIServer(models=["m"])


def completion(h: Any, request: dict[str, Any], model: str | None = None) -> None:
    """A schema-valid chat completion (tests/openai_server.py's answer) naming ``model``."""
    send(h, 200, {"id": "c", "object": "chat.completion", "model": model or request.get("model"),
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": _ANSWERER.answer(request)},
                               "finish_reason": "stop"}]})


def normal(crafted: Crafted, model: str | None = None) -> Callable[[Any, str, str], None]:
    """Answers as a working server would (the answer may name another ``model``)."""
    def behave(h: Any, method: str, path: str) -> None:
        if path.endswith("/models"):
            return models(h)
        return completion(h, crafted.seen[-1]["body"] or {}, model)

    return behave


def run_args(example_root: Path, out: Path, base_url: str, *extra: str) -> list[str]:
    return ["--root", str(example_root), "--output-dir", str(out), "--backend", "openai", "--base-url", base_url,
            "--episodes", "0", "--max-retries", "0", *extra]


# === 1. --serve-command: split first, then fill =====================================================


def test_a_model_with_flags_and_quotes_stays_one_argument():
    opts = ServeOptions(command="vllm serve {model} --port {port} --tp {gpus_per_server}",
                        model="m --trust-remote-code 'x\" y", gpus_per_server=2)
    assert opts.argv(8000) == ["vllm", "serve", "m --trust-remote-code 'x\" y", "--port", "8000", "--tp", "2"]
    # placeholders inside an argument, and literal braces
    opts = ServeOptions(command="eng --model-path={model} --port {port} --json '{{\"a\": 1}}'", model="a b")
    assert opts.argv(1) == ["eng", "--model-path=a b", "--port", "1", "--json", '{"a": 1}']


def test_a_started_server_gets_the_model_as_one_argument(example_root, tmp_path, capsys):
    """End to end: the stand-in server, started by --serve-command, records its own argv."""
    model = "it's a \"model\" --trust-remote-code"
    argv_file = tmp_path / "argv.json"
    command = f"{sys.executable} {STAND_IN} --port {{port}} --model {{model}} --argv-file {argv_file}"
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--serve-command", command,
                          "--model", model, "--episodes", "0", "--json")
    assert rc == 0, err
    got = json.loads(argv_file.read_text())
    assert got[got.index("--model") + 1] == model and "--trust-remote-code" not in got
    assert json.loads(stdout)["ok"] >= 1


@pytest.mark.parametrize(("template", "says"), [
    ("eng {model} --port {port} --x {foo}", "{foo} is not a placeholder hub-pgen knows"),
    ("eng {model} --port {port:d}", "the placeholder {port:d} has a format spec or conversion"),
    ("eng {model!r} --port {port}", "the placeholder {model!r} has a format spec or conversion"),
    ("eng {model.__class__} --port {port}", "{model.__class__} takes no attribute or index"),
    ("eng {model[0]} --port {port}", "{model[0]} takes no attribute or index"),
    ("eng {} --port {port}", "{} is not a placeholder hub-pgen knows"),
    ("eng '{model} --port {port}", "cannot be split into arguments: No closing quotation"),
    ("eng {model --port {port}", "has a lone brace"),
    ("eng {model} --port {port} }", "has a lone brace"),
    ("   ", "--serve-command is empty"),
])
def test_a_bad_template_exits_2_before_anything_starts(template, says, example_root, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--serve-command", template,
                     "--model", "m")
    assert rc == 2, err
    assert says in err and "TIP:" in err
    if "{" in says and "lone" not in says:
        assert "{model}, {port}, {gpus_per_server}" in err  # the known ones are named
    assert nothing_left(out) and not (tmp_path / "out.partial").exists()


def test_a_model_that_looks_like_a_flag_is_refused_for_a_started_server(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--serve", "vllm",
                     "--model=--trust-remote-code")
    assert rc == 2 and "would read it as a flag" in err and nothing_left(out)


# === 2. what is recorded of a command is redacted =====================================================


@pytest.mark.parametrize(("argv", "shown"), [
    (["vllm", "serve", "m", "--api-key", SERVER_KEY], ["vllm", "serve", "m", "--api-key", "***"]),
    (["eng", "--hf-token=" + HUB_TOKEN, "--api-key-env", "MY_KEY"], ["eng", "--hf-token=***", "--api-key-env", "MY_KEY"]),
    (["env", "HF_TOKEN=abc", "AUTH=x", "PATH=/usr/bin"], ["env", "HF_TOKEN=***", "AUTH=***", "PATH=…/bin"]),
    (["eng", "--model", HUB_TOKEN], ["eng", "--model", "hf_***"]),
    (["eng", "ghp_" + "a" * 36, "github_pat_" + "b" * 30], ["eng", "ghp_***", "github_pat_***"]),
    (["curl", "-H", "Authorization: Bearer abc.def"], ["curl", "-H", "Authorization: Bearer ***"]),
    (["eng", "--url", "https://me:pw@h.example/v1?access_token=zz&x=1"],
     ["eng", "--url", "https://***@h.example/v1?access_token=***&x=1"]),
    (["/home/me/venv/bin/vllm", "--chat-template", "~/t/chat.jinja", "--cfg=/etc/x.yaml", "file:///srv/m/q"],
     ["…/vllm", "--chat-template", "…/chat.jinja", "--cfg=…/x.yaml", "…/q"]),
    # kept: relative paths, placeholders, flags that merely look alike
    (["./eng", "{model}", "--port", "{port}", "--image-keys", "a,b", "--max-num-batched-tokens", "8192",
      "--no-auth", "--tokenizer", "t"],
     ["./eng", "{model}", "--port", "{port}", "--image-keys", "a,b", "--max-num-batched-tokens", "8192",
      "--no-auth", "--tokenizer", "t"]),
])
def test_the_redaction_rule(argv, shown):
    assert redact_argv(argv) == shown
    assert redact_argv(shown) == shown  # twice is once


def test_redaction_keeps_a_template_a_template():
    cmd = "/opt/v/bin/vllm serve {model} --port {port} --api-key " + SERVER_KEY
    assert redact_command(cmd) == "…/vllm serve {model} --port {port} --api-key ***"
    assert redact_command("vllm serve {model} --port {port}") == "vllm serve {model} --port {port}"
    ServeOptions(command=redact_command(cmd), model="m")  # still a valid template (a merge rebuilds it)


def test_a_secret_or_a_path_in_serve_command_reaches_no_written_file(example_root, tmp_path, capsys, monkeypatch):
    """The key (vllm's --api-key), a token in an env assignment and the disk layout of --serve-command:
    the server gets them as given; the provenance, card and review page show them redacted."""
    monkeypatch.setenv("OPENAI_API_KEY", SERVER_KEY)  # what hub-pgen sends to the server it started
    pid_file = tmp_path / "secret-place" / "pids"
    pid_file.parent.mkdir()
    command = (f"env HF_TOKEN={HUB_TOKEN} {sys.executable} {STAND_IN} --port {{port}} --model {{model}} "
               f"--pid-file {pid_file} --api-key {SERVER_KEY}")
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--serve-command", command,
                          "--model", "tiny-pgen", "--episodes", "0", "-v")
    assert rc == 0, err
    assert pid_file.is_file()  # the command ran as given: the real path, and the key the server required
    prov = json.loads((out / layout.PROVENANCE_PATH).read_text())
    recorded = prov["parameters"]["serve_command"]
    assert recorded == (f"env HF_TOKEN=*** …/{Path(sys.executable).name} …/openai_server.py --port {{port}} "
                        "--model {model} --pid-file …/pids --api-key ***")
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".html", ".jsonl"):
            text = path.read_text(errors="replace")
            for secret in (SERVER_KEY, HUB_TOKEN, str(tmp_path), str(Path(sys.executable).parent)):
                assert secret not in text, (path, secret)
    assert "--api-key ***" in (out / layout.CARD_PATH).read_text()
    assert "--api-key ***" in (out / layout.REPORT_PATH).read_text()
    assert SERVER_KEY not in stdout + err and HUB_TOKEN not in stdout + err


def test_a_server_that_fails_to_start_is_quoted_redacted(example_root, tmp_path, capsys):
    command = f"{sys.executable} {STAND_IN} --port {{port}} --model {{model}} --die-at-start --api-key {SERVER_KEY}"
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--serve-command", command,
                     "--model", "m")
    assert rc == 6 and "exited with code 3" in err
    log = (tmp_path / "out.partial" / "servers" / "server-0.log").read_text()
    assert log.startswith("$ …/") and "--api-key ***" in log and SERVER_KEY not in log + err


def test_the_jobs_summary_and_record_are_redacted_and_a_token_shape_is_refused(tmp_path, capsys, monkeypatch):
    spec = "hub-pgen @ git+https://github.com/someone/hub-pgen@" + "a" * 40
    with JobsServer(token=HUB_TOKEN) as s:
        _point_jobs_at(monkeypatch, tmp_path, s)
        base = ["--repo-id", "lerobot/x", "--push-to", "tester/x_pgen", "--job", "cpu-basic", "--job-install", spec]
        rc, _, err = cli(capsys, *base, "--model-revision", "sk-" + "z" * 30)
        assert rc == 2 and "shaped like a token" in err and s.requests == []
        rc, _, err = cli(capsys, *base, "--base-url", "https://x.example/v1?api_key=zzz", "--backend", "openai")
        assert rc == 2 and "shaped like a token" in err and s.requests == []
        rc, out, err = cli(capsys, *base, "--json", "--dry-run", "--skills-file", str(tmp_path / "skills.json"))
        assert rc == 0, err
        shown = json.loads(out)
        assert shown["command"][-2:] == ["--skills-file", "…/skills.json"] and str(tmp_path) not in out


# === 3. the Hub token goes to Hugging Face only; no redirect is followed =============================


@pytest.mark.parametrize(("url", "sent"), [
    ("https://huggingface.co/v1", True), ("https://router.huggingface.co/v1", True),
    ("https://api-inference.huggingface.co/models/x", True), ("https://hf.co/v1", True),
    ("https://me-demo.hf.space/v1", True), ("https://x1.us-east-1.aws.endpoints.huggingface.cloud/v1", True),
    ("https://HuggingFace.co./v1", True),
    ("http://huggingface.co/v1", False),  # not over plain http
    ("https://huggingface.co.evil.example/v1", False), ("https://evilhuggingface.co/v1", False),
    ("https://evil.example/huggingface.co", False), ("https://huggingface.co@evil.example/v1", False),
    ("https://endpoints.huggingface.cloud.evil.example/v1", False), ("http://127.0.0.1:8000/v1", False),
])
def test_which_hosts_get_the_hub_token(url, sent):
    assert sends_hub_token(url) is sent


def test_hf_endpoint_s_host_gets_the_token(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:5000")
    assert sends_hub_token("http://127.0.0.1:5000/v1") and not sends_hub_token("http://127.0.0.1:5001/v1")
    assert not sends_hub_token("https://127.0.0.1:5000/v1")


def test_the_hub_token_is_not_sent_to_another_server(example_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    with Crafted(lambda h, m, p: None) as srv:
        srv.behave = normal(srv)
        rc, _, err = cli(capsys, *run_args(example_root, tmp_path / "out", srv.url))
        assert rc == 0, err
        assert srv.seen and all(r["authorization"] is None for r in srv.seen)
        # named on purpose: sent
        rc, _, err = cli(capsys, *run_args(example_root, tmp_path / "named", srv.url), "--api-key-env", "HF_TOKEN")
        assert rc == 0, err
        assert srv.seen[-1]["authorization"] == f"Bearer {HUB_TOKEN}"
        # HF_ENDPOINT's own host: sent
        srv.seen.clear()
        monkeypatch.setenv("HF_ENDPOINT", srv.address)
        assert api_key(None, srv.url) == HUB_TOKEN
    assert api_key(None, "https://x.example/v1") is None and api_key(None) is None


def test_a_server_that_refuses_a_withheld_token_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    with Crafted(lambda h, m, p: send(h, 401, {"error": {"message": "no key"}})) as srv:
        with pytest.raises(ServerError) as e:
            served_models(srv.url, timeout=5)
    assert "refused the API key" in str(e.value) and "HF_TOKEN is set but was not sent" in e.value.hint
    assert "--api-key-env HF_TOKEN" in e.value.hint


def test_a_redirect_carries_the_key_nowhere(example_root, tmp_path, capsys, monkeypatch):
    """Server A redirects to server B (another port, another host name): B never sees the key; the run
    stops with exit 6 before anything is written."""
    monkeypatch.setenv("OPENAI_API_KEY", SERVER_KEY)
    with Crafted(lambda h, m, p: models(h)) as b:
        target = f"http://localhost:{b.address.rsplit(':', 1)[1]}"
        with Crafted(lambda h, m, p: send(h, 307, b"", {"Location": target + p})) as a:
            out = tmp_path / "out"
            rc, _, err = cli(capsys, *run_args(example_root, out, a.url, "--model", "m"))
            assert rc == 6, err
            assert "answered a redirect (HTTP 307 to http://localhost:" in err and "follows no redirect" in err
            assert a.seen[0]["authorization"] == f"Bearer {SERVER_KEY}"  # the server asked for: yes
            assert all(r["authorization"] is None for r in b.seen)  # any other: never
            assert nothing_left(out)


def test_a_redirect_loop_stops_at_once(tmp_path):
    with Crafted(lambda h, m, p: send(h, 302, b"", {"Location": p})) as srv:
        t0 = time.monotonic()
        with pytest.raises(ServerError, match="answered a redirect"):
            served_models(srv.url, timeout=5)
        assert len(srv.seen) == 1 and time.monotonic() - t0 < 5


# === 4. one deadline a request; bodies capped =========================================================


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_dripping_server_cannot_hold_a_request(where, tmp_path):
    """A byte every 50 ms never trips a read timeout; the whole-request deadline (0.4 s here) does."""
    def behave(h: Any, method: str, path: str) -> None:
        if where == "headers":
            drip(h, HEAD + b"{" * 40)
        else:
            h.wfile.write(HEAD)
            h.wfile.flush()
            drip(h, b"{" * 40)

    with Crafted(behave) as srv:
        t0 = time.monotonic()
        with pytest.raises(ServerError) as e:
            served_models(srv.url, timeout=0.4)
        took = time.monotonic() - t0
    assert "after 6 tries" in str(e.value) and "took longer than 0.4 s" in str(e.value)
    assert "raise --request-timeout" in e.value.hint
    assert len(srv.seen) == 6  # each a failed try, retried per the policy
    assert took < 6 * 0.4 + 4, took  # 6 tries of 0.4 s (+ backoff), not 6 x 40 bytes x 50 ms


def test_a_dripping_chat_server_stops_the_run_with_exit_6(example_root, tmp_path, capsys):
    def behave(h: Any, method: str, path: str) -> None:
        if path.endswith("/models"):
            return models(h)
        drip(h, HEAD + b"{" * 40)

    with Crafted(behave) as srv:
        t0 = time.monotonic()
        rc, _, err = cli(capsys, *run_args(example_root, tmp_path / "out", srv.url, "--request-timeout", "0.5"))
        assert rc == 6 and "took longer than 0.5 s" in err and "raise --request-timeout" in err
        assert time.monotonic() - t0 < 20


def test_the_deadline_bounds_a_slow_reader_too():
    """The request's body is sent in pieces, each within the deadline: a server that does not read
    cannot stall the send."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    client = transport.make_client(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
    assert client.hub_pgen_bounded
    import httpx

    t0 = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        transport.fetch(client, "POST", "x", json_body={"a": "b" * (64 << 20)}, timeout=0.5)
    assert time.monotonic() - t0 < 5
    client.close()
    listener.close()
    for s in accepted:
        s.close()


def test_a_huge_model_list_is_refused_not_read(tmp_path):
    sent: list[int] = []

    def behave(h: Any, method: str, path: str) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(10 << 30))  # 10 GiB announced
        h.end_headers()
        h.wfile.write(b'{"data": [')
        h.wfile.flush()
        time.sleep(3)  # and never more: a client that waits for it hangs
        sent.append(1)

    with Crafted(behave) as srv:
        t0 = time.monotonic()
        with pytest.raises(ServerError, match="larger than 8 MiB; not read"):
            served_models(srv.url, timeout=30)
        assert time.monotonic() - t0 < 2


def test_a_10_mb_error_body_is_cut_and_the_try_retried(tmp_path):
    big = b"x" * (10 << 20)

    def behave(h: Any, method: str, path: str) -> None:
        send(h, 503, big)

    with Crafted(behave) as srv:
        with pytest.raises(ServerError) as e:
            served_models(srv.url, timeout=10)
    assert "after 6 tries" in str(e.value) and "HTTP 503" in str(e.value)
    assert len(str(e.value)) < 1000  # the detail is its first 300 characters


def test_a_10_mb_chat_answer_is_a_failed_sample_not_a_crash(example_root, tmp_path, capsys):
    def behave(h: Any, method: str, path: str) -> None:
        if path.endswith("/models"):
            return models(h)
        send(h, 200, {"choices": [{"message": {"content": "x" * (10 << 20)}}]})

    with Crafted(behave) as srv:
        rc, _, err = cli(capsys, *run_args(example_root, tmp_path / "out", srv.url, "--json"))
    assert rc == 8, err  # every sample failed, recorded
    failures = [json.loads(line) for line in (tmp_path / "out" / layout.SYN_ANNOTATIONS_PATH).read_text().splitlines()]
    assert failures and all("larger than 8 MiB" in (r.get("error") or "") for r in failures)


def test_an_answer_longer_than_the_token_budget_is_not_parsed(example_root, tmp_path, capsys):
    def behave(h: Any, method: str, path: str) -> None:
        if path.endswith("/models"):
            return models(h)
        send(h, 200, {"choices": [{"message": {"content": "{" * (1 << 20)}}]})

    with Crafted(behave) as srv:
        rc, _, err = cli(capsys, *run_args(example_root, tmp_path / "out", srv.url))
    assert rc == 8, err
    assert "what --max-new-tokens allows): not parsed" in (tmp_path / "out" / layout.SYN_ANNOTATIONS_PATH).read_text()


@pytest.mark.parametrize("lie", ["short", "long"])
def test_a_content_length_lie(lie, tmp_path):
    """Longer than the body (then the connection closes): a broken try, retried. Shorter: the JSON is
    cut, which is an answer that is not JSON."""
    body = json.dumps({"data": [{"id": "m"}]}).encode()

    def behave(h: Any, method: str, path: str) -> None:
        send(h, 200, body, length=len(body) + 1000 if lie == "short" else 5)
        h.close_connection = True

    with Crafted(behave) as srv:
        with pytest.raises(ServerError) as e:
            served_models(srv.url, timeout=5)
    assert ("after 6 tries" if lie == "short" else "not JSON") in str(e.value)


def test_a_chat_answer_from_another_model_is_noted(example_root, tmp_path, capsys):
    with Crafted(lambda h, m, p: None) as srv:
        srv.behave = normal(srv, model="other-model\x1b[2J")
        rc, _, err = cli(capsys, *run_args(example_root, tmp_path / "out", srv.url))
    assert rc == 0, err
    assert "came from model 'other-model\\x1b[2J', not --model 'm'" in err and "\x1b" not in err


# === 5. /models answers that are not a model list: exit 6 =============================================


@pytest.mark.parametrize(("body", "says"), [
    (b"<html>Welcome to nginx</html>", "the answer is not JSON"),
    (b'{"data": [{"id": "\xff\xfe"}]}', "the answer is not JSON"),  # invalid UTF-8
    (b"[" * 100_000 + b"]" * 100_000, "not JSON (the JSON is nested too deeply)"),
    (b'["m"]', "is not a model list"),
    (b'{"data": {"id": "m"}}', "is not a model list"),
    (b'{"data": [{"id": 7}]}', "whose id is not a model name"),
    (b'{"data": [{"name": "m"}]}', "whose id is not a model name"),
    (b'{"data": [{"id": "m\\nhub-pgen: done"}]}', "whose id is not a model name"),
    (b'{"data": [{"id": "--trust-remote-code"}]}', "whose id is not a model name"),
    (b'{"data": [{"id": "' + b"a" * 300 + b'"}]}', "whose id is not a model name"),
    (json.dumps({"data": [{"id": f"m{i}"} for i in range(20_000)]}).encode(), "lists 20,000 models"),
])
def test_a_model_list_that_is_not_one_exits_6(body, says, example_root, tmp_path, capsys):
    with Crafted(lambda h, m, p: send(h, 200, body)) as srv:
        out = tmp_path / "out"
        rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--base-url", srv.url)
    assert rc == 6, err
    assert says in err and "TIP:" in err and "Traceback" not in err
    assert "\nhub-pgen: done" not in err  # a newline from the server is shown escaped
    assert nothing_left(out)


def test_a_model_list_answered_with_an_error_status_exits_6(tmp_path):
    with Crafted(lambda h, m, p: send(h, 400, {"error": {"message": "bad\x1b[31m"}})) as srv:
        with pytest.raises(ServerError) as e:
            served_models(srv.url, timeout=5)
    assert "answered HTTP 400, not a model list: bad\\x1b[31m" in str(e.value)


# === 6. Jobs answers that cannot be read =============================================================

SPEC = "hub-pgen[transformers] @ git+https://github.com/someone/hub-pgen@" + "a" * 40
JOB_ARGS = ["--repo-id", "lerobot/x", "--push-to", "tester/x_pgen", "--job", "a10g-large", "--job-install", SPEC]


def _point_jobs_at(monkeypatch, tmp_path, s: JobsServer) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", s.url)
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(jobs_api, "POLL_S", 0.05)


@pytest.mark.parametrize(("knobs", "shown_not"), [
    ({"submit_raw": b"<html>502 Bad Gateway</html>"}, None),
    ({"submit_raw": b'{"status": {"stage": "SCHEDULING"}}'}, None),  # no id
    ({"job_id": "abc\nhub-pgen: job done"}, "\nhub-pgen: job done"),
    ({"job_id": "../../settings"}, "/jobs/tester/../../settings"),
    ({"job_id": "a" * 500}, "a" * 200),
    ({"job_id": 12345}, None),
])
def test_an_unreadable_answer_after_the_submission_says_the_job_may_run(knobs, shown_not, tmp_path, capsys,
                                                                         monkeypatch):
    with JobsServer(token=HUB_TOKEN, **knobs) as s:
        _point_jobs_at(monkeypatch, tmp_path, s)
        rc, out, err = cli(capsys, *JOB_ARGS)
        assert len(s.jobs) == 1  # the job exists: it may run and bill
        page = f"{s.url}/settings/jobs"
    assert rc == 6, err
    assert "the job may have been submitted, and may be running (and billed)" in err
    assert page in err and "hf jobs cancel" in err and "Traceback" not in err
    if shown_not:
        assert shown_not not in out + err
    assert HUB_TOKEN not in out + err


def test_a_gateway_error_on_the_submission_may_have_submitted_too(tmp_path, capsys, monkeypatch):
    with JobsServer(token=HUB_TOKEN, submit_status=502) as s:
        _point_jobs_at(monkeypatch, tmp_path, s)
        rc, _, err = cli(capsys, *JOB_ARGS)
    assert rc == 6 and "answered 502 to the submission" in err and "may have been submitted" in err


def test_an_unreadable_whoami_submits_nothing(tmp_path, capsys, monkeypatch):
    for raw in (b"not json", b'{"type": "user"}', b'{"name": "../../api/x"}'):
        with JobsServer(token=HUB_TOKEN, whoami_raw=raw) as s:
            _point_jobs_at(monkeypatch, tmp_path, s)
            rc, _, err = cli(capsys, *JOB_ARGS)
            assert rc == 6, err
            assert "nothing was submitted" in err and s.submissions == [] and "Traceback" not in err


def test_an_unreadable_status_while_following_says_the_job_goes_on(tmp_path, capsys, monkeypatch):
    with JobsServer(token=HUB_TOKEN, inspect_raw=b"<html>oops</html>") as s:
        _point_jobs_at(monkeypatch, tmp_path, s)
        rc, _, err = cli(capsys, *JOB_ARGS, "--follow")
    assert rc == 6, err
    assert "an answer about the job cannot be read" in err and "the job goes on" in err
    assert "hf jobs cancel" in err


def test_a_status_message_with_escape_sequences_is_shown_escaped(tmp_path, capsys, monkeypatch):
    with JobsServer(token=HUB_TOKEN, final_stage="ERROR", final_message="boom\x1b]0;owned\x07\nline") as s:
        _point_jobs_at(monkeypatch, tmp_path, s)
        rc, _, err = cli(capsys, *JOB_ARGS, "--follow")
    assert rc == 9 and "boom\\x1b]0;owned\\x07\\nline" in err and "\x1b" not in err


def test_printable():
    assert printable("a\x1b[31mb\u202ec\r\n") == "a\\x1b[31mb\\u202ec\\r\\n"
    assert printable("x" * 500, 10) == "x" * 10 + "…"
    assert redact_text("see https://u:p@h/x") == "see https://***@h/x"


def test_the_client_is_bounded_and_follows_no_redirect():
    opts = OpenAIOptions(base_url="http://127.0.0.1:9/v1", model="m")
    with _client(opts) as client:
        assert client.hub_pgen_bounded and client.follow_redirects is False
        assert client.headers.get("accept-encoding") == "identity"
    with pytest.raises(UsageError):
        api_key("NO_SUCH_VARIABLE_X")
