"""``hub-pgen ... --push-to OWNER/NAME --job FLAVOR``: the same command, run on a Hugging Face Jobs machine.

What is sent (``huggingface_hub.HfApi.run_job``), and nothing else:

- ``image``: uv's Python 3.12 image (``ghcr.io/astral-sh/uv:python3.12-bookworm``, the one
  ``hf jobs uv run`` uses; PyPI's torch wheels carry their CUDA libraries, the machine its driver);
- ``command``: ``uv tool run --from SPEC [--with PKG ...] hub-pgen ARGS`` where ARGS are the user's own
  arguments, in their order, minus the job's flags (``--job``, ``--follow``, ``--job-timeout``,
  ``--job-install``, and ``--dry-run``, which previews the job) and minus ``--output-dir`` (a local path: the job writes to its own default folder
  on a disk that is gone when it ends; its result reaches the Hub through ``--push-to``);
- ``flavor``, ``timeout`` (``--job-timeout``, default 2h), ``env`` (``PYTHONUNBUFFERED=1``, so the log
  streams as it is written) and a ``name`` label (``hub-pgen-OWNER-NAME``);
- ``secrets``: ``HF_TOKEN`` (the token ``huggingface_hub.get_token()`` finds), plus the model server's
  key under its own variable for ``--backend openai --base-url URL``. A secret is the only place a
  token goes: never the command, the printed output, the logs or an error.

How the job gets hub-pgen (it is not on PyPI): ``--job-install SPEC`` (repeatable; the first is what
``uv tool run --from`` installs hub-pgen from, any further ones are installed beside it with ``--with``).
Without it, the job installs the hub-pgen *this* one was installed from: a git install (``pip install
git+URL``) gives ``hub-pgen[EXTRAS] @ git+URL@COMMIT`` (the exact commit), an archive URL that URL, an
index install ``hub-pgen[EXTRAS]==VERSION``; an editable or local-folder install has no address a job
could reach, so the run stops and asks for ``--job-install``. EXTRAS is ``transformers`` for the
in-process backend; ``--serve vllm|sglang`` adds the engine (``--with vllm`` / ``--with sglang``).

Refused before anything is sent: no ``--push-to`` (the result would be lost with the machine),
``--root`` / ``--input-jsonl`` / a local ``--model`` folder / a loopback ``--base-url`` (local things the
job cannot see), ``--serve-command`` (its engine is not in the image), ``--retry-failed`` (the job
starts from an empty disk), no token, a token inside an argument, and an unknown flavor (checked
against the Jobs API's hardware list; when that list cannot be read, the server's answer to the
submission is mapped to a message instead). ``--job ... --dry-run`` prints what would be sent and
sends nothing (the job itself never gets ``--dry-run``: for the plan's cost, run ``--dry-run`` here).

Answers of the Jobs API are not trusted: ids (the user name, the job id) are checked before they are
printed or put into a URL; an answer that cannot be read is exit 6, and after the submission it says the
job may have been submitted, and where to look and cancel it (:mod:`hub_pgen.jobs_api`). What is printed of the
command (the summary, ``--json``) is redacted (:mod:`hub_pgen.redact`); token-shaped arguments are refused.

``--follow`` streams the job's log until it ends; the exit code is then 0 for ``COMPLETED`` and
:data:`EXIT_JOB_FAILED` (9) for ``ERROR``, ``CANCELED`` or ``DELETED`` (a timeout ends as ``ERROR`` or
``CANCELED``); Ctrl-C stops following (exit 130) and leaves the job running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hub_pgen import __version__
from hub_pgen.errors import UsageError
from hub_pgen.install import installed_from_index
from hub_pgen.redact import redact_text

logger = logging.getLogger(__name__)

try:  # the image `hf jobs uv run` uses; a private constant, so kept here too
    from huggingface_hub._jobs_api import DEFAULT_UV_IMAGE as IMAGE
except ImportError:  # pragma: no cover - another huggingface_hub layout
    IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"

DEFAULT_TIMEOUT = "2h"
EXIT_JOB_FAILED = 9
EXIT_INTERRUPTED = 130
# the flags of the job itself, never sent (True: takes a value); with --job, --dry-run previews the job
JOB_FLAGS = {"--job": True, "--follow": False, "--job-timeout": True, "--job-install": True, "--dry-run": False}
# local-only flags left out of the job's command: the job has its own disk
DROPPED_FLAGS = ("--output-dir",)
ENGINES = {"vllm": "vllm", "sglang": "sglang"}  # --serve X: the package the job installs beside hub-pgen
# after the log stream ends: how long to wait for the job's final stage, and how often to ask
_TIMEOUT_RE = re.compile(r"^\d+(\.\d+)?[smhd]?$")
FLAVOR_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_LOOPBACK = ("localhost", "0.0.0.0", "::1", "ip6-localhost")
# what a server-provided id may be before it is printed or put into a URL (a Hub job id is 24 hex digits)


@dataclass(frozen=True)
class Submission:
    """What ``run_job`` is given, less the secrets' values (``secret_names`` only)."""

    image: str
    command: list[str]
    flavor: str
    timeout: str
    env: dict[str, str]
    secret_names: list[str]
    name: str
    install: list[str]
    dropped: list[str] = field(default_factory=list)  # local-only flags left out of the command


