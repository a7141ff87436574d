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

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, delayed ACKs cost 40 ms a request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackServer:
    """Lifecycle of a stand-in: :meth:`serve` a handler class, :meth:`shutdown`, :attr:`address`."""

    _httpd: ThreadingHTTPServer | None = None

    def serve(self, handler: type[BaseHTTPRequestHandler], *, port: int = 0, name: str = "stand-in") -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
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
