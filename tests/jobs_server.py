"""A loopback stand-in for the Hugging Face Jobs API, for tests that run the real ``huggingface_hub`` client
(``HfApi.run_job``, ``list_jobs_hardware``, ``fetch_job_logs``, ``inspect_job``) against 127.0.0.1.

Endpoints (the paths and JSON shapes huggingface_hub 1.x uses):

- ``GET /api/whoami-v2``: the user (needs ``Authorization: Bearer <token>``, else 401);
- ``GET /api/jobs/hardware``: :attr:`JobsServer.flavors` as ``JobHardwareInfo`` rows (404 with
  ``list_hardware=False``: a server that will not list them);
- ``POST /api/jobs/{namespace}``: creates a job from the spec (an unknown flavor is a 400 whose message
  names it, as the Hub's is), answers its ``JobInfo`` at stage ``SCHEDULING``;
- ``GET /api/jobs/{namespace}/{id}``: its ``JobInfo``: ``RUNNING`` until its log has been streamed, then
  :attr:`JobsServer.final_stage` (with :attr:`final_message`);
- ``GET /api/jobs/{namespace}/{id}/logs``: Server-Sent Events, one ``data: {"data": LINE, "timestamp": T}``
  per line of :attr:`JobsServer.log_lines` after the ``===== Job started`` line, then the job ends and the
  stream closes.

For assertions: :attr:`requests` (every request: method, path, parsed JSON body, whether it carried the
right token; the ``Authorization`` header itself is not kept) and :attr:`access_log` (the lines a real
server would log: method, path, status).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from .loopback import LoopbackServer

FLAVORS = ("cpu-basic", "t4-small", "a10g-small", "a10g-large", "a100-large", "h200")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Any
    authorized: bool


class JobsServer(LoopbackServer):
    """The stand-in. Use as a context manager."""

    def __init__(self, *, token: str, user: str = "tester", flavors: tuple[str, ...] = FLAVORS,
                 list_hardware: bool = True,
                 log_lines: tuple[str, ...] = ("hub-pgen: generating", "hub-pgen: pushed"),
                 final_stage: str = "COMPLETED", final_message: str | None = None,
                 submit_status: int | None = None, submit_raw: bytes | None = None, job_id: Any = None,
                 whoami_raw: bytes | None = None, inspect_raw: bytes | None = None) -> None:
        self.token, self.user, self.flavors, self.list_hardware = token, user, flavors, list_hardware
        self.log_lines, self.final_stage, self.final_message = list(log_lines), final_stage, final_message
        self.submit_status = submit_status  # answer POST /api/jobs with this status instead
        # hostile answers: the job is created, then answered with these bytes (not JSON, say); the job's
        # JobInfo names job_id instead of its own id; whoami / GET job answer these bytes
        self.submit_raw, self.job_id, self.whoami_raw, self.inspect_raw = submit_raw, job_id, whoami_raw, inspect_raw
        self.jobs: dict[str, dict[str, Any]] = {}
        self.requests: list[Request] = []
        self.access_log: list[str] = []
        self._lock = threading.Lock()

    # -- lifecycle --

    @property
    def url(self) -> str:
        return self.address

    def __enter__(self) -> JobsServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:  # the access log, kept for assertions
                with server._lock:
                    server.access_log.append(fmt % args)

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

        self.serve(Handler, name="jobs-server")
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def submissions(self) -> list[dict[str, Any]]:
        """The bodies of every ``POST /api/jobs/{namespace}``."""
        return [r.body for r in self.requests if r.method == "POST" and r.path.count("/") == 3]

    # -- handling --

    def _job_info(self, job: dict[str, Any]) -> dict[str, Any]:
        spec = job["spec"]
        stage = job["stage"]
        return {"id": job["id"], "createdAt": job["created"], "dockerImage": spec.get("dockerImage"),
                "command": spec["command"], "arguments": spec.get("arguments", []),
                "environment": spec.get("environment", {}),
                "secrets": {k: "***" for k in spec.get("secrets", {})},  # the Hub never echoes a secret
                "flavor": spec["flavor"], "labels": spec.get("labels"),
                "status": {"stage": stage, "message": self.final_message if stage == self.final_stage else None},
                "owner": {"id": "0" * 24, "name": job["namespace"], "type": "user"}}

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(h.path).path
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        authorized = h.headers.get("Authorization") == f"Bearer {self.token}"
        with self._lock:
            self.requests.append(Request(method, path, body, authorized))
        parts = path.strip("/").split("/")

        def send(status: int, payload: Any) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        if path == "/api/whoami-v2":
            if not authorized:
                return send(401, {"error": "Invalid credentials in Authorization header"})
            if self.whoami_raw is not None:
                return send(200, self.whoami_raw)
            return send(200, {"type": "user", "name": self.user, "auth": {"type": "access_token"}})
        if path == "/api/jobs/hardware" and method == "GET":
            if not self.list_hardware:
                return send(404, {"error": "Not Found"})
            return send(200, [{"name": f, "prettyName": f.upper(), "cpu": "8 vCPU", "ram": "32 GB",
                               "accelerator": None, "unitCostMicroUSD": 1, "unitCostUSD": 1e-6, "unitLabel": "minute"}
                              for f in self.flavors])
        if not authorized:
            return send(401, {"error": "Invalid credentials in Authorization header"})
        if len(parts) == 3 and parts[:2] == ["api", "jobs"] and method == "POST":
            if self.submit_status is not None:
                return send(self.submit_status, {"error": f"the stand-in answers {self.submit_status}"})
            if body["flavor"] not in self.flavors:
                return send(400, {"error": f"Invalid flavor: {body['flavor']}"})
            job_id = hashlib.sha1(f"{len(self.jobs)}".encode()).hexdigest()[:24]
            job = {"id": job_id, "namespace": parts[2], "spec": body, "stage": "SCHEDULING", "created": _now()}
            self.jobs[job_id] = job
            if self.submit_raw is not None:
                return send(200, self.submit_raw)
            info = self._job_info(job)
            if self.job_id is not None:
                info["id"] = self.job_id
            return send(200, info)
        if len(parts) >= 4 and parts[:2] == ["api", "jobs"] and parts[3] in self.jobs and method == "GET":
            job = self.jobs[parts[3]]
            if len(parts) == 4:
                return send(200, self.inspect_raw if self.inspect_raw is not None else self._job_info(job))
            if parts[4:] == ["logs"]:
                job["stage"] = "RUNNING"
                h.send_response(200)
                h.send_header("Content-Type", "text/event-stream")
                h.send_header("Connection", "close")
                h.end_headers()
                for line in ["===== Job started at " + _now() + " =====", *self.log_lines]:
                    h.wfile.write(f"data: {json.dumps({'data': line, 'timestamp': _now()})}\n\n".encode())
                    h.wfile.flush()
                job["stage"] = self.final_stage  # the job ends with its log
                h.close_connection = True
                return None
        return send(404, {"error": f"no route {method} {path}"})
