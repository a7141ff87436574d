"""Bring a LeRobot v3.0 dataset down from the Hugging Face Hub: pinned to one commit, only what the run needs.

The revision is resolved to a commit sha once (:func:`resolve_revision`); every download after that
asks for that sha, so a push to the source repo during a long run cannot mix two versions of the
dataset. Everything lands in the ordinary Hub cache (``HF_HOME`` / ``HF_HUB_CACHE``). Which files a
run needs is only known from ``meta/``, so:

1. :func:`open_hub_metadata` — ``meta/**`` (``snapshot_download``), read as metadata only;
2. :func:`fetch` — the files a step reads, named one by one from ``meta/episodes``
   (:func:`download_files`: ``hf_hub_download`` in a pool; :mod:`hub_pgen.source.needs` says which),
   and :func:`fetch_rest` — everything, before a dataset is written.

:func:`download_source` (``meta/``, then every data file and camera by pattern) is the whole-dataset
download for callers that want it all at once.

Everything here reads ``HF_TOKEN``, ``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE`` when called (not when imported), so a process that sets them late still gets
what it asked for. Offline, the revision is resolved from the cache's ``refs/`` and a cold cache
fails with a :class:`~hub_pgen.errors.HubError` that says so. Hub failures become ``HubError``\\ s
naming the repo and the next step; the token never appears in a message (:func:`redact`).

How hub-pgen talks to the Hub (the client, retries, error translation) is
:mod:`hub_pgen.source.hub_api`, shared with the push.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub_pgen import __version__, fsio, layout
from hub_pgen.errors import HubError
from hub_pgen.source.hub_api import (
    REPO_TYPE,
    check_cache_folders,
    default_cache_dir,
    hub_errors,
    is_offline,
    make_api,
    with_retries,
)

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from hub_pgen.data import SourceDataset

logger = logging.getLogger(__name__)

DEFAULT_BRANCH = "main"
VERSION_REF = layout.CODEBASE_VERSION  # LeRobot's rule: the "v3.0" tag (or branch) when present, else main
META_PATTERNS = ("meta/*",)
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class HubSnapshot:
    """A dataset folder that came from the Hub: ``root`` holds the files of commit ``sha``."""

    root: Path
    repo_id: str
    revision: str  # the ref used: as asked, or the default ("v3.0" tag, else "main")
    sha: str  # the commit it resolved to

    def __post_init__(self) -> None:
        if not _SHA_RE.match(self.sha):
            raise ValueError(f"HubSnapshot.sha must be a 40-hex commit id, got {self.sha!r}")


# --- revisions ----------------------------------------------------------------------------------


def _storage_folder(repo_id: str, cache_dir: Path) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return Path(cache_dir) / repo_folder_name(repo_id=repo_id, repo_type=REPO_TYPE)


def _cached_ref(repo_id: str, ref: str, cache_dir: Path) -> str | None:
    path = _storage_folder(repo_id, cache_dir) / "refs" / ref
    if path.is_file():
        sha = path.read_text(encoding="utf-8").strip()
        return sha if _SHA_RE.match(sha) else None
    return None


def _remember_ref(repo_id: str, ref: str, sha: str, cache_dir: Path) -> None:
    """Record ref → sha in the cache (as huggingface_hub does for the refs it resolves), so an
    offline rerun finds the same commit. Best effort: a read-only cache only costs that."""
    if ref == sha:
        return
    path = _storage_folder(repo_id, cache_dir) / "refs" / ref
    try:
        if path.is_file() and path.read_text(encoding="utf-8").strip() == sha:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fsio.write_atomic(path, sha, durable=False)
    except OSError as e:
        logger.debug("could not record %s -> %s in the cache: %s", ref, sha, e)


def resolve_revision(repo_id: str, revision: str | None = None, *, api: HfApi | None = None,
                     cache_dir: Path | None = None) -> tuple[str, str]:
    """``(revision used, commit sha)``. ``None`` follows LeRobot: the ``v3.0`` tag (or branch) when
    the repo has one, else ``main``. Offline, the answer comes from the cache's ``refs/``."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if is_offline():
        return _resolve_offline(repo_id, revision, cache_dir)
    api = api or make_api()
    with hub_errors(repo_id, action="resolve revision", revision=revision, endpoint=api.endpoint,
                    cache_dir=cache_dir, token=api.token):
        if revision is None:
            refs = with_retries(lambda: api.list_repo_refs(repo_id, repo_type=REPO_TYPE), what="list refs")
            for ref in list(refs.tags) + list(refs.branches):
                if ref.name == VERSION_REF:
                    used, sha = VERSION_REF, ref.target_commit
                    break
            else:
                main = [b for b in refs.branches if b.name == DEFAULT_BRANCH]
                used = DEFAULT_BRANCH
                sha = main[0].target_commit if main else _info_sha(api, repo_id, None)
        else:
            used, sha = revision, _info_sha(api, repo_id, revision)
    _remember_ref(repo_id, used, sha, cache_dir)
    logger.info("%s: revision %s is commit %s", repo_id, used, sha)
    return used, sha


