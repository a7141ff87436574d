"""What the loopback stand-ins (the Hub, an OpenAI-compatible server, the Jobs API) share: an HTTP
server on 127.0.0.1 in a daemon thread, started and stopped the same way, and a quiet keep-alive
request handler. Stdlib only.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """Keep-alive (every answer carries a Content-Length, like the real services), headers and body
    without Nagle's delay, no access log on stderr (tests read the stand-in's own request log)."""

    protocol_version = "HTTP/1.1"
    # the answer (headers and body) leaves in one write when the handler is done (BaseHTTPRequestHandler
    # flushes wfile after each request): a header write then a body write waits on a delayed ACK
    wbufsize = 1 << 20

    def setup(self) -> None:
        super().setup()
        # and without Nagle's delay for what is written
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    """A large receive buffer on the listening socket (accepted sockets inherit it): a request body over
    ~64 KiB (a frame or two as JPEG) on loopback otherwise waits on window updates, ~40 ms a request."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.open = 0  # connections accepted and not yet closed
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:  # counted in the accepting thread, before its handler thread starts
            self.open += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        try:
            super().shutdown_request(request)
        finally:
            with self._open_lock:
                self.open -= 1

    def pending(self) -> bool:
        """A connection waits in the listening socket's backlog (not yet accepted)."""
        return bool(select.select([self.socket], [], [], 0)[0])


class LoopbackServer:
    """Lifecycle of a stand-in: :meth:`serve` a handler class, :meth:`shutdown`, :attr:`address`."""

    _httpd: _Server | None = None

    def serve(self, handler: type[BaseHTTPRequestHandler], *, port: int = 0, name: str = "stand-in") -> None:
        self._httpd = _Server(("127.0.0.1", port), handler)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                         daemon=True).start()

    def shutdown(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every connection has been handled and closed, none waiting to be accepted.

        For a test whose client process has exited (or was killed): what it sent is then all logged,
        a request cut short by a SIGKILL included, so a ``reset`` after this cannot be followed by a
        late entry from the old client. Raises ``TimeoutError`` when a client still holds one open."""
        assert self._httpd is not None, "server not started"
        httpd, deadline, quiet = self._httpd, time.monotonic() + timeout, 0
        while quiet < 3:  # three looks in a row, 10 ms apart: nothing open, nothing waiting
            if time.monotonic() > deadline:
                raise TimeoutError(f"{httpd.open} connection(s) still open after {timeout} s")
            quiet = quiet + 1 if httpd.open == 0 and not httpd.pending() else 0
            time.sleep(0.01)

    @property
    def address(self) -> str:
        """``http://127.0.0.1:PORT``."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"
