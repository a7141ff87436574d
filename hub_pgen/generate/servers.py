"""Model servers started by hub-pgen (``--serve vllm|sglang`` or ``--serve-command``), one per GPU.

Like ``lerobot-annotate``'s ``auto_serve``: when asked, hub-pgen starts the servers itself —
by default one per visible GPU (``--num-servers N``; ``--gpus-per-server G`` for tensor-parallel
models, each server seeing its own ``CUDA_VISIBLE_DEVICES``) — on free loopback ports, waits for
``/health`` (or ``/v1/models``) with a timeout, and hands their URLs to the openai backend, which
spreads requests across them. Each server's output goes to a log file (``OUT.partial/servers/``);
a server that dies or never answers stops the run with :class:`ServerError` quoting the last lines
of its log.

No orphan holds a GPU: each server runs in its own process group (so stopping it stops its own
children, vLLM's engine processes included), gets SIGTERM (then SIGKILL) when the run ends — also on
Ctrl-C and SIGTERM — and, on Linux, is sent SIGTERM by the kernel if hub-pgen itself dies, even by
``kill -9`` (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from hub_pgen import fsio
from hub_pgen.errors import ServerError, UsageError, scrub
from hub_pgen.redact import printable, redact_command, shown_command

logger = logging.getLogger(__name__)

PRESETS = {
    "vllm": "{bin}vllm serve {model} --host 127.0.0.1 --port {port} --tensor-parallel-size {gpus_per_server}",
    "sglang": "{python} -m sglang.launch_server --model-path {model} --host 127.0.0.1 --port {port} "
              "--tp {gpus_per_server}",
}


def preset(name: str) -> str:
    """A preset command for this interpreter: the engine from hub-pgen's own environment (a venv
    that is not activated included), else from PATH."""
    here = Path(sys.executable).parent
    return PRESETS[name].replace("{python}", shlex.quote(sys.executable)).replace(
        "{bin}", shlex.quote(str(here)) + "/" if (here / "vllm").exists() else "")
LOG_TAIL = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


PLACEHOLDERS = ("model", "port", "gpus_per_server")
_KNOWN = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
Piece = tuple[str, str | None]  # (literal text, placeholder or None)


def parse_template(command: str, flag: str = "--serve-command") -> tuple[tuple[Piece, ...], ...]:
    """``command`` split as the shell would (shlex) *first*, then each argument cut into literal text and
    placeholders: a value filled in later (``--model "m --trust-remote-code"``, a quote in it) stays one
    argument, whatever it holds. :class:`UsageError` for an unbalanced quote, a lone brace, a placeholder
    other than :data:`PLACEHOLDERS`, or one with a format spec, conversion, attribute or index."""
    import string

    shown = redact_command(command)
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise UsageError(f"{flag} {shown!r} cannot be split into arguments: {e}",
                         hint="close every quote; quote an argument with spaces whole, e.g. "
                              "--serve-command \"vllm serve {model} --port {port} --chat-template '/x y.jinja'\"") \
            from None
    if not argv:
        raise UsageError(f"{flag} is empty", hint="e.g. --serve-command \"vllm serve {model} --port {port}\"")
    out = []
    for arg in argv:
        pieces: list[Piece] = []
        try:
            parsed = list(string.Formatter().parse(arg))
        except ValueError as e:
            raise UsageError(f"{flag} {shown!r}: the argument '{printable(arg, 80)}' has a lone brace ({e})",
                             hint=f"placeholders are {_KNOWN}; write {{{{ and }}}} for a literal brace") from None
        for literal, name, spec, conversion in parsed:
            if literal:
                pieces.append((literal, None))
            if name is None:
                continue
            typed = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            if name in PLACEHOLDERS and (spec or conversion):
                raise UsageError(f"{flag} {shown!r}: the placeholder {typed} has a format spec or conversion",
                                 hint=f"write it plain: {{{name}}} (the known placeholders: {_KNOWN})")
            if name not in PLACEHOLDERS:
                base = name.split(".")[0].split("[")[0]
                what = ("takes no attribute or index" if base in PLACEHOLDERS
                        else "is not a placeholder hub-pgen knows")
                raise UsageError(f"{flag} {shown!r}: {printable(typed, 80)} {what}",
                                 hint=f"the known placeholders: {_KNOWN}; write {{{{ and }}}} for a literal brace")
            pieces.append(("", name))
        out.append(tuple(pieces))
    return tuple(out)


def fill(template: tuple[tuple[Piece, ...], ...], values: dict[str, str]) -> list[str]:
    """The argument list: each placeholder replaced inside its own argument, nothing split again."""
    return ["".join(values[name] if name else literal for literal, name in pieces) for pieces in template]


@dataclass(frozen=True)
class ServeOptions:
    command: str  # a template: {model}, {port}, {gpus_per_server}
    model: str
    num_servers: int | None = None  # None: one per visible GPU (at least one)
    gpus_per_server: int = 1
    startup_timeout: float = 900.0

    @cached_property
    def _template(self) -> tuple[tuple[Piece, ...], ...]:
        """The command parsed (once: ``__post_init__`` fills the cache); not a field, so not in repr or ==."""
        return parse_template(self.command)

    def __post_init__(self) -> None:
        template = self._template
        used = {name for pieces in template for _, name in pieces if name}
        if "port" not in used:
            raise UsageError(f"--serve-command {redact_command(self.command)!r} has no {{port}}",
                             hint="the command must listen on {port}, e.g. \"vllm serve {model} --port {port}\"")
        if "model" in used and (self.model.startswith("-") or _CONTROL.search(self.model)):
            raise UsageError(f"--model '{printable(self.model, 100)}' cannot go into the server's command: it "
                             + ("starts with '-', so the server would read it as a flag" if self.model.startswith("-")
                                else "holds a control character"),
                             hint="give the model's name or folder (e.g. --model Qwen/Qwen2.5-VL-7B-Instruct)")
        if self.num_servers is not None and self.num_servers < 1:
            raise UsageError(f"--num-servers must be >= 1, got {self.num_servers}")
        if self.gpus_per_server < 1:
            raise UsageError(f"--gpus-per-server must be >= 1, got {self.gpus_per_server}")
        if not self.startup_timeout > 0 or self.startup_timeout == float("inf"):
            raise UsageError(f"--serve-timeout must be a number of seconds > 0, got {self.startup_timeout}")

    def argv(self, port: int) -> list[str]:
        """The command for the server on ``port``, as an argument list (never through a shell)."""
        return fill(self._template, {"model": self.model, "port": str(port),
                                     "gpus_per_server": str(self.gpus_per_server)})


def visible_gpus() -> list[str]:
    """GPU ids this process may use: ``CUDA_VISIBLE_DEVICES``, else what ``nvidia-smi -L`` lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux), however it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen
    log: Path
    gpus: tuple[str, ...] = ()

    def tail(self, n: int = LOG_TAIL) -> str:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in lines[-n:]) or "    (the log is empty)"