def _info_sha(api: HfApi, repo_id: str, revision: str | None) -> str:
    info = with_retries(lambda: api.repo_info(repo_id, repo_type=REPO_TYPE, revision=revision), what="repo info")
    if not info.sha:
        raise HubError(f"the Hub gave no commit sha for {repo_id}@{revision or DEFAULT_BRANCH}", repo_id=repo_id)
    return info.sha


def _resolve_offline(repo_id: str, revision: str | None, cache_dir: Path) -> tuple[str, str]:
    if revision is not None and _SHA_RE.match(revision):
        return revision, revision
    for ref in [revision] if revision is not None else [VERSION_REF, DEFAULT_BRANCH]:
        sha = _cached_ref(repo_id, ref, cache_dir)
        if sha is not None:
            logger.info("%s: offline, revision %s is commit %s (from the cache)", repo_id, ref, sha)
            return ref, sha
    asked = revision or f"{VERSION_REF} or {DEFAULT_BRANCH}"
    raise HubError(
        f"HF_HUB_OFFLINE is set and the Hub cache ({cache_dir}) has never seen {repo_id}@{asked}",
        repo_id=repo_id,
        hint="run once with network access (same --repo-id and --revision) to fill the cache, or unset HF_HUB_OFFLINE",
    )


# --- downloads ----------------------------------------------------------------------------------


def _pattern_escape(text: str) -> str:
    """fnmatch has no escape character: wrap its specials in brackets."""
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def _template_pattern(template: str, **known: str) -> str:
    """``videos/{video_key}/chunk-{chunk_index:03d}/…`` → ``videos/<key>/chunk-*``: the template up
    to its first unknown field, so a dataset with its own path layout still downloads right."""
    out = ""
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        out += _pattern_escape(literal)
        if name is None:
            continue
        if name in known:
            out += _pattern_escape(known[name])
            continue
        return out + "*"
    return out


def payload_patterns(info: dict[str, Any], cameras: Sequence[str] | None, *, videos: bool = True) -> list[str]:
    """``allow_patterns`` for the data files and the videos of ``cameras`` (None: every video feature)."""
    patterns = [_template_pattern(info.get("data_path") or layout.DEFAULT_DATA_PATH)]
    if not videos:
        return patterns
    video_keys = [k for k, ft in info.get("features", {}).items() if ft.get("dtype") == "video"]
    wanted = video_keys if cameras is None else [c for c in cameras if c in video_keys]
    template = info.get("video_path") or layout.DEFAULT_VIDEO_PATH
    patterns += [_template_pattern(template, video_key=key) for key in wanted]
    return patterns


def _snapshot(repo_id: str, sha: str, revision: str, patterns: Sequence[str], *, api: HfApi | None,
              cache_dir: Path | None, local_dir: Path | None) -> Path:
    from huggingface_hub import snapshot_download

    api = api or make_api()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    offline = is_offline()
    with hub_errors(repo_id, action="download", revision=revision, endpoint=api.endpoint, cache_dir=cache,
                    token=api.token):
        root = with_retries(
            lambda: snapshot_download(
                repo_id,
                repo_type=REPO_TYPE,
                revision=sha,
                cache_dir=str(cache),
                local_dir=str(local_dir) if local_dir is not None else None,
                allow_patterns=list(patterns),
                endpoint=api.endpoint,
                token=api.token,
                library_name="hub-pgen",
                library_version=__version__,
                local_files_only=offline,
            ),
            what=f"download {repo_id}@{sha[:8]} {list(patterns)}",
        )
    return Path(root)


