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
job may have been submitted, and where to look and cancel it (``_submitting``). What is printed of the
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
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hub_pgen import __version__
from hub_pgen.errors import HubError, HubPgenError, UsageError
from hub_pgen.install import installed_from_index
from hub_pgen.redact import printable, redact_argv, redact_text, shown_command
from hub_pgen.textsafe import json_text, say

logger = logging.getLogger(__name__)

try:  # the image `hf jobs uv run` uses; a private constant, so kept here too
    from huggingface_hub._jobs_api import DEFAULT_UV_IMAGE as IMAGE
except ImportError:  # pragma: no cover - another huggingface_hub layout
    IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"

DEFAULT_TIMEOUT = "2h"
EXIT_JOB_FAILED = 9
EXIT_INTERRUPTED = 130
TERMINAL_STAGES = ("COMPLETED", "CANCELED", "ERROR", "DELETED")
# the flags of the job itself, never sent (True: takes a value); with --job, --dry-run previews the job
JOB_FLAGS = {"--job": True, "--follow": False, "--job-timeout": True, "--job-install": True, "--dry-run": False}
# local-only flags left out of the job's command: the job has its own disk
DROPPED_FLAGS = ("--output-dir",)
ENGINES = {"vllm": "vllm", "sglang": "sglang"}  # --serve X: the package the job installs beside hub-pgen
# after the log stream ends: how long to wait for the job's final stage, and how often to ask
SETTLE_S = 60.0
POLL_S = 2.0
_TIMEOUT_RE = re.compile(r"^\d+(\.\d+)?[smhd]?$")
_FLAVOR_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_LOOPBACK = ("localhost", "0.0.0.0", "::1", "ip6-localhost")
# what a server-provided id may be before it is printed or put into a URL (a Hub job id is 24 hex digits)
JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


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
    if not _FLAVOR_RE.match(flavor):
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


# --- the Jobs API -------------------------------------------------------------------------------


def _redactor(secrets: dict[str, str]):
    from hub_pgen.source.hub_api import redact

    values = tuple(secrets.values())
    return lambda text: redact(str(text), *values)


@contextlib.contextmanager
def _api_errors(what: str, clean, flavor: str) -> Iterator[None]:
    """huggingface_hub's failures as :class:`HubError` (exit 6), with the secrets taken out."""
    from huggingface_hub.errors import HfHubHTTPError

    from hub_pgen.source.hub_api import transport_errors

    try:
        yield
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        said = e.server_message or str(e).splitlines()[0]
        hints = {
            401: "the Hub refused the token: hf auth login again, or set HF_TOKEN to a valid token",
            402: "Hugging Face Jobs are billed: they need a PRO account or an organization with credits "
                 "(https://huggingface.co/settings/billing)",
            403: "the token may not start Jobs: use a token with write access (fine-grained: 'Start and manage "
                 "Jobs')",
        }
        hint = hints.get(status) if status is not None else None
        if hint is None and status in (400, 422) and "flavor" in said.lower():
            hint = f"--job {flavor} is not a flavor the Jobs API knows: hf jobs hardware lists them"
        raise HubError(clean(f"{what}: the Jobs API answered {status}: {said}"),
                       hint=clean(hint or "see the answer above; hf jobs ps lists your jobs")) from None
    except transport_errors() as e:
        raise HubError(clean(f"{what}: the Hub could not be reached ({type(e).__name__}: {e})"),
                       hint="check the connection (and HF_ENDPOINT), then run the same command again") from None


def _checked(value: Any, pattern: re.Pattern[str], what: str) -> str:
    """A server-provided id, before it is printed or put into a URL or path: :class:`ValueError` unless
    it is a string that ``pattern`` matches whole."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"its {what} {printable(repr(value), 80)} is not one (letters, digits, - and _, "
                         "at most 128 characters)")
    return value


@contextlib.contextmanager
def _unreadable(what: str, clean, hint: str, then: str = "") -> Iterator[None]:
    """An answer of the Jobs API that is not JSON, or not of the shape huggingface_hub expects (a
    ``ValueError``, ``KeyError``, ``TypeError`` or ``AttributeError`` inside it), as :class:`HubError`
    (exit 6), never an internal error."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except (HubPgenError, HfHubHTTPError):  # ours; the server's HTTP refusals (some are ValueErrors too)
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        said = f"no {printable(e, 80)}" if isinstance(e, KeyError) else printable(e, 200)
        raise HubError(clean(f"{what} cannot be read ({type(e).__name__}: {said}){then}"), hint=clean(hint)) from None


