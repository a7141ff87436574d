"""HTTP to model servers, with bounds a crafted server cannot stretch (``--backend openai``, ``--serve``).

Every request hub-pgen makes to a model server goes through :func:`fetch`, which gives it:

- **one deadline for the whole request** (``--request-timeout``): connecting, TLS, sending the body,
  the status line and headers, and every read of the body count against the same clock. httpx's own
  timeouts bound each read only, so a server dripping a byte a second held a request forever; here
  the network stream under httpx (:class:`_DeadlineBackend`) gives each socket operation only the
  time left, and raises :class:`httpx.TimeoutException` when none is. The caller counts that as a
  failed try, like any timeout;
- **a cap on the body** it reads: :data:`MAX_BODY_BYTES` (8 MiB) for an answer,
  :data:`MAX_ERROR_BODY_BYTES` (64 KiB) for an error (only its first lines are shown). A body over the
  cap — announced by ``Content-Length`` or found while reading — is not read further
  (:attr:`Reply.too_large`), and the connection is dropped, not reused;
- **no redirects**: a 3xx is returned as it is (the caller refuses it), so the API key never goes to
  another address; ``Accept-Encoding: identity``, so nothing is inflated beyond what was read.

Stdlib and httpx only (no torch).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

MAX_BODY_BYTES = 8 << 20  # an answer: far above any chat completion or model list
MAX_ERROR_BODY_BYTES = 64 << 10  # an error body: its first lines are all a message shows
WRITE_CHUNK = 64 << 10  # a large request body is sent in pieces, each within the deadline

_local = threading.local()


class DeadlineExceeded(Exception):
    """Raised inside httpcore (mapped to an httpx timeout by httpx)."""


def _left(timeout: float | None, exc: type[Exception]) -> float | None:
    """The time this socket operation may take: its own timeout, or what is left of the request's."""
    deadline = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    end, total = deadline
    left = end - time.monotonic()
    if left <= 0:
        raise exc(f"the whole request took longer than {total:g} s (--request-timeout)")
    return left if timeout is None else min(timeout, left)


def _backend_classes() -> tuple[type, type]:
    import httpcore

    class DeadlineStream(httpcore.NetworkStream):
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            for i in range(0, len(buffer), WRITE_CHUNK):
                self._inner.write(buffer[i:i + WRITE_CHUNK], _left(timeout, httpcore.WriteTimeout))

        def close(self) -> None:
            self._inner.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                      timeout: float | None = None) -> Any:
            return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname,
                                                        _left(timeout, httpcore.ConnectTimeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class DeadlineBackend(httpcore.NetworkBackend):
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                        socket_options: Any = None) -> Any:
            return DeadlineStream(self._inner.connect_tcp(host, port, _left(timeout, httpcore.ConnectTimeout),
                                                          local_address, socket_options))

        def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
            return DeadlineStream(self._inner.connect_unix_socket(path, _left(timeout, httpcore.ConnectTimeout),
                                                                  socket_options))

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    return DeadlineStream, DeadlineBackend


_CLASSES: tuple[type, type] | None = None


def _bound(transport: Any) -> bool:
    """Put the deadline under one httpx transport's connection pool; False when its layout is unknown."""
    global _CLASSES
    pool = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        return False
    if _CLASSES is None:
        _CLASSES = _backend_classes()
    if not isinstance(pool._network_backend, _CLASSES[1]):
        pool._network_backend = _CLASSES[1](pool._network_backend)
    return True


def make_client(base_url: str, *, headers: dict[str, str] | None = None, timeout: float = 300.0,
                connections: int = 16) -> Any:
    """An ``httpx.Client`` for one server whose every connection honours :func:`fetch`'s deadline.
    It follows no redirect."""
    import httpx

    # Any: it carries hub_pgen_bounded (every transport bounded), an attribute httpx does not declare
    client: Any = httpx.Client(base_url=base_url.rstrip("/") + "/",
                          headers={"Accept-Encoding": "identity", **(headers or {})},
                          timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)), follow_redirects=False,
                          limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))
    transports = [getattr(client, "_transport", None), *(getattr(client, "_mounts", None) or {}).values()]
    client.hub_pgen_bounded = all(_bound(t) for t in transports if t is not None)
    return client


@dataclass
class Reply:
    """A response read within the bounds: status, headers, at most the cap of the body."""

    status_code: int
    headers: Any
    content: bytes = b""
    too_large: bool = False  # the body was over the cap: ``content`` is its start (errors) or empty

    def json(self) -> Any:
        """The body as JSON; :class:`ValueError` for anything else (not UTF-8, nested too deep, a
        body over the cap)."""
        if self.too_large:
            raise ValueError("the body is over the size cap and was not read")
        try:
            return json.loads(self.content)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


def fetch(client: Any, method: str, path: str, *, json_body: Any = None, timeout: float,
          max_body: int = MAX_BODY_BYTES) -> Reply:
    """One request, start to last byte within ``timeout`` seconds, its body capped (see the module's
    docstring). Raises httpx's ``TimeoutException`` (the deadline included), ``TransportError`` or
    ``DecodingError``; never follows a redirect."""
    import httpx

    start = time.monotonic()
    _local.deadline = (start + timeout, timeout)
    try:
        request = client.build_request(method, path, json=json_body)
        response = client.send(request, stream=True)
        try:
            status = response.status_code
            cap = max_body if status < 300 else MAX_ERROR_BODY_BYTES
            announced = response.headers.get("content-length")
            try:
                too_large = announced is not None and int(announced) > cap
            except ValueError:
                too_large = False
            chunks: list[bytes] = []
            size = 0
            if not (too_large and status < 300):
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > cap:
                        too_large = True
                        break
                    if time.monotonic() - start > timeout:
                        raise httpx.ReadTimeout(f"the whole request took longer than {timeout:g} s "
                                                "(--request-timeout)", request=request)
            body = b"".join(chunks)
            if too_large and status < 300:
                body = b""
            return Reply(status, response.headers, body[:cap], too_large)
        finally:
            response.close()  # a body not read to its end: the connection is closed, not reused
    finally:
        _local.deadline = None
