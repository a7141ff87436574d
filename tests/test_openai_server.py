"""The OpenAI-compatible stand-in itself (tests/openai_server.py): what the client-backend tests rely on."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from hub_pgen.generate.schema import dialogue_schema

try:
    from .openai_server import OpenAIServer
except ImportError:  # tests/ not a package: pytest put tests/ itself on sys.path
    from openai_server import OpenAIServer

PNG = ("data:image/png;base64,"  # a 1x1 PNG
       "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==")


def chat(prompt: str = "Write one dialogue.", *, schema: dict | None = None,
         model: str = "tiny-pgen") -> dict:
    body: dict = {"model": model, "max_tokens": 512, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": PNG}}, {"type": "text", "text": prompt}]}]}
    if schema is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "pgen", "schema": schema, "strict": True}}
    return body


def content(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["object"] == "chat.completion" and j["choices"][0]["finish_reason"] == "stop"
    return j["choices"][0]["message"]["content"]


@pytest.fixture
def server():
    with OpenAIServer() as s:
        yield s


def test_schema_answer_satisfies_pinned_enums_and_patterns(server: OpenAIServer) -> None:
    schema = dialogue_schema(["negative_task"], ["error_handling"],
                             max_prompt_chars=60, max_utterance_chars=40)  # the smallest bounds allowed
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/models").json()["data"] == [
            {"id": "tiny-pgen", "object": "model", "created": 0, "owned_by": "tests"}]
        assert c.get(server.url.removesuffix("/v1") + "/health").status_code == 200
        a = json.loads(content(c.post("/chat/completions", json=chat("sample 1", schema=schema))))
        b = json.loads(content(c.post("/chat/completions", json=chat("sample 2", schema=schema))))
        assigned = '"scenario_type": "implicit_request"'  # no response_format: types read from the prompt
        plain = json.loads(content(c.post("/chat/completions", json=chat(assigned))))
    assert (a["scenario_type"], a["response_type"]) == ("negative_task", "error_handling")
    for key in ("user_prompt", "robot_utterance"):
        assert re.fullmatch(schema["properties"][key]["pattern"], a[key]), a[key]
    assert a["user_prompt"] != b["user_prompt"]  # distinct prompts, distinct dialogues
    assert set(plain) == set(schema["required"]) and plain["scenario_type"] == "implicit_request"
    assert [r["status"] for r in server.requests] == [200, 200, 200]
    assert server.images_seen == 3 and all(r["images"] == 1 and r["bytes"] > 0 for r in server.requests)
    assert server.requests[0]["body"]["response_format"]["json_schema"]["schema"] == schema


def test_ignore_and_fenced_modes(server: OpenAIServer) -> None:
    schema = dialogue_schema(["direct_request"], ["confirmation"])
    with httpx.Client(base_url=server.url) as c:
        server.mode = "ignore"
        text = content(c.post("/chat/completions", json=chat(schema=schema)))
        assert text.startswith("Sure!") and "{" not in text
        server.mode = "fenced"
        text = content(c.post("/chat/completions", json=chat(schema=schema)))
    inner = re.search(r"```json\n(.*?)\n```", text, re.DOTALL)
    assert inner and not text.startswith("```")
    assert json.loads(inner.group(1))["scenario_type"] == "direct_request"


def test_script_429_then_success_and_unknown_model(server: OpenAIServer) -> None:
    server.script = [429, 503]
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/chat/completions", json=chat())
        assert r.status_code == 429 and r.headers["Retry-After"] == "0" and r.json()["error"]["code"] == 429
        assert c.post("/chat/completions", json=chat()).status_code == 503
        content(c.post("/chat/completions", json=chat()))
        assert c.post("/chat/completions", json=chat(model="nope")).status_code == 404
    assert [r["status"] for r in server.requests] == [429, 503, 200, 404]


def test_drop_is_a_transport_error_then_the_server_goes_on(server: OpenAIServer) -> None:
    server.script = ["drop", ("sleep", 0.05)]
    with httpx.Client(base_url=server.url) as c:
        with pytest.raises(httpx.TransportError):
            c.post("/chat/completions", json=chat())
        content(c.post("/chat/completions", json=chat()))
    assert [r["status"] for r in server.requests] == [None, 200]


def test_concurrent_requests_are_in_flight_together(server: OpenAIServer) -> None:
    server.delay = 0.3
    with httpx.Client(base_url=server.url) as c, ThreadPoolExecutor(4) as pool:
        post = lambda i: content(c.post("/chat/completions", json=chat(f"sample {i}")))  # noqa: E731
        answers = list(pool.map(post, range(4)))
    assert len(set(answers)) == 4
    assert server.max_in_flight == 4 and server.in_flight == 0


def test_api_key_is_required_when_set() -> None:
    with OpenAIServer(api_key="sk-test", models=["a", "b"]) as s, httpx.Client(base_url=s.url) as c:
        assert c.get("/models").status_code == 401
        assert c.post("/chat/completions", json=chat(model="a")).status_code == 401
        auth = {"Authorization": "Bearer sk-test"}
        assert [m["id"] for m in c.get("/models", headers=auth).json()["data"]] == ["a", "b"]
        content(c.post("/chat/completions", json=chat(model="b"), headers=auth))
    assert [r["status"] for r in s.requests] == [401, 200]


CUT_SHORT = """
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /v1/chat/completions HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 100000\\r\\n\\r\\n" + b"{" * 10)
os.kill(os.getpid(), 9)  # killed mid-body, as HUB_PGEN_KILL_AT kills a run with requests in flight
"""


def test_settle_waits_for_a_request_cut_short_by_a_killed_client(server: OpenAIServer) -> None:
    import subprocess
    import sys
    import time

    port = int(server.address.rsplit(":", 1)[1])
    for _ in range(3):
        assert subprocess.run([sys.executable, "-c", CUT_SHORT, str(port)]).returncode == -9
    server.settle()
    # all three logged by now (a 400 with no body), so a reset here leaves nothing late behind
    assert [(r["body"], r["status"], r["bytes"]) for r in server.requests] == [(None, 400, 10)] * 3
    server.reset()
    time.sleep(0.2)
    assert server.requests == []
    with httpx.Client(base_url=server.url) as c:  # a client still connected: settle says so
        assert c.get("/models").status_code == 200
        with pytest.raises(TimeoutError, match="1 connection"):
            server.settle(timeout=0.3)
    server.settle()