def download_meta(repo_id: str, *, revision: str | None = None, api: HfApi | None = None,
                  cache_dir: Path | None = None, local_dir: Path | None = None) -> HubSnapshot:
    """Step 1: resolve the revision and fetch ``meta/**`` at that commit. Checks that the repo is a
    LeRobot dataset, so a wrong repo fails before any data comes down. Whether it has skills is the
    skills stage's business (``--skills auto`` labels a dataset that has none)."""
    used, sha = resolve_revision(repo_id, revision, api=api, cache_dir=cache_dir)
    root = _snapshot(repo_id, sha, used, META_PATTERNS, api=api, cache_dir=cache_dir, local_dir=local_dir)
    snap = HubSnapshot(root=root, repo_id=repo_id, revision=used, sha=sha)
    where = f"dataset repo {repo_id} at {used} ({sha[:8]})"
    if not (root / layout.INFO_PATH).is_file():
        raise HubError(f"{where} has no {layout.INFO_PATH}: it is not a LeRobot dataset", repo_id=repo_id,
                       hint="check --repo-id and --revision; LeRobot v2.1 datasets must be converted to v3.0 first")
    return snap


DOWNLOAD_WORKERS = 8  # files fetched at once (huggingface_hub's snapshot_download default)


def download_files(snapshot: HubSnapshot, files: Sequence[str], *, api: HfApi | None = None,
                   cache_dir: Path | None = None, local_dir: Path | None = None) -> int:
    """These files of the snapshot's commit (paths relative to the dataset root), each at most once:
    a file already in the snapshot folder is not asked for again (a commit's files never change).
    Returns how many came down. Named one by one (``hf_hub_download``), not matched against the
    repo's whole listing, so a shard of a dataset with 100,000 files asks for its own files only."""
    from concurrent.futures import ThreadPoolExecutor

    from huggingface_hub import hf_hub_download

    todo = [f for f in dict.fromkeys(files) if not (snapshot.root / f).is_file()]
    if not todo:
        return 0
    api = api or make_api()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    offline = is_offline()

    def one(rel: str) -> str:
        return with_retries(lambda: hf_hub_download(
            snapshot.repo_id, rel, repo_type=REPO_TYPE, revision=snapshot.sha, cache_dir=str(cache),
            local_dir=str(local_dir) if local_dir is not None else None, endpoint=api.endpoint, token=api.token,
            library_name="hub-pgen", library_version=__version__, local_files_only=offline,
        ), what=f"download {snapshot.repo_id}@{snapshot.sha[:8]} {rel}")

    logger.info("%s@%s: downloading %d file(s)", snapshot.repo_id, snapshot.sha[:8], len(todo))
    with hub_errors(snapshot.repo_id, action="download", revision=snapshot.revision, endpoint=api.endpoint,
                    cache_dir=cache, token=api.token):
        with ThreadPoolExecutor(max_workers=min(DOWNLOAD_WORKERS, len(todo))) as pool:
            for rel, got in zip(todo, pool.map(one, todo)):
                if Path(got).resolve() != (snapshot.root / rel).resolve():
                    raise HubError(f"{snapshot.repo_id}@{snapshot.sha[:8]}: {rel} landed in {got}, not in "
                                   f"{snapshot.root}", repo_id=snapshot.repo_id)
    return len(todo)