def check_unused(args: argparse.Namespace) -> None:
    """The job's options without ``--job``: a mistake, not something to ignore."""
    given = [flag for flag, value in (("--follow", args.follow), ("--job-timeout", args.job_timeout),
                                      ("--job-install", args.job_install)) if value]
    if given:
        raise UsageError(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to a Hugging Face job "
                         "(--job FLAVOR)",
                         hint="add --job FLAVOR (e.g. --job a10g-large) to run on a Hugging Face machine, or "
                              f"drop {', '.join(given)}")


def remote_arguments(argv: Sequence[str], parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """The user's arguments for the job's hub-pgen, in their order: without the job's own flags and the
    local-only ones (returned second). A flag's value goes with it (``--x V`` or ``--x=V``)."""
    takes_value = {opt: action.nargs != 0 for action in parser._actions for opt in action.option_strings}
    takes_value.update(JOB_FLAGS)
    out: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, _ = token.partition("=")
        width = 2 if token.startswith("--") and not eq and takes_value.get(name, False) else 1
        if name in DROPPED_FLAGS:
            dropped.append(name)
        elif name not in JOB_FLAGS:
            out.extend(argv[i:i + width])
        i += width
    return out, dropped


# --- where the job gets hub-pgen ----------------------------------------------------------------


def _direct_url() -> dict[str, Any] | None:
    """PEP 610's record of where this hub-pgen was installed from (None: an index, or a legacy develop install)."""
    import importlib.metadata

    try:
        raw = importlib.metadata.distribution("hub-pgen").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return {"url": Path(__file__).resolve().parent.parent.as_uri()}  # running from a source folder
    return json.loads(raw) if raw else None


def default_install(backend: str, serve: str | None) -> list[str]:
    """What the job installs when ``--job-install`` is not given (see the module's docstring)."""
    extras = "[transformers]" if backend == "transformers" else ""
    engines = [ENGINES[serve]] if serve in ENGINES else []
    info = _direct_url()
    if info is None and installed_from_index():
        return [f"hub-pgen{extras}=={__version__}", *engines]
    url = (info or {}).get("url", "")
    parts = urlsplit(url)
    if info is not None and parts.scheme in ("http", "https") and "@" not in parts.netloc:
        vcs = info.get("vcs_info")
        if vcs and vcs.get("vcs") == "git" and vcs.get("commit_id"):
            sub = f"#subdirectory={info['subdirectory']}" if info.get("subdirectory") else ""
            return [f"hub-pgen{extras} @ git+{url}@{vcs['commit_id']}{sub}", *engines]
        if "archive_info" in info:
            return [f"hub-pgen{extras} @ {url}", *engines]
    raise UsageError(
        "--job: this hub-pgen was installed from a local folder, which a Hugging Face job cannot install from; "
        "say where the job gets hub-pgen",
        hint=f"add --job-install \"{_suggested_spec(extras)}\" (a pip requirement uv can install: a git URL "
             "with the commit you want, pushed, or a wheel's URL)",
    )


def _suggested_spec(extras: str) -> str:
    """``hub-pgen[EXTRAS] @ git+URL@COMMIT`` for the checkout this hub-pgen runs from, when it has a
    public ``origin``; else the same shape with placeholders."""
    folder = Path(__file__).resolve().parent.parent
    url, commit = "https://github.com/OWNER/hub-pgen", "COMMIT"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        origin = subprocess.run(["git", "-C", str(folder), "remote", "get-url", "origin"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5).stdout.strip()
        m = re.match(r"^git@([^:]+):(.+?)(\.git)?$", origin)
        origin = f"https://{m.group(1)}/{m.group(2)}" if m else origin
        if origin.startswith("https://") and "@" not in urlsplit(origin).netloc:
            url = origin.removesuffix(".git")
            commit = head if re.fullmatch(r"[0-9a-f]{40}", head) else commit
    return f"hub-pgen{extras} @ git+{url}@{commit}"


# --- checks and the job's spec, before any request ----------------------------------------------


def prepare(args: argparse.Namespace, argv: Sequence[str], parser: argparse.ArgumentParser,
            config_from_args: Callable[[argparse.Namespace], Any]) -> tuple[Submission, dict[str, str]]:
    """Every check that needs no network, then what would be sent: (submission, secrets). Raises
    :class:`UsageError` for each refusal listed in the module's docstring. ``config_from_args``: the
    command line's flags → RunConfig (hub_pgen.cli.configure), passed in so this library module never
    imports the command line."""
    flavor = args.job
    if not args.push_to:
        raise UsageError(f"--job {flavor} runs on a Hugging Face machine that is gone when the job ends: without "
                         "--push-to its result would be lost",
                         hint="add --push-to OWNER/NAME (the job pushes the new dataset there)")
    for flag, value in (("--root", args.root), ("--input-jsonl", args.input_jsonl)):
        if value is not None:
            raise UsageError(f"--job cannot read {flag} {value}: it is a path on this machine, and the job runs "
                             "on another one",
                             hint="push the dataset to the Hub first (hf upload OWNER/NAME DIR --repo-type dataset) "
                                  "and give --repo-id OWNER/NAME, or run without --job")
    if args.retry_failed:
        raise UsageError("--retry-failed redoes the failures of an earlier result on this machine's disk; a job "
                         "starts from an empty one",
                         hint="run --retry-failed here, where the result is, or rerun the whole job")
    config = config_from_args(args)  # every option checked here, before a GPU is paid for
    if args.serve_command:
        raise UsageError("--serve-command starts an engine the job's image does not have",
                         hint="use --serve vllm or --serve sglang (the job installs that engine), or --base-url "
                              "a server the job can reach")
    if args.base_url:
        host = (urlsplit(args.base_url).hostname or "").lower()
        if host in _LOOPBACK or host.startswith("127."):
            raise UsageError(f"--base-url {args.base_url} is this machine's loopback: the job cannot reach it",
                             hint="give a server the job can reach over the internet, or --serve vllm to start "
                                  "one inside the job")
    for model in args.model or []:
        if Path(model).expanduser().exists():
            raise UsageError(f"--model {model} is a folder on this machine: the job cannot read it",
                             hint="push the model to the Hub (hf upload OWNER/NAME FOLDER) and give its repo id")
    if not FLAVOR_RE.match(flavor):
        raise UsageError(f"--job {flavor!r} is not a flavor name", hint="e.g. --job a10g-large; hf jobs hardware "
                                                                        "lists them")
    timeout = args.job_timeout or DEFAULT_TIMEOUT
    if not _TIMEOUT_RE.match(timeout) or float(timeout.rstrip("smhd")) <= 0:
        raise UsageError(f"--job-timeout {timeout!r} is not a duration",
                         hint="seconds, or a number with s, m, h or d: e.g. --job-timeout 90m")
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise UsageError(f"--job {flavor}: no Hugging Face token here, and the job needs one (to start it, and "
                         "inside it to read the source and push the result)",
                         hint="hf auth login, or set HF_TOKEN to a token with write access")
    secrets = {"HF_TOKEN": token}
    if config.backend == "openai" and args.base_url:
        var = args.api_key_env or ("OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else None)
        if var and var != "HF_TOKEN":
            if not os.environ.get(var):
                raise UsageError(f"--api-key-env {var}: {var} is not set here, so the job would have no key",
                                 hint=f"export {var}=... (it goes to the job as a secret)")
            secrets[var] = os.environ[var]
    remote, dropped = remote_arguments(argv, parser)
    install = list(args.job_install) if args.job_install else default_install(config.backend, config.serve)
    command = ["uv", "tool", "run", "--from", install[0]]
    for extra in install[1:]:
        command += ["--with", extra]
    command += ["hub-pgen", *remote]
    if any(value in arg for value in secrets.values() for arg in command) or any(
            re.search(r"://[^/\s@]+@", spec) for spec in install) or any(redact_text(arg) != arg for arg in command):
        raise UsageError("an argument holds a secret (your Hugging Face token, the server's key, credentials "
                         "in a --job-install URL, or a string shaped like a token: hf_…, sk-…, Bearer …, "
                         "user:pass@ or ?token= in a URL): a job's command is visible to anyone who can see the job",
                         hint="take it out of the arguments: the job gets HF_TOKEN (and --api-key-env's "
                              "variable) as secrets; --job-install needs a URL the job can read without one")
    name = "hub-pgen-" + re.sub(r"[^a-zA-Z0-9_-]", "-", args.push_to)
    sub = Submission(image=IMAGE, command=command, flavor=flavor, timeout=timeout,
                     env={"PYTHONUNBUFFERED": "1"}, secret_names=sorted(secrets), name=name, install=install,
                     dropped=dropped)
    return sub, secrets
