"""What the loopback stand-ins (the Hub, an OpenAI-compatible server, the Jobs API) share: an HTTP
server on 127.0.0.1 in a daemon thread, started and stopped the same way, and a quiet keep-alive
request handler. Stdlib only.
"""

from __future__ import annotations

import socket
import threading
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

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        super().server_bind()


class LoopbackServer:
    """Lifecycle of a stand-in: :meth:`serve` a handler class, :meth:`shutdown`, :attr:`address`."""

    _httpd: ThreadingHTTPServer | None = None

    def serve(self, handler: type[BaseHTTPRequestHandler], *, port: int = 0, name: str = "stand-in") -> None:
        self._httpd = _Server(("127.0.0.1", port), handler)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                         daemon=True).start()

    def shutdown(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def address(self) -> str:
        """``http://127.0.0.1:PORT``."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"