def download_payload(snapshot: HubSnapshot, *, cameras: Sequence[str] | None = None, videos: bool = True,
                     api: HfApi | None = None, cache_dir: Path | None = None,
                     local_dir: Path | None = None) -> HubSnapshot:
    """The data parquet files, and the videos of ``cameras`` (None: all), at the same commit: every
    file of them (the merge, and a run that writes the dataset, need them all)."""
    from hub_pgen.source.lerobot import load_info

    info = load_info(snapshot.root)
    patterns = payload_patterns(info, cameras, videos=videos)
    logger.info("%s@%s: downloading %s", snapshot.repo_id, snapshot.sha[:8], ", ".join(patterns))
    root = _snapshot(snapshot.repo_id, snapshot.sha, snapshot.revision, patterns, api=api, cache_dir=cache_dir,
                     local_dir=local_dir)
    return HubSnapshot(root=root, repo_id=snapshot.repo_id, revision=snapshot.revision, sha=snapshot.sha)


def download_source(repo_id: str, *, revision: str | None = None, cameras: Sequence[str] | None = None,
                    videos: bool = True, cache_dir: Path | None = None, local_dir: Path | None = None,
                    api: HfApi | None = None) -> HubSnapshot:
    """Both steps: metadata, then data and the videos of ``cameras`` (None: every camera)."""
    snap = download_meta(repo_id, revision=revision, api=api, cache_dir=cache_dir, local_dir=local_dir)
    return download_payload(snap, cameras=cameras, videos=videos, api=api, cache_dir=cache_dir,
                            local_dir=local_dir)


def open_hub_metadata(repo_id: str, *, revision: str | None = None, image_keys: Sequence[str] | None = None,
                      num_views: int | None = None, api: HfApi | None = None, cache_dir: Path | None = None,
                      local_dir: Path | None = None) -> SourceDataset:
    """Step 1 for the pipeline: ``meta/`` at the resolved commit, read (info, tasks, episodes), with
    ``image_keys``/``num_views`` checked against ``info.json`` before any data or video comes down (a
    typo costs seconds, not a download). Every data file is ``absent_data`` until :func:`fetch`."""
    from hub_pgen.plan.planner import choose_cameras
    from hub_pgen.source.lerobot import load_metadata

    check_cache_folders(cache_dir)
    snap = download_meta(repo_id, revision=revision, api=api, cache_dir=cache_dir, local_dir=local_dir)
    meta = load_metadata(snap.root, repo_id=repo_id, revision=snap.sha)
    choose_cameras(meta, image_keys=image_keys, num_views=num_views)  # raises UsageError early
    return meta


def fetch(source: SourceDataset, *, data: Collection[int] | None, videos: Collection[int] | None = (),
          cameras: Sequence[str] = (), api: HfApi | None = None, cache_dir: Path | None = None,
          local_dir: Path | None = None) -> SourceDataset:
    """The data files of the episodes ``data`` (None: every episode) and the videos of ``cameras`` for
    the episodes ``videos`` (None: every episode), of a Hub source's pinned commit. Returns the source
    as it is now: read again when data files came (each checked against the metadata), and with the
    fetched videos checked present."""
    from hub_pgen.source import needs
    from hub_pgen.source.lerobot import load_source, require_videos

    if not source.repo_id or not source.revision:
        return source
    snap = HubSnapshot(root=source.root, repo_id=source.repo_id, revision=source.revision, sha=source.revision)
    wanted = set(source.episodes) if data is None else set(data)
    download_files(snap, needs.files(source, data=wanted, videos=videos, cameras=cameras), api=api,
                   cache_dir=cache_dir, local_dir=local_dir)
    data_paths = {source.episodes[e].data_path for e in wanted if e in source.episodes}
    if not data_paths.isdisjoint(source.absent_data):  # new data files: read the source again
        present = (set(source.data_paths) - source.absent_data) | data_paths
        source = load_source(source.root, repo_id=source.repo_id, revision=source.revision, data_paths=present,
                             check_videos=())
    require_videos(source, cameras, episodes=videos)
    return source


def fetch_rest(source: SourceDataset, *, api: HfApi | None = None, cache_dir: Path | None = None,
               local_dir: Path | None = None) -> SourceDataset:
    """Every data file and every camera's videos of a Hub source, at its pinned sha, into the same
    snapshot folder (files already there are not fetched again), and the source read again whole: the
    new dataset is complete, so writing it needs them all."""
    if not source.repo_id or not source.revision:
        return source
    return fetch(source, data=None, videos=None, cameras=source.video_keys, api=api, cache_dir=cache_dir,
                 local_dir=local_dir)
