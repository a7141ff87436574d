"""``--backend openai``: any OpenAI-compatible chat-completions server as pgen.

vLLM (``vllm serve``), SGLang, TGI, ``transformers serve``, Hugging Face Inference Endpoints: one
HTTP request per call, ``--concurrency`` of them in flight, images as base64 JPEG data URLs (camera
order, already bounded by ``--max-pixels`` when the frames were decoded), and the same JSON schema
the transformers backend enforces — assigned types pinned, string bounds from the token budget —
as ``response_format: {"type": "json_schema", ...}``, which vLLM >= 0.12 and SGLang honour.

Servers are not trusted: a server may ignore ``response_format`` (vLLM drops the removed
``guided_json`` keys silently, ``transformers serve`` ignores it), so every answer goes through the
shared layer's parser and validator, is retried with a new seed, and is counted: the run's summary
says when most answers were not schema-valid. Transport trouble (429, 5xx, timeouts, dropped
connections) is retried per request with exponential backoff and jitter; a server that stays
unreachable stops the run with :class:`ServerError` (exit 6) — every finished sample is already in
the journal, and rerunning the same command resumes. Needs only ``httpx`` (no torch, no
transformers); the API key is read from the environment and never logged or written, and ``HF_TOKEN``
(the fallback key) goes to Hugging Face hosts only (:func:`hub_pgen.generate.keys.sends_hub_token`). Every request goes through
:mod:`hub_pgen.generate.transport`: one deadline for the whole request (``--request-timeout``), bodies
capped, no redirect followed; an answer of the wrong shape (``/models`` included) is a clear error.

Images are JPEG at quality 90: a 640x480 camera frame is ~40-70 KB (PNG: ~400-900 KB), and VLM
processors resize and normalise far more than JPEG at 90 changes.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hub_pgen.data import GenerationRequest, GenerationResult
from hub_pgen.errors import ServerError, UsageError, scrub
from hub_pgen.generate import transport
from hub_pgen.generate.keys import HF_TOKEN_WHERE, api_key, hub_token_withheld
from hub_pgen.generate.layer import Call, CallFailed, generate_with_retries
from hub_pgen.generate.schema import DEFAULT_MAX_NEW_TOKENS, answer_bounds, answer_limits, dialogue_schema
from hub_pgen.generate.servers import ServeOptions, ServerPool
from hub_pgen.plan.taxonomy import RESPONSE_TYPES, SCENARIO_TYPES
from hub_pgen.redact import printable

logger = logging.getLogger(__name__)

JPEG_QUALITY = 90
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MIN_ANSWER_CHARS = 64 << 10  # an answer longer than this and than CHARS_PER_TOKEN a token is refused unparsed
CHARS_PER_TOKEN = 256
RETRY_SCALE_ENV = "HUB_PGEN_RETRY_SCALE"  # multiplies the backoff delays (tests shrink them)


@dataclass(frozen=True)
class OpenAIOptions:
    base_url: str  # with ``serve``: filled in when the servers are up
    model: str
    api_key_env: str | None = None  # None: OPENAI_API_KEY, else HF_TOKEN (Hugging Face hosts only), else none
    concurrency: int = 16
    request_timeout: float = 300.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    constrained: bool = True
    max_retries: int = 2
    transport_attempts: int = 6  # tries of one HTTP request before the server counts as down
    max_backoff: float = 30.0
    serve: ServeOptions | None = None  # start the servers (hub_pgen.generate.servers) instead of base_url

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError(f"--concurrency must be >= 1, got {self.concurrency}")
        if not self.request_timeout > 0:
            raise UsageError(f"--request-timeout must be > 0 seconds, got {self.request_timeout}")
        if self.serve is None and not self.base_url.startswith(("http://", "https://")):
            raise UsageError(f"--base-url must be an http(s) URL, got {scrub(self.base_url)!r}",
                             hint="e.g. --base-url http://127.0.0.1:8000/v1 (vllm serve's default)")


MAX_MODELS = 10_000  # a model list longer than this is not a server's list
MODEL_ID_RE = re.compile(r"(?!-)[A-Za-z0-9_./:@+=~-]{1,256}")


def _client(options: OpenAIOptions, base_url: str | None = None) -> Any:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no per-request INFO lines
    url = base_url or options.base_url
    key = api_key(options.api_key_env, url)
    return transport.make_client(url, headers={"Authorization": f"Bearer {key}"} if key else {},
                                 timeout=options.request_timeout, connections=options.concurrency)


def served_models(base_url: str, *, api_key_env: str | None = None, timeout: float = 30.0) -> list[str]:
    """The model names ``GET {base_url}/models`` lists; :class:`ServerError` (exit 6) for an answer that
    is not an OpenAI model list (not JSON, the wrong shape, too long, ids that are not names)."""
    options = OpenAIOptions(base_url=base_url, model="?", api_key_env=api_key_env, concurrency=1,
                            request_timeout=timeout)
    with _client(options) as client:
        reply = _request(client, "GET", "models", None, options)
    where = f"{printable(base_url.rstrip('/'), 200)}/models"
    hint = ("is --base-url an OpenAI-compatible server (it ends in /v1 for most)? Or give --model NAME, and "
            "the list is not read")
    if reply.status_code != 200:
        raise ServerError(f"{where} answered HTTP {reply.status_code}, not a model list: {_detail(reply)}", hint=hint)
    if reply.too_large:
        raise ServerError(f"{where}: the model list is larger than {transport.MAX_BODY_BYTES >> 20} MiB; not read",
                          hint=hint)
    try:
        payload = reply.json()
    except ValueError as e:
        raise ServerError(f"{where}: the answer is not JSON ({e}): '{printable(reply.text, 120)}'", hint=hint) from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise ServerError(f"{where}: the answer is not a model list (a JSON object whose \"data\" is a list), "
                          f"got {printable(json.dumps(payload)[:120], 120)}", hint=hint)
    if len(data) > MAX_MODELS:
        raise ServerError(f"{where} lists {len(data):,} models, more than any server serves ({MAX_MODELS:,})",
                          hint=hint)
    ids = []
    for entry in data:
        model = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(model, str) or not MODEL_ID_RE.fullmatch(model):
            raise ServerError(f"{where} lists a model whose id is not a model name: "
                              f"{printable(json.dumps(entry)[:120], 120)} (an id is 1-256 of A-Z a-z 0-9 _ . / : @ "
                              "+ = ~ -, not starting with -)", hint=hint)
        ids.append(model)
    return ids


@dataclass(frozen=True)
class EncodedImage:
    """A frame as the request carries it (a base64 JPEG data URL), made in the frame lanes
    (:meth:`OpenAIBackend.prepare_image`) so the HTTP workers only send, and a request waiting its
    turn holds ~60 KB instead of a decoded frame (~900 KB at 640x480)."""

    url: str
    size: tuple[int, int]  # (width, height) of the frame encoded


def image_data_url(image: Any) -> str:
    if isinstance(image, EncodedImage):
        return image.url
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAIBackend:
    """Backend protocol over an OpenAI-compatible server. The constructor does no I/O (a client may be
    injected); :meth:`generate` sends ``--concurrency`` requests at a time."""

    name = "openai"
    needs_images = True

    def __init__(self, options: OpenAIOptions, *, client: Any = None) -> None:
        self.options = options
        self._clients: list[Any] = [client] if client is not None else []
        self._lock = threading.Lock()
        self._next = 0
        self._outstanding: list[int] = []  # requests in flight, per server
        self.pool: ServerPool | None = None
        self.answers = 0
        self.invalid = 0
        self.per_server: list[int] = []
        self.answered_as: dict[str, int] = {}  # answers that named another model than --model

    def start(self, log_dir: Path, report: Any = None) -> None:
        """Start the servers ``serve`` asks for (logs in ``log_dir``), then look at each server once
        (``GET models``): a wrong URL or a dead server stops the run before anything is committed."""
        if self.options.serve is not None and self.pool is None:
            self.pool = ServerPool(self.options.serve, log_dir)
            self.pool.start(report)
        for url in self._urls():
            with _client(self.options, url) as client:
                _request(client, "GET", "models", None, self.options)

    # -- Backend protocol ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        opts = self.options
        return {
            "backend": self.name,
            "identity": {
                "backend": self.name, "model": opts.model, "constrained": opts.constrained,
                "max_new_tokens": opts.max_new_tokens, "temperature": opts.temperature,
                "top_p": opts.top_p if opts.temperature > 0 else None, "max_retries": opts.max_retries,
                "image_format": f"jpeg q{JPEG_QUALITY}",
                "grammar": asdict(answer_bounds(opts.max_new_tokens)) if opts.constrained else None,
            },
            "runtime": {"concurrency": opts.concurrency, "request_timeout": opts.request_timeout,
                        "answers": self.answers, "schema_invalid_answers": self.invalid,
                        "servers": len(self._urls()), "requests_per_server": list(self.per_server),
                        "started_servers": None if self.pool is None else [
                            {"pid": sv.process.pid, "gpus": list(sv.gpus)} for sv in self.pool.servers]},
        }

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return generate_with_retries(self._run, requests, temperature=self.options.temperature,
                                     max_retries=self.options.max_retries, on_answer=self._count,
                                     bounds=answer_limits(self.options.max_new_tokens, self.options.constrained))

    def notes(self) -> list[str]:
        """What the summary should say about the server."""
        notes = []
        if self.answers and self.invalid * 2 > self.answers and self.options.constrained:
            notes.append(f"{self.invalid} of {self.answers} answers were not schema-valid: does this server support "
                         "response_format json_schema (vLLM >= 0.12, SGLang do; transformers serve does not)?")
        return notes + [f"{n} answer(s) came from model '{printable(name, 100)}', not --model '{printable(self.options.model, 100)}': the "
                "server answers with another model than the one asked for" for name, n in self.answered_as.items()]

    def close(self) -> None:
        """Close the connections, and stop the servers this backend started."""
        for client in self._clients:
            client.close()
        self._clients = []
        if self.pool is not None:
            self.pool.stop()

    # -- requests ------------------------------------------------------------------------------

    def _count(self, raw: str, valid: bool) -> None:
        with self._lock:
            self.answers += 1
            self.invalid += 0 if valid else 1

    def _urls(self) -> list[str]:
        return self.pool.urls if self.pool is not None else [self.options.base_url]

    def prepare_image(self, image: Any) -> EncodedImage:
        """A decoded frame as the request will carry it: the frame lanes call this, ahead of the HTTP
        workers (:func:`hub_pgen.frames.iter_sample_images`' ``prepare``)."""
        return EncodedImage(image_data_url(image), tuple(image.size))

    def _client_for_next(self) -> tuple[int, Any]:
        """The server with the fewest requests in flight (the next in turn among those): a slow server
        gets fewer, a fast one more. One client (connection pool) per server; :meth:`_done` gives the
        slot back."""
        with self._lock:
            if not self._clients:
                self._clients = [_client(self.options, url) for url in self._urls()]
            n = len(self._clients)
            if len(self._outstanding) != n:
                self._outstanding = [0] * n
                self.per_server = [0] * n
            start = self._next % n
            i = min(range(n), key=lambda j: (self._outstanding[j], (j - start) % n))
            self._next = i + 1
            self._outstanding[i] += 1
            self.per_server[i] += 1
            return i, self._clients[i]

    def _done(self, i: int) -> None:
        with self._lock:
            if i < len(self._outstanding):
                self._outstanding[i] -= 1

    def complete_calls(self, calls: list[Call]) -> list[str | CallFailed]:
        return self._run(list(calls))

    def _run(self, calls: list[Call]) -> list[str | CallFailed]:
        if len(calls) == 1 or self.options.concurrency == 1:
            return [self._one(c) for c in calls]
        with ThreadPoolExecutor(max_workers=min(self.options.concurrency, len(calls)),
                                thread_name_prefix="hub-pgen-openai") as pool:
            return list(pool.map(self._one, calls))

    def body(self, call: Call) -> dict[str, Any]:
        opts = self.options
        content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_data_url(im)}}
                                         for im in call.images]
        content.append({"type": "text", "text": call.prompt})
        body: dict[str, Any] = {"model": opts.model, "messages": [{"role": "user", "content": content}],
                                "max_tokens": call.max_new_tokens or opts.max_new_tokens,
                                "temperature": call.temperature}
        if call.temperature > 0:
            body["seed"] = call.seed  # servers that honour it reproduce a sampled answer on resume
            if opts.top_p < 1:
                body["top_p"] = opts.top_p
        if opts.constrained and call.schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": call.schema.get("title", "answer"), "strict": True, "schema": call.schema}}
        elif opts.constrained:
            schema = dialogue_schema([call.scenario_type] if call.scenario_type else list(SCENARIO_TYPES),
                                     [call.response_type] if call.response_type else list(RESPONSE_TYPES),
                                     **asdict(answer_bounds(opts.max_new_tokens)))
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "pgen_dialogue", "strict": True, "schema": schema}}
        return body

    def _one(self, call: Call) -> str | CallFailed:
        body = self.body(call)
        i, client = self._client_for_next()
        try:
            response = _request(client, "POST", "chat/completions", body, self.options)
        finally:
            self._done(i)
        if response.status_code >= 400:
            return CallFailed(f"server answered HTTP {response.status_code}: {_detail(response)}")
        if response.too_large:
            return CallFailed(f"server answer is larger than {transport.MAX_BODY_BYTES >> 20} MiB: not read")
        try:
            payload = response.json()
            message = payload["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            return CallFailed(f"server answer is not a chat completion: '{printable(response.text, 200)}'")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            return CallFailed("server answered no text (content is null)")
        limit = max(MIN_ANSWER_CHARS, CHARS_PER_TOKEN * (call.max_new_tokens or self.options.max_new_tokens))
        if len(text) > limit:
            return CallFailed(f"server answered {len(text):,} characters, more than {limit:,} (what "
                              f"--max-new-tokens allows): not parsed")
        answered = payload.get("model") if isinstance(payload, dict) else None
        if isinstance(answered, str) and answered != self.options.model \
                and not answered.startswith(self.options.model):  # gpt-4o answers as gpt-4o-2024-08-06
            with self._lock:
                if answered in self.answered_as or len(self.answered_as) < 5:
                    self.answered_as[answered] = self.answered_as.get(answered, 0) + 1
        return text


def _detail(response: Any) -> str:
    """What an error answer says, fit for a message (control characters escaped, credentials out)."""
    try:
        body = response.json()
        msg = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(msg, dict):
            msg = msg.get("message", msg)
        return printable(msg if isinstance(msg, str) else json.dumps(msg), 300)
    except (ValueError, TypeError):
        return printable(response.text, 300) or "(no body)"


def _request(client: Any, method: str, path: str, body: dict[str, Any] | None,
             options: OpenAIOptions) -> transport.Reply:
    """One HTTP request (:func:`transport.fetch`: one deadline for all of it, its body capped), tried
    again on 429/5xx/timeouts/dropped connections with backoff and jitter. Returns the reply (a 4xx that
    retrying cannot fix included); raises :class:`ServerError` when the server stays unreachable, refuses
    the key, does not know the path or model, or redirects."""
    import httpx

    url = printable(str(client.base_url).rstrip("/") + "/" + path, 300)
    last = ""
    timed_out = False
    for attempt in range(options.transport_attempts):
        retry_after = None
        try:
            response = transport.fetch(client, method, path, json_body=body, timeout=options.request_timeout)
        except httpx.TimeoutException as e:  # every timeout is at most what was left of the deadline
            t = options.request_timeout
            last = (f"ConnectTimeout: no connection within {min(10.0, t):g} s" if isinstance(e, httpx.ConnectTimeout)
                    else f"{type(e).__name__}: the whole request took longer than {t:g} s (--request-timeout)")
            timed_out = True
        except (httpx.TransportError, httpx.DecodingError) as e:
            last, timed_out = f"{type(e).__name__}: {e}", False
        else:
            status = response.status_code
            if 300 <= status < 400:
                where = printable(response.headers.get("location") or "nowhere", 200)
                raise ServerError(f"{url} answered a redirect (HTTP {status} to {where}); hub-pgen follows no "
                                  "redirect, so the API key goes to no other address",
                                  hint="give the address the server really answers on as --base-url")
            if status in (401, 403):
                hint = ("set the key in OPENAI_API_KEY, or name its variable with --api-key-env"
                        if not hub_token_withheld(options.api_key_env, str(client.base_url)) else
                        f"HF_TOKEN is set but was not sent: the Hub token goes only to {HF_TOKEN_WHERE}. For this "
                        "server, set OPENAI_API_KEY, or --api-key-env HF_TOKEN to send the Hub token to it")
                raise ServerError(f"{url} refused the API key (HTTP {status}: {_detail(response)})", hint=hint)
            if status == 404:
                raise ServerError(f"{url}: HTTP 404 ({_detail(response)})",
                                  hint="check --base-url (it ends in /v1 for most servers) and --model (the "
                                       "served model name: GET /v1/models lists them)")
            if status not in RETRY_STATUSES:
                return response
            last, timed_out = f"HTTP {status}: {_detail(response)}", False
            retry_after = _retry_after(response)
        if attempt + 1 < options.transport_attempts:
            delay = retry_after if retry_after is not None else min(options.max_backoff, 0.5 * 2 ** attempt)
            delay *= float(os.environ.get(RETRY_SCALE_ENV, "1"))
            delay = min(options.max_backoff, delay) * (0.5 + random.random() / 2)  # jitter: no thundering herd
            logger.debug("%s %s: %s; retry %d in %.2fs", method, url, printable(last), attempt + 1, delay)
            time.sleep(delay)
    hint = ("check that the server is up (its /health) and --base-url, then rerun the same command "
            "(whatever was finished is kept and not sent again)")
    if timed_out:
        hint = (f"each try has --request-timeout {options.request_timeout:g} s in all, from connecting to the "
                "answer's last byte: a slow server or long answers need more (raise --request-timeout); " + hint)
    raise ServerError(f"cannot reach {url} after {options.transport_attempts} tries (last: {printable(last)})",
                      hint=hint)


def _retry_after(response: Any) -> float | None:
    try:
        value = float(response.headers.get("retry-after"))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None
