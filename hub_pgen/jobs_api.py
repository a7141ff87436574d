"""Submitting a job and following it, through huggingface_hub's Jobs API (``HfApi.run_job``): the
half of ``--job`` that talks to the Hub. What is sent, and what is refused before, is
:mod:`hub_pgen.jobs`; here every answer of the API is distrusted (ids checked before they are printed
or put into a URL, an unreadable answer exit 6 saying whether the job may exist), and ``--follow``
streams the log until the job ends.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

from hub_pgen.errors import HubError, HubPgenError, UsageError
from hub_pgen.jobs import EXIT_INTERRUPTED, EXIT_JOB_FAILED, FLAVOR_RE, Submission, prepare
from hub_pgen.redact import printable, redact_argv, shown_command
from hub_pgen.textsafe import json_text, say

logger = logging.getLogger(__name__)

JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
TERMINAL_STAGES = ("COMPLETED", "CANCELED", "ERROR", "DELETED")
SETTLE_S = 60.0
POLL_S = 2.0


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
        return [hw.name for hw in api.list_jobs_hardware() if isinstance(hw.name, str) and FLAVOR_RE.match(hw.name)]
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
