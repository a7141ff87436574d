"""Push a finished hub-pgen dataset folder to the Hub: one commit, then the ``v3.0`` tag.

Why one ``create_commit`` and not ``upload_folder``: with ``hf_xet`` installed (the default from
huggingface_hub 1.x on, and what lerobot brings), ``upload_folder`` streams large folders as
*several* commits, so a push that dies halfway leaves the repo with part of a dataset. Here every
attempt builds the whole change — every file of the folder, plus deletions of files the target
branch has and the folder does not — and sends it as a single commit based on the branch head it
was computed from (``parent_commit``). The Hub applies a commit whole or not at all, so the repo
holds either the previous dataset or the new one. A rerun of the same folder is a no-op (the client
drops unchanged files and makes no empty commit); a retry after a lost answer is one too.

Tagging follows LeRobot: ``LeRobotDataset("OWNER/NAME")`` loads the ``v3.0`` tag, so a push to
``main`` puts the tag on the pushed commit. A push to ``--branch`` leaves ``main`` and the tag alone
unless ``tag_version=True``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote

from hub_pgen import __version__, layout
from hub_pgen.errors import HubError, OutputError, SourceError, UsageError
from hub_pgen.source.hub_api import REPO_TYPE, hub_errors, make_api, redact, with_retries
from hub_pgen.write.card import refresh_card

if TYPE_CHECKING:
    from huggingface_hub import HfApi

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_BRANCH = "main"
VERSION_TAG = layout.CODEBASE_VERSION
# Never pushed: local download metadata, VCS folders, editor and OS litter.
SKIP_DIRS = frozenset({".cache", ".git", ".hub-pgen", "__pycache__"})
SKIP_FILES = frozenset({".DS_Store"})
# Never deleted from the repo by a push, even when the folder lacks them.
KEEP_REMOTE = frozenset({".gitattributes"})


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    branch: str  # the branch pushed to ("main" when none was asked)
    commit_sha: str  # head of ``branch`` after the push
    url: str
    tagged: bool  # the v3.0 tag points at ``commit_sha`` after the push
    created_repo: bool = False
    changed: bool = True  # False: the branch already held exactly this folder, no commit was made


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for 429/5xx and broken connections (tests shrink ``base_delay``)."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError(f"RetryPolicy needs attempts >= 1 and delays >= 0, got {self}")


class _Call(Protocol):
    """Runs one Hub request under the push's retry policy."""

    def __call__(self, fn: Callable[[], T], what: str) -> T: ...


# --- checks before any network call -------------------------------------------------------------


def check_complete(folder: Path) -> None:
    """A folder is pushable once the writer has finished it: ``meta/info.json`` is there and
    ``meta/hub_pgen.json`` (written last) is there and parses."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OutputError(f"nothing to push: {folder} is not a folder", path=folder,
                          hint="pass the output folder of a finished run (its --output-dir)")
    missing = [rel for rel in (layout.INFO_PATH, layout.PROVENANCE_PATH) if not (folder / rel).is_file()]
    if missing:
        raise OutputError(
            f"refusing to push {folder}: it is not a finished hub-pgen dataset ({', '.join(missing)} missing)",
            path=folder,
            hint="rerun the same hub-pgen command: it resumes from the journal and finishes the folder, then pushes",
        )
    from hub_pgen.provenance_file import read_provenance

    try:
        read_provenance(folder)
    except SourceError as e:
        raise OutputError(f"refusing to push {folder}: {e.message}", path=folder,
                          hint="rerun the same hub-pgen command to rewrite the folder") from None


def local_files(folder: Path, *, links_out: bool = False) -> dict[str, Path]:
    """Repo path → local file, for everything the push sends (sorted, POSIX paths). Only regular files
    inside the folder are sent: a link that leaves it, or a FIFO, device or socket, stops the push
    (``links_out=True`` lists links out too: a Hub snapshot's files link into the cache's blobs)."""
    out: dict[str, Path] = {}
    outside: list[str] = []
    real_folder = os.path.realpath(folder)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        rel_dir = Path(dirpath).relative_to(folder)
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            if name in SKIP_FILES:
                continue
            path = Path(dirpath) / name
            rel = (rel_dir / name).as_posix()
            target = os.path.realpath(path)
            if not os.path.isfile(target) or not (links_out or target.startswith(real_folder + os.sep)):
                outside.append(rel)
                continue
            out[rel] = path
    if outside:
        raise OutputError(
            f"refusing to push {folder}: {len(outside)} entr(ies) are not regular files inside it: "
            + ", ".join(outside[:5]) + (" …" if len(outside) > 5 else ""),
            path=folder, hint="a dataset folder to push holds only its own files: remove links that leave it and "
                              "special files",
        )
    return out


def default_commit_message(folder: Path) -> str:
    from hub_pgen.provenance_file import read_provenance

    try:
        prov = read_provenance(Path(folder))
    except SourceError:
        prov = {}
    fp = str(prov.get("fingerprint") or "")[:12]
    src = (prov.get("source") or {}).get("repo_id")
    return f"hub-pgen {__version__}: Hi Robot dialogues" + (f" for {src}" if src else "") + (f" ({fp})" if fp else "")


# --- the push -----------------------------------------------------------------------------------


def push_dataset(
    folder: Path,
    repo_id: str,
    *,
    branch: str | None = None,
    private: bool = False,
    tag_version: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    api: HfApi | None = None,
    validate: Callable[[Path], None] | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> PushResult:
    """Create ``repo_id`` if needed, commit ``folder`` to ``branch`` (default main) in one commit,
    and tag it ``v3.0`` (default: when pushing to main). Checks the folder — complete, and
    ``validate(folder)`` when given — before the first request. ``token`` is used when no ``api``
    is given (else the api's own); by default ``HF_TOKEN`` or the saved login."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UsageError(f"--push-to needs OWNER/NAME, got {repo_id!r}", hint="e.g. --push-to your-username/my-dataset-pgen")
    folder = Path(folder)
    check_complete(folder)
    # the card's load snippet names where the dataset goes, whatever the run was started with
    refresh_card(folder, repo_id=repo_id, branch=branch)
    if validate is not None:
        validate(folder)
    target = branch or DEFAULT_BRANCH
    tag = tag_version if tag_version is not None else branch in (None, DEFAULT_BRANCH)
    api = api or make_api(token=token)
    message = commit_message or default_commit_message(folder)

    def call(fn: Callable[[], Any], what: str) -> Any:
        return with_retries(fn, what=what, attempts=retry.attempts, base_delay=retry.base_delay,
                            max_delay=retry.max_delay)

    with hub_errors(repo_id, action="push", revision=target, endpoint=api.endpoint, token=token or api.token):
        created = _ensure_repo(api, repo_id, private=private, call=call)
        if target != DEFAULT_BRANCH:
            call(lambda: api.create_branch(repo_id, branch=target, repo_type=REPO_TYPE, exist_ok=True),
                 f"create branch {target}")
        before = _head(api, repo_id, target, call)
        sha = call(lambda: _commit_folder(api, repo_id, folder, target, message), f"commit to {repo_id}@{target}")
        tagged = _tag(api, repo_id, sha, call) if tag else _tag_target(api, repo_id, call) == sha
    url = f"{api.endpoint}/datasets/{repo_id}" + ("" if target == DEFAULT_BRANCH else f"/tree/{quote(target, safe='')}")
    result = PushResult(repo_id, target, sha, url, tagged, created_repo=created, changed=sha != before)
    logger.info("pushed %s to %s@%s: commit %s%s%s", folder, repo_id, target, sha[:8],
                "" if result.changed else " (no change)", f", tag {VERSION_TAG}" if tagged else "")
    return result


def _ensure_repo(api: HfApi, repo_id: str, *, private: bool, call: _Call) -> bool:
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = call(lambda: api.repo_info(repo_id, repo_type=REPO_TYPE), f"look up {repo_id}")
    except RepositoryNotFoundError:
        call(lambda: api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True),
             f"create {repo_id}")
        logger.info("created dataset repo %s (%s)", repo_id, "private" if private else "public")
        return True
    if private and not getattr(info, "private", False):
        logger.warning("%s already exists and is public; --private only applies to new repos", repo_id)
    return False