@contextlib.contextmanager
def _submitting(flavor: str, clean, jobs_page: str) -> Iterator[None]:
    """The submission. Once it is sent, an answer that cannot be read (not JSON, no job id, a broken
    connection, a gateway's 5xx) does not mean there is no job: it may run, and bill. Say so, and where to
    look, rather than invite a second submission."""
    from huggingface_hub.errors import HfHubHTTPError

    from hub_pgen.source.hub_api import transport_errors

    maybe = "the job may have been submitted, and may be running (and billed)"
    where = (f"look at {jobs_page} (or hf jobs ps) and cancel it there (hf jobs cancel ID) if it is; run the same "
             "command again only if no job is there, or it would run twice")
    try:
        with _unreadable(f"--job {flavor}: the Jobs API's answer to the submission", clean, where, f"; {maybe}"):
            yield
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None) or 0
        if status < 500:  # refused: no job (the hints of _api_errors say why)
            with _api_errors(f"--job {flavor}", clean, flavor):
                raise
        said = e.server_message or str(e).splitlines()[0]
        raise HubError(clean(f"--job {flavor}: the Jobs API answered {status} to the submission: "
                             f"{printable(said, 200)}; {maybe}"), hint=clean(where)) from None
    except transport_errors() as e:
        if type(e).__name__ == "ConnectError":  # no connection, so nothing was sent
            raise HubError(clean(f"--job {flavor}: the Hub could not be reached ({printable(e, 200)}); nothing was "
                                 "submitted"), hint="check the connection (and HF_ENDPOINT), then run the same "
                                                    "command again") from None
        raise HubError(clean(f"--job {flavor}: the connection broke during the submission ({type(e).__name__}: "
                             f"{printable(e, 200)}); {maybe}"), hint=clean(where)) from None


def _flavors(api) -> list[str] | None:
    """The Jobs API's flavors, or None when it will not say (the submission's answer decides then)."""
    from huggingface_hub.errors import HfHubHTTPError

    from hub_pgen.source.hub_api import transport_errors

    read_errors: tuple[type[BaseException], ...] = (HfHubHTTPError, KeyError, TypeError, ValueError, *transport_errors())
    try:
        return [hw.name for hw in api.list_jobs_hardware() if isinstance(hw.name, str) and _FLAVOR_RE.match(hw.name)]
    except read_errors as e:
        logger.debug("the Jobs hardware list could not be read (%s): the flavor is checked by the submission",
                     type(e).__name__)
        return None


def _describe(sub: Submission) -> list[str]:
    return [f"  image    {sub.image}",
            f"  flavor   {sub.flavor}",
            f"  timeout  {sub.timeout}",
            f"  secrets  {', '.join(sub.secret_names)}",
            f"  command  {shown_command(sub.command)}"]


def _recorded(sub: Submission) -> dict[str, Any]:
    """The submission as printed with --json: its command and install specs redacted (hub_pgen.redact)."""
    return {**asdict(sub), "command": redact_argv(sub.command), "install": redact_argv(sub.install)}


