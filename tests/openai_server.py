"""A loopback stand-in for an OpenAI-compatible chat-completions server, for tests of the client backend.

Real servers (vLLM, ``transformers serve``, llama.cpp, the OpenAI API) need a model and often a GPU;
this one answers instantly on 127.0.0.1 (a free port), stdlib only, and lets a test choose how the
"model" behaves and inject the faults a client must survive:

- ``GET /health`` (200), ``GET /v1/models`` (the configured model names),
  ``POST /v1/chat/completions`` (non-streaming; ``stream: true`` gets 400; an unknown model 404).
- :attr:`OpenAIServer.mode`: ``"schema"`` (default) answers a JSON object that satisfies the request's
  ``response_format.json_schema.schema`` (each property's first ``enum`` value, else a short ASCII
  sentence that starts with a letter and differs per prompt: a hash of the messages is in it, so the
  same prompt always gets the same answer); without a ``response_format``, the pgen object (types
  taken from the prompt's ``"scenario_type": "..."`` lines when present). ``"fenced"``: that JSON inside
  a ```json fence with prose around it. ``"ignore"``: prose, no JSON (a server that drops
  ``response_format``, as ``transformers serve`` does).
- :attr:`OpenAIServer.script`: entries consumed one per chat request, before normal handling: an int
  status (429 comes with ``Retry-After: 0``; 200 means answer normally), ``"drop"`` (close the
  connection without a response) or ``("sleep", seconds)`` (then answer normally).
- :attr:`OpenAIServer.delay`: seconds every chat request waits before answering; :attr:`jitter` varies
  it, as a real server's latency varies: each waits ``delay * (1 + uniform(-jitter, jitter))``
  (seeded by :attr:`seed`).
- :attr:`OpenAIServer.api_key`: when set, ``/v1/*`` needs ``Authorization: Bearer <api_key>`` (else 401).

For assertions: :attr:`requests` (per chat request: ``body`` (parsed JSON), ``status`` (``None`` when
dropped), ``bytes`` (body size), ``images`` (``data:image/`` parts), ``in_flight`` (chat requests being
answered when it arrived, itself included), ``schema`` (its ``response_format`` schema name:
``pgen_dialogue``, ``hub_pgen_segmentation``-like titles, ``hub_pgen_verify``; None without one),
``arrived`` and ``answered`` (monotonic seconds), ``delay`` (the latency it was given)), :attr:`images_seen` (their sum), :attr:`in_flight` and
:attr:`max_in_flight`; :meth:`in_flight_fraction` for "were K in flight". A request is logged before
its answer is sent.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

try:
    from .loopback import LoopbackServer, QuietHandler
except ImportError:  # run as a script, a server process of its own (tests/ is then on sys.path)
    from loopback import LoopbackServer, QuietHandler  # type: ignore[no-redef]

PGEN_KEYS = ("scenario_type", "response_type", "user_prompt", "robot_utterance")
SENTENCES = ("Please pick up the cup near camera {tag}.", "Sure, I will pick up the cup now {tag}.")


class OpenAIServer(LoopbackServer):
    """The stand-in. Use as a context manager, or :meth:`start` / :meth:`stop`."""

    def __init__(self, *, models: Sequence[str] = ("tiny-pgen",), mode: str = "schema",
                 api_key: str | None = None, delay: float = 0.0, script: Sequence[Any] = (), port: int = 0,
                 jitter: float = 0.0, seed: int = 0) -> None:
        self.port = port
        self.jitter = jitter
        self._rng = random.Random(seed)
        self.models = list(models)
        self.mode = mode  # "schema" | "fenced" | "ignore"
        self.api_key = api_key
        self.delay = delay
        self.script: list[Any] = list(script)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget the log and the counters (not the knobs)."""
        with self._lock:
            self.requests: list[dict[str, Any]] = []
            self.images_seen = 0
            self.in_flight = 0
            self.max_in_flight = 0

    def in_flight_fraction(self, k: int, schema: str | None = None) -> float:
        """Of the chat requests (of that schema name, if given), in arrival order, the fraction that
        found at least ``k`` in flight (themselves included) — leaving out the first ``k - 1`` (the
        pool filling) and the last ``k - 1`` (a pass draining cannot have ``k`` in flight)."""
        seen = [e["in_flight"] for e in sorted(self.requests, key=lambda e: e["arrived"])
                if schema is None or e["schema"] == schema]
        middle = seen[k - 1 : len(seen) - (k - 1)] if k > 1 else seen
        return sum(n >= k for n in middle) / len(middle) if middle else 0.0

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> OpenAIServer:
        server = self

        class Handler(_Handler):
            stand_in = server

        self.serve(Handler, port=self.port, name="openai-server")
        return self

    def stop(self) -> None:
        self.shutdown()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL a client takes, ending in ``/v1``."""
        return f"{self.address}/v1"

    # --- the "model" ------------------------------------------------------------------------

    def answer(self, body: dict[str, Any]) -> str:
        """The assistant text for one chat request, by :attr:`mode`."""
        messages = body.get("messages") or []
        tag = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:6]
        if self.mode == "ignore":
            return f"Sure! Here is a dialogue: the user asks for the cup ({tag}), and the robot agrees."
        fmt = body.get("response_format") or {}
        schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
        obj = _satisfy(schema, tag) if schema else _pgen_object(_text_of(messages), tag)
        text = json.dumps(obj, separators=(",", ":"))
        if self.mode == "fenced":
            return f"Here is the dialogue you asked for:\n```json\n{text}\n```\nWant another one?"
        if self.mode != "schema":
            raise ValueError(f"unknown mode {self.mode!r}")
        return text


def _satisfy(schema: dict[str, Any], tag: str) -> dict[str, Any]:
    """A minimal object the schema allows: each property's first ``enum`` value, numbers at their
    minimum, arrays of ``minItems`` (at least one) items, nested objects the same way, strings from
    SENTENCES cut to ``maxLength``."""
    strings = [0]

    def value(prop: dict[str, Any]) -> Any:
        if prop.get("enum"):
            return prop["enum"][0]
        kind = prop.get("type")
        if kind in ("integer", "number"):
            return prop.get("minimum", 0)
        if kind == "boolean":
            return True
        if kind == "object":
            return {name: value(sub) for name, sub in (prop.get("properties") or {}).items()}
        if kind == "array":
            return [value(prop.get("items") or {}) for _ in range(max(1, prop.get("minItems", 1)))]
        text = SENTENCES[strings[0] % len(SENTENCES)].format(tag=tag)
        strings[0] += 1
        return text[: prop.get("maxLength", len(text))]

    return value({**schema, "type": "object"})


def _pgen_object(prompt: str, tag: str) -> dict[str, Any]:
    """No response_format: the pgen answer, with the types the prompt assigns (else the first ones)."""
    found = {k: m.group(1) for k in PGEN_KEYS[:2] if (m := re.search(rf'"{k}":\s*"(\w+)"', prompt))}
    return {"scenario_type": found.get("scenario_type", "direct_request"),
            "response_type": found.get("response_type", "confirmation"),
            "user_prompt": SENTENCES[0].format(tag=tag), "robot_utterance": SENTENCES[1].format(tag=tag)}


def _text_of(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def _count_images(messages: list[Any]) -> int:
    count = 0
    for m in messages:
        for p in m.get("content") if isinstance(m, dict) and isinstance(m.get("content"), list) else []:
            image = p.get("image_url") if isinstance(p, dict) and p.get("type") == "image_url" else None
            count += isinstance(image, dict) and str(image.get("url", "")).startswith("data:image/")
    return count


# --- HTTP -----------------------------------------------------------------------------------


class _Handler(QuietHandler):
    stand_in: OpenAIServer

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = {401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_error"}.get(
            status, "server_error" if status >= 500 else "invalid_request_error")
        self._send_json(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

    def _authorized(self) -> bool:
        key = self.stand_in.api_key
        return key is None or self.headers.get("Authorization") == f"Bearer {key}"

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send_json(200, {"status": "ok"})
        elif not self._authorized():
            self._error(401, "Incorrect API key provided")
        elif self.path == "/v1/models":
            models = [{"id": m, "object": "model", "created": 0, "owned_by": "tests"}
                      for m in self.stand_in.models]
            self._send_json(200, {"object": "list", "data": models})
        else:
            self._error(404, f"no such endpoint: GET {self.path}")

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/chat/completions":
            return self._error(404, f"no such endpoint: POST {self.path}")
        s = self.stand_in
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        messages = body.get("messages") if isinstance(body, dict) else None
        images = _count_images(messages) if isinstance(messages, list) else 0
        fmt = body.get("response_format") if isinstance(body, dict) else None
        schema = (fmt.get("json_schema") or {}).get("name") if isinstance(fmt, dict) else None
        entry: dict[str, Any] = {"body": body, "status": None, "bytes": len(raw), "images": images,
                                 "schema": schema, "arrived": time.monotonic()}
        with s._lock:
            step = s.script.pop(0) if s.script else None
            s.in_flight += 1
            entry["in_flight"] = s.in_flight
            s.max_in_flight = max(s.max_in_flight, s.in_flight)
            s.images_seen += images
            delay = s.delay * (1 + s._rng.uniform(-s.jitter, s.jitter)) if s.jitter else s.delay
        status, text, headers = 200, "", {}
        try:
            time.sleep(delay)
            if isinstance(step, tuple) and step[0] == "sleep":
                time.sleep(step[1])
            if step == "drop":
                self.close_connection = True
                return
            if not self._authorized():
                status, text = 401, "Incorrect API key provided"
            elif isinstance(step, int) and step != 200:
                status, text = step, f"scripted failure {step}"
                headers = {"Retry-After": "0"} if step == 429 else {}
            elif not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                status, text = 400, "the body must be a JSON object with a list of messages"
            elif body.get("stream"):
                status, text = 400, "this stand-in does not stream"
            elif body.get("model") not in s.models:
                status, text = 404, f"The model {body.get('model')!r} does not exist"
            else:
                try:
                    text = s.answer(body)
                except ValueError as e:
                    status, text = 500, str(e)
        finally:
            entry["status"] = None if step == "drop" else status
            entry["delay"], entry["answered"] = delay, time.monotonic()
            with s._lock:
                s.in_flight -= 1
                s.requests.append(entry)
        if status != 200:
            return self._error(status, text, headers)
        self._send_json(200, {
            "id": f"chatcmpl-{len(s.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(raw) // 4, "completion_tokens": len(text) // 4 + 1,
                      "total_tokens": len(raw) // 4 + len(text) // 4 + 1},
        })


def main(argv: Sequence[str] | None = None) -> int:
    """Run as a server process (what ``--serve-command`` starts in the tests): ``python
    tests/openai_server.py --port P --model M``; ``--die-at-start`` exits 3 after a line of log,
    ``--startup-delay S`` waits before listening, ``--pid-file F`` records this process's pid,
    ``--argv-file F`` its arguments (JSON), ``--api-key K`` requires that key, ``--delay S`` and
    ``--jitter F`` set the answers' latency."""
    import argparse
    import os
    import sys

    p = argparse.ArgumentParser(description="OpenAI-compatible stand-in server")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", default="tiny-pgen")
    p.add_argument("--mode", default="schema")
    p.add_argument("--die-at-start", action="store_true")
    p.add_argument("--startup-delay", type=float, default=0.0)
    p.add_argument("--pid-file")
    p.add_argument("--api-key", help="require this key (as vllm serve --api-key does)")
    p.add_argument("--argv-file", help="write this process's arguments here, as JSON")
    p.add_argument("--delay", type=float, default=0.0, help="seconds each chat request waits")
    p.add_argument("--jitter", type=float, default=0.0, help="delay varies by this fraction, +-")
    args = p.parse_args(argv)
    if args.argv_file:
        import json as _json

        with open(args.argv_file, "w") as fh:
            _json.dump(sys.argv[1:] if argv is None else list(argv), fh)
    if args.pid_file:
        with open(args.pid_file, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    print(f"stand-in: loading {args.model} on port {args.port}", flush=True)
    if args.die_at_start:
        print("stand-in: CUDA out of memory while loading the weights (simulated)", flush=True)
        return 3
    time.sleep(args.startup_delay)
    server = OpenAIServer(models=[args.model], mode=args.mode, port=args.port, api_key=args.api_key,
                          delay=args.delay, jitter=args.jitter).start()
    print(f"stand-in: serving {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
