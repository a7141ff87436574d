"""How hub-pgen talks to the Hugging Face Hub, in one place: the environment (offline, cache), the
client (:func:`make_api`), retries of transient failures (:func:`with_retries`) and the translation
of Hub failures into :class:`~hub_pgen.errors.HubError` s that name the repo and the next step
(:func:`hub_errors`), with the token kept out of every message (:func:`redact`). The downloads
(:mod:`hub_pgen.source.hub`), the push (:mod:`hub_pgen.push.hub`) and Jobs share them.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from hub_pgen import __version__
from hub_pgen.errors import HubError, scrub

if TYPE_CHECKING:
    from huggingface_hub import HfApi

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
_TRUE = {"1", "on", "yes", "true"}
T = TypeVar("T")


# --- environment --------------------------------------------------------------------------------


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return (env is not None and env.strip().lower() in _TRUE) or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def default_cache_dir() -> Path:
    """The Hub cache as the environment says now: ``HF_HUB_CACHE``, else ``$HF_HOME/hub``."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def check_cache_folders(cache_dir: Path | None = None) -> None:
    """HF_HOME and the Hub cache must be folders (or creatable as folders) before any download."""
    from huggingface_hub import constants

    for folder in {Path(cache_dir or default_cache_dir()),
                   Path(os.environ.get("HF_HOME") or constants.HF_HOME).expanduser()}:
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise HubError(
                f"cannot use {folder} for the Hugging Face cache: {probe} is a file, not a folder",
                hint="set HF_HOME (or HF_HUB_CACHE) to a folder you can write",
            )


def make_api(token: str | bool | None = None, endpoint: str | None = None) -> HfApi:
    """An ``HfApi`` for ``HF_ENDPOINT`` as set now; the token comes from ``HF_TOKEN``/login unless given."""
    from huggingface_hub import HfApi

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    return HfApi(endpoint=endpoint.rstrip("/") if endpoint else None, token=token,
                 library_name="hub-pgen", library_version=__version__)


def redact(text: str, *secrets: str | None) -> str:
    """``text`` without any token in it: the one given, ``HF_TOKEN``, or anything shaped like ``hf_…``."""
    for s in (*secrets, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")):
        if isinstance(s, str) and len(s) >= 4:
            text = text.replace(s, "***")
    return scrub(re.sub(r"\bhf_[A-Za-z0-9]{20,}\b", "hf_***", text))


# --- retries and error translation -------------------------------------------------------------


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level failures: huggingface_hub 1.x speaks ``httpx``, 2.x ``httpx2``."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for name in ("httpx", "httpx2"):
        with contextlib.suppress(ImportError):
            found.append(importlib.import_module(name).TransportError)
    return tuple(found)


def _status_of(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def is_retryable(error: BaseException) -> bool:
    """429 and 5xx answers, and connections that broke; never 4xx (retrying cannot fix those)."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return False
    status = _status_of(error)
    if status is not None:
        return status == 429 or 500 <= status < 600
    return isinstance(error, transport_errors())


def _retry_after(error: BaseException) -> float | None:
    response = getattr(error, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def with_retries(fn: Callable[[], T], *, what: str, attempts: int = 5, base_delay: float = 1.0,
                 max_delay: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn`` until it succeeds, at most ``attempts`` times, backing off exponentially (with
    jitter, honouring ``Retry-After``) on 429/5xx and broken connections. ``fn`` must be safe to
    repeat: the push rebuilds its commit from the Hub's state on every attempt for that reason."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 — filtered by is_retryable, re-raised otherwise
            if attempt >= attempts or not is_retryable(e):
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (1 + random.random() / 4)
            delay *= float(os.environ.get("HUB_PGEN_RETRY_SCALE", "1"))  # tests shrink the waits
            hinted = _retry_after(e)
            if hinted is not None:
                delay = min(max_delay, max(delay, hinted))
            logger.warning("%s failed (%s); retry %d/%d in %.2fs", what, redact(_short(e)), attempt,
                           attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    status = _status_of(error)
    head = text[0] if text else type(error).__name__
    return f"{type(error).__name__}: {head}" + (f" (HTTP {status})" if status and str(status) not in head else "")


@contextlib.contextmanager
def hub_errors(repo_id: str, *, action: str, revision: str | None = None, endpoint: str | None = None,
               cache_dir: Path | None = None, token: str | bool | None = None) -> Iterator[None]:
    """Turn huggingface_hub exceptions into :class:`HubError` s that say what to do next."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    secret = token if isinstance(token, str) else None
    where = endpoint or "the Hub"
    try:
        yield
    except HubError:
        raise
    except RevisionNotFoundError as e:
        raise HubError(
            f"{action}: revision {revision!r} does not exist in dataset repo {repo_id} on {where}",
            repo_id=repo_id,
            hint="pass an existing branch, tag or commit with --revision (or leave it out: the v3.0 tag, else main)",
        ) from e
    except RepositoryNotFoundError as e:
        raise HubError(
            f"{action}: dataset repo {repo_id} was not found on {where} "
            "(or it is private or gated and the token cannot read it)",
            repo_id=repo_id,
            hint="check the repo id (OWNER/NAME, a dataset repo); for a private or gated dataset set HF_TOKEN "
            "to a token with access, or run `hf auth login`",
        ) from e
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        what = f"{repo_id}" + (f"@{revision}" if revision else "")
        cache = cache_dir or default_cache_dir()
        if is_offline():
            raise HubError(
                f"{action}: HF_HUB_OFFLINE is set and {what} is not (or not completely) in the Hub cache {cache}",
                repo_id=repo_id,
                hint="run once with network access (same --repo-id and --revision) to fill the cache, "
                "or unset HF_HUB_OFFLINE",
            ) from e
        raise HubError(
            f"{action}: {where} could not be reached and {what} is not (completely) in the Hub cache {cache} "
            f"({redact(_short(e), secret)})",
            repo_id=repo_id,
            hint="check the network and HF_ENDPOINT, then rerun the same command",
        ) from e
    except HfHubHTTPError as e:
        status = _status_of(e)
        if status in (401, 403):
            hint = "the token cannot do this: use a token with write access to this namespace (HF_TOKEN)"
        elif status in (409, 412):
            hint = "the repo changed while hub-pgen worked on it (another push?); rerun the same command"
        else:
            hint = "the Hub had a problem; rerun the same command in a few minutes"
        raise HubError(f"{action}: the Hub answered HTTP {status} for {repo_id}: {redact(_short(e), secret)}",
                       repo_id=repo_id, hint=hint) from e
    except transport_errors() as e:
        raise HubError(
            f"{action}: cannot reach {where} ({redact(_short(e), secret)})",
            repo_id=repo_id,
            hint="check the network and HF_ENDPOINT" + ("" if action == "push" else
                                                       "; with a warm cache, HF_HUB_OFFLINE=1 works without network"),
        ) from e
    except (NotADirectoryError, FileExistsError, PermissionError) as e:
        cache = Path(cache_dir or default_cache_dir())
        touched = Path(str(e.filename)) if e.filename else None
        if touched is None or not (touched == cache or cache in touched.parents or touched in cache.parents):
            raise
        raise HubError(
            f"{action}: cannot use the Hub cache folder {cache} ({e.strerror}: {e.filename})",
            repo_id=repo_id,
            hint="set HF_HOME (or HF_HUB_CACHE) to a folder you can write; a file may stand where a folder must be",
        ) from e