def submit_main(args: argparse.Namespace, argv: Sequence[str], parser: argparse.ArgumentParser,
                config_from_args: Callable[[argparse.Namespace], Any]) -> int:
    """``--job FLAVOR``: check, submit, print the job's id and URL; with ``--follow``, stream its log and
    return the exit code of its final stage."""
    from hub_pgen.source.hub_api import make_api

    sub, secrets = prepare(args, argv, parser, config_from_args)
    clean = _redactor(secrets)
    if sub.dropped and not args.quiet:
        say(f"hub-pgen: {', '.join(sub.dropped)} left out of the job: it names this machine's disk; the job "
              "writes to its own, and its result goes to --push-to", file=sys.stderr)
    if args.dry_run:
        if args.json:
            say(json_text({"state": "job-dry-run", **_recorded(sub)}, indent=2, sort_keys=True))
        else:
            say(clean("\n".join(["hub-pgen: --dry-run: this job would be submitted (nothing was sent):",
                                   *_describe(sub)])))
        return 0
    if not args.verbose:
        from huggingface_hub.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    api = make_api(token=secrets["HF_TOKEN"])
    with _api_errors(f"--job {sub.flavor}", clean, sub.flavor):
        flavors = _flavors(api)
        if flavors is not None and sub.flavor not in flavors:
            import difflib

            close = difflib.get_close_matches(sub.flavor, flavors, n=1)
            raise UsageError(f"--job {sub.flavor}: the Jobs API has no such flavor",
                             hint=(f"did you mean --job {close[0]}? " if close else "")
                             + "flavors: " + ", ".join(flavors))
        with _unreadable(f"--job {sub.flavor}: the Hub's answer to who you are", clean,
                         "nothing was submitted; check HF_ENDPOINT (it must be the Hub), then run the same command "
                         "again"):
            namespace = _checked(api.whoami()["name"], NAMESPACE_RE, "user name")
    jobs_page = f"{api.endpoint}/settings/jobs"
    with _submitting(sub.flavor, clean, jobs_page):
        job = api.run_job(image=sub.image, command=sub.command, env=sub.env, secrets=secrets, flavor=sub.flavor,
                          timeout=sub.timeout, name=sub.name, namespace=namespace)
        job_id = _checked(job.id, JOB_ID_RE, "job id")
    url = f"{api.endpoint}/jobs/{namespace}/{job_id}"  # from checked parts, not the answer's own URL
    out = sys.stderr if args.json else sys.stdout
    record: dict[str, Any] = {"state": "job-submitted", "job_id": job_id, "url": url, "flavor": sub.flavor,
                              "image": sub.image, "command": redact_argv(sub.command), "timeout": sub.timeout,
                              "secrets": sub.secret_names, "push_to": args.push_to}
    if args.quiet and not args.json:
        say(url)
    elif not args.json:
        say(clean("\n".join([f"hub-pgen: job {job_id} submitted: {url}", *_describe(sub),
                             f"  logs: hf jobs logs {job_id}    cancel: hf jobs cancel {job_id}"])), flush=True)
    if not args.follow:
        if args.json:
            say(json_text(record, indent=2, sort_keys=True))
        return 0
    stage, message, interrupted = _follow(api, job_id, namespace, out, clean, sub.flavor)
    code = 0 if stage == "COMPLETED" else EXIT_JOB_FAILED if stage in TERMINAL_STAGES else EXIT_INTERRUPTED
    record.update({"state": f"job-{stage.lower()}", "stage": stage, "message": message, "exit_code": code})
    if stage == "COMPLETED":
        record["pushed"] = f"{api.endpoint}/datasets/{args.push_to}" + (
            f"/tree/{args.branch}" if args.branch else "")
    if args.json:
        say(clean(json_text(record, indent=2, sort_keys=True)))
    elif interrupted:
        say(f"hub-pgen: stopped following job {job_id}; it goes on ({stage}).\nTIP: follow it again with "
            f"hf jobs logs {job_id}, or stop it with hf jobs cancel {job_id}", file=sys.stderr)
    elif stage == "COMPLETED":
        if not args.quiet:
            say(f"hub-pgen: job {job_id} COMPLETED; the dataset: {record['pushed']}", file=sys.stderr)
    else:
        say(clean(f"hub-pgen: error: job {job_id} ended {stage}" + (f": {message}" if message else "")),
            file=sys.stderr)
        say(f"TIP: its log above says why (hf jobs logs {job_id}); fix the cause and run the same command "
              "again", file=sys.stderr)
    return code


@contextlib.contextmanager
def _noting_interrupts() -> Iterator[list[int]]:
    """huggingface_hub's log stream swallows KeyboardInterrupt (it just ends): note the signal, so an
    interrupted follow is told from a job that ended."""
    import threading

    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def handler(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield seen
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _follow(api, job_id: str, namespace: str, out, clean, flavor: str) -> tuple[str, str | None, bool]:
    """Stream the log to ``out``, then wait for the final stage: (stage, status message, interrupted)."""
    goes_on = (f"the job goes on: hf jobs inspect {job_id} shows its stage, hf jobs logs {job_id} its log, "
               f"hf jobs cancel {job_id} stops it")
    with _noting_interrupts() as seen:
        try:
            with _unreadable(f"following job {job_id}: an answer about the job", clean, goes_on), \
                    _api_errors(f"following job {job_id}", clean, flavor):
                for line in api.fetch_job_logs(job_id=job_id, namespace=namespace, follow=True):
                    say(clean(line), file=out, flush=True)
                if seen:
                    raise KeyboardInterrupt
                deadline = time.monotonic() + SETTLE_S
                while True:
                    info = api.inspect_job(job_id=job_id, namespace=namespace)
                    stage = _stage(info)
                    if stage in TERMINAL_STAGES:
                        return stage, _message(info), False
                    if time.monotonic() >= deadline:
                        raise HubError(f"the log of job {job_id} ended while the job is still {stage}",
                                       hint=f"follow it again with hf jobs logs {job_id} (hf jobs inspect "
                                            f"{job_id} shows its stage)")
                    time.sleep(POLL_S)
        except KeyboardInterrupt:
            stage, message = "RUNNING", None
            with contextlib.suppress(Exception):
                info = api.inspect_job(job_id=job_id, namespace=namespace)
                stage, message = _stage(info), _message(info)
            return stage, message, stage not in TERMINAL_STAGES


def _stage(info) -> str:
    stage = info.status.stage
    return printable(str(getattr(stage, "value", stage)), 40)


def _message(info) -> str | None:
    """The job's status message, as the server gave it: fit to print (control characters escaped)."""
    message = info.status.message
    return None if message is None else printable(message, 500)