def _head(api: HfApi, repo_id: str, branch: str, call: _Call) -> str | None:
    info = call(lambda: api.repo_info(repo_id, repo_type=REPO_TYPE, revision=branch), f"look up {repo_id}@{branch}")
    return info.sha


def _commit_folder(api: HfApi, repo_id: str, folder: Path, branch: str, message: str) -> str:
    """One attempt: read the branch's state now, send the whole difference as one commit on top of
    it. Rebuilt from scratch on every retry, so a commit that landed before its answer was lost is
    seen as already there (no duplicate, no empty commit)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    head = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=branch).sha
    remote = set(api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=head))
    files = local_files(folder)
    ops: list[CommitOperationAdd | CommitOperationDelete] = [CommitOperationDelete(path_in_repo=p) for p in sorted(remote - set(files) - KEEP_REMOTE)]
    ops += [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path)) for rel, path in files.items()]
    logger.info("commit to %s@%s: %d file(s), %d stale file(s) removed", repo_id, branch, len(files),
                len(ops) - len(files))
    info = api.create_commit(repo_id, operations=ops, commit_message=message, repo_type=REPO_TYPE,
                             revision=branch, parent_commit=head)
    return info.oid


def _tag_target(api: HfApi, repo_id: str, call: _Call) -> str | None:
    refs = call(lambda: api.list_repo_refs(repo_id, repo_type=REPO_TYPE), f"list refs of {repo_id}")
    return next((t.target_commit for t in refs.tags if t.name == VERSION_TAG), None)


def _tag(api: HfApi, repo_id: str, sha: str, call: _Call) -> bool:
    """Point ``v3.0`` at ``sha``. The Hub cannot move a tag, so a stale one is deleted first."""
    current = _tag_target(api, repo_id, call)
    if current == sha:
        return True
    if current is not None:
        logger.info("moving tag %s of %s from %s to %s", VERSION_TAG, repo_id, current[:8], sha[:8])
        call(lambda: api.delete_tag(repo_id, tag=VERSION_TAG, repo_type=REPO_TYPE), f"delete tag {VERSION_TAG}")
    call(lambda: api.create_tag(repo_id, tag=VERSION_TAG, revision=sha, repo_type=REPO_TYPE, exist_ok=True),
         f"tag {VERSION_TAG}")
    # exist_ok makes a retried create idempotent; reading the tag back catches a concurrent writer.
    if _tag_target(api, repo_id, call) != sha:
        raise HubError(f"tag {VERSION_TAG} of {repo_id} points elsewhere after tagging {sha[:8]} (a concurrent push?)",
                       repo_id=repo_id, hint="rerun the same command: the commit is already there, only the tag moves")
    return True


def describe(result: PushResult) -> str:
    """One line for logs and summaries."""
    return redact(
        f"{result.repo_id}@{result.branch} {result.commit_sha[:8]}"
        + ("" if result.changed else " (unchanged)") + (f", tagged {VERSION_TAG}" if result.tagged else "")
        + f" — {result.url}"
    )