@dataclass
class ServerPool:
    options: ServeOptions
    log_dir: Path
    servers: list[Server] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def start(self, report: Callable[[str], None] | None = None) -> list[str]:
        """Start every server and wait until each answers; stop them all if one fails. ``report`` gets
        a line per event a user waits on (a large model can take minutes to load)."""
        report = report or (lambda msg: None)
        gpus = visible_gpus()
        n = self.options.num_servers or max(1, len(gpus) // self.options.gpus_per_server)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for i in range(n):
                share = tuple(gpus[i * self.options.gpus_per_server:(i + 1) * self.options.gpus_per_server])
                server = self._spawn(i, share)
                self.servers.append(server)
                report(f"started server {i} (pid {server.process.pid}, port {server.port}"
                       + (f", GPUs {','.join(share)}" if share else "") + f"), log {server.log}")
            report(f"waiting for {n} server(s) to answer (up to {self.options.startup_timeout:g} s)")
            for server in self.servers:
                self._wait(server)
        except BaseException:
            self.stop()
            raise
        report(f"{len(self.servers)} server(s) up: {', '.join(self.urls)}")
        return self.urls

    def _spawn(self, i: int, gpus: Sequence[str]) -> Server:
        port = free_port()
        argv = self.options.argv(port)
        command = shown_command(argv)  # what the log and messages say: secrets and local paths out (hub_pgen.redact)
        log = self.log_dir / f"server-{i}.log"
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        with open(fsio.open_append(log), "ab") as fh:  # never through a link planted at the log's name
            fh.write(f"$ {scrub(command)}\n".encode())
            fh.flush()
            try:
                process = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                           preexec_fn=_die_with_parent)
            except OSError as e:
                raise ServerError(f"cannot start the model server `{scrub(command)}`: {e.strerror or e}",
                                  hint="is the engine installed (vllm / sglang) and on PATH? --serve-command "
                                       "runs any other") from e
        logger.info("started server %d (pid %d, port %d%s): %s", i, process.pid, port,
                    f", GPUs {','.join(gpus)}" if gpus else "", scrub(command))
        return Server(f"http://127.0.0.1:{port}/v1", port, process, log, tuple(gpus))

    def _wait(self, server: Server) -> None:
        """Until ``/health`` (or ``/v1/models``) answers 200; each probe has 2 s in all (a server that
        drips its answer cannot stretch the wait past ``--serve-timeout``)."""
        from hub_pgen.generate import transport

        with transport.make_client(f"http://127.0.0.1:{server.port}", timeout=2.0, connections=1) as client:
            self._wait_on(server, client)

    def _wait_on(self, server: Server, client: Any) -> None:
        import httpx

        from hub_pgen.generate.transport import fetch

        deadline = time.monotonic() + self.options.startup_timeout
        while True:
            code = server.process.poll()
            if code is not None:
                raise ServerError(f"the model server on port {server.port} exited with code {code} before it was "
                                  f"ready; the end of its log ({server.log}):\n{server.tail()}",
                                  hint="fix what the log says (model name, GPU memory, engine flags) and rerun")
            for path in ("health", "v1/models"):
                with contextlib.suppress(httpx.HTTPError):
                    if fetch(client, "GET", path, timeout=2.0).status_code == 200:
                        return
            if time.monotonic() > deadline:
                raise ServerError(f"the model server on port {server.port} did not answer within "
                                  f"{self.options.startup_timeout:g} s; the end of its log ({server.log}):\n"
                                  f"{server.tail()}", hint="a large model loads slowly: raise --serve-timeout")
            time.sleep(0.25)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM each server's process group, then SIGKILL what is left after ``grace`` seconds."""
        for server in self.servers:
            if server.process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(server.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for server in self.servers:
            try:
                server.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait()
        # the group may hold children that outlived their leader: end them too
        for server in self.servers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.process.pid, signal.SIGKILL)
