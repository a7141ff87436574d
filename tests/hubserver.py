"""A loopback stand-in for the Hugging Face Hub, for tests that run the real ``huggingface_hub`` client.

No public server implements the Hub's write API, so this one speaks the subset the client uses for
datasets and models, in memory, on 127.0.0.1 (a free port), with real git-like semantics:

- repos with commits (40-hex ids, parents), branches and tags; ``.gitattributes`` in the first commit;
- ``GET /api/{type}s/{repo}[/revision/{rev}]`` (repo info with ``sha`` and ``siblings``),
  ``/tree/{rev}[/{path}]`` (recursive or not), ``/refs``, ``/commits/{rev}``;
- ``HEAD``/``GET /[{type}s/]{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` (the git blob
  id, as the Hub sends for non-LFS files), ``Content-Length`` and byte ranges;
- ``POST /api/repos/create``, ``/preupload/{rev}`` (always ``uploadMode: "regular"``, so the client
  sends file content inside the commit and never touches Xet or LFS), ``/commit/{rev}`` (NDJSON,
  applied atomically: a body that does not arrive whole changes nothing), ``/branch/{b}``,
  ``/tag/{rev}``, ``DELETE /tag/{t}``, ``/api/validate-yaml``, ``/api/whoami-v2``.

Errors carry the ``X-Error-Code`` headers the client maps to ``RepositoryNotFoundError``,
``RevisionNotFoundError`` and ``RemoteEntryNotFoundError``.

For assertions and fault injection: :attr:`HubServer.requests` (every request, with the endpoint
name, revision, path, status and whether it carried a valid token), :attr:`HubServer.auth_headers`
(kept in memory only), :meth:`HubServer.fail_next` (answer an endpoint with e.g. 503),
:meth:`HubServer.drop_next` (read half the body, then close the connection without answering) and
:meth:`HubServer.hold_next` (park a request until the test releases it, e.g. to kill the client
mid-commit). Nothing is written to disk.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .loopback import LoopbackServer, QuietHandler

REPO_KINDS = {"models": "model", "datasets": "dataset", "spaces": "space"}
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.mp4 filter=lfs diff=lfs merge=lfs -text\n"
HOLD_TIMEOUT_S = 60.0  # a held request never parks a server thread forever
TOKEN = "hf_TestTokenDoNotLeak0123456789abcdef"  # the tests' user token: no file or log may ever hold it


def git_blob_id(content: bytes) -> str:
    """The id git (and the Hub, in ``ETag`` and tree listings) gives a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    files: dict[str, str]  # path -> blob id
    title: str
    description: str
    date: str


@dataclass
class Repo:
    repo_id: str
    kind: str  # "dataset" | "model" | "space"
    private: bool = False
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)

    def resolve(self, rev: str) -> str | None:
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        if rev in self.commits:
            return rev
        return None


@dataclass(frozen=True)
class Request:
    method: str
    endpoint: str  # "info", "tree", "refs", "resolve", "preupload", "commit", "create", "branch", "tag", ...
    repo_id: str | None
    revision: str | None
    path: str | None
    status: int
    authorized: bool


@dataclass
class Hold:
    """A parked request: ``reached`` is set when it arrives, it goes on after :meth:`release`."""

    endpoint: str
    after_body: bool = False  # park after the whole body arrived (else before reading any of it)
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    outcome: str | None = None  # "applied" | "truncated" once the held commit is done with

    def release(self) -> None:
        self.released.set()


@dataclass
class _Fault:
    endpoint: str
    kind: str  # "status" | "drop" | "drop-after" | "hold"
    times: int
    status: int = 503
    retry_after: float | None = None
    hold: Hold | None = None


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class HubServer(LoopbackServer):
    """The stand-in. Use as a context manager, or :meth:`start` / :meth:`stop`."""

    def __init__(self, *, token: str | None = None, user: str = "tester") -> None:
        self.token = token  # when set, writes (and private reads) need ``Authorization: Bearer <token>``
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self._requests: list[Request] = []
        self.auth_headers: list[str] = []
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        # requests being handled and not parked on a Hold: the log waits for them (a handler logs
        # after its response is sent, so a client can be faster than the log)
        self._busy = 0
        self._settled = threading.Condition(self._lock)
        self._counter = 0

    @property
    def requests(self) -> list[Request]:
        """Every request so far, once those in flight have finished (parked ones excepted)."""
        with self._settled:
            self._settled.wait_for(lambda: self._busy <= 0, timeout=10)
            return list(self._requests)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        self.serve(Handler, name="hubserver")
        return self

    def stop(self) -> None:
        with self._lock:
            for f in self._faults:
                if f.hold is not None:
                    f.hold.release()
        self.shutdown()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.address

    # --- fault injection and inspection ------------------------------------------------------

    def fail_next(self, endpoint: str, *, status: int = 503, times: int = 1, retry_after: float | None = None) -> None:
        with self._lock:
            self._faults.append(_Fault(endpoint, "status", times, status=status, retry_after=retry_after))

    def drop_next(self, endpoint: str, *, times: int = 1, after_apply: bool = False) -> None:
        """Close the connection without an answer: after reading half of the next request's body,
        or (``after_apply``) after handling it in full — the commit landed, its answer is lost."""
        with self._lock:
            self._faults.append(_Fault(endpoint, "drop-after" if after_apply else "drop", times))

    def hold_next(self, endpoint: str, *, after_body: bool = False) -> Hold:
        """Park the next request to ``endpoint`` until ``release()``: before its body is read, or
        (``after_body``) once it has all arrived and before it is applied."""
        hold = Hold(endpoint, after_body=after_body)
        with self._lock:
            self._faults.append(_Fault(endpoint, "hold", 1, hold=hold))
        return hold

    def clear_log(self) -> None:
        with self._lock:
            self._requests.clear()
            self.auth_headers.clear()

    def clear_faults(self) -> None:
        with self._lock:
            for f in self._faults:
                if f.hold is not None:
                    f.hold.release()
            self._faults.clear()

    def downloaded(self, repo_id: str | None = None) -> list[str]:
        """Paths whose content was served (GET on resolve with a 2xx answer)."""
        return [r.path for r in self.requests if r.endpoint == "resolve" and r.method == "GET"
                and 200 <= r.status < 300 and (repo_id is None or r.repo_id == repo_id) and r.path]

    def _take_fault(self, endpoint: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.endpoint == endpoint and f.times > 0:
                    f.times -= 1
                    if f.times == 0:
                        self._faults.remove(f)
                    return f
        return None

    # --- state, also usable directly by tests (seeding without HTTP) ------------------------

    def repo(self, repo_id: str, kind: str = "dataset") -> Repo:
        with self._lock:
            try:
                return self.repos[(kind, repo_id)]
            except KeyError:
                raise HttpError(404, f"Repository {repo_id} not found", "RepoNotFound") from None

    def create_repo(self, repo_id: str, kind: str = "dataset", *, private: bool = False) -> Repo:
        with self._lock:
            if (kind, repo_id) in self.repos:
                raise HttpError(409, f"You already created this {kind} repo: {repo_id}")
            repo = Repo(repo_id, kind, private=private)
            self.repos[(kind, repo_id)] = repo
            self._apply_commit(repo, "main", {".gitattributes": GITATTRIBUTES}, [], "initial commit", "")
            return repo

    def commit_files(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main", kind: str = "dataset",
                     delete: tuple[str, ...] = (), message: str = "seed") -> str:
        with self._lock:
            return self._apply_commit(self.repo(repo_id, kind), branch, files, list(delete), message, "")

    def commit_folder(self, repo_id: str, folder: Path, *, branch: str = "main", kind: str = "dataset",
                      message: str = "seed") -> str:
        files = {p.relative_to(folder).as_posix(): p.read_bytes()
                 for p in sorted(Path(folder).rglob("*")) if p.is_file() and ".cache" not in p.relative_to(folder).parts}
        return self.commit_files(repo_id, files, branch=branch, kind=kind, message=message)

    def set_tag(self, repo_id: str, tag: str, rev: str, kind: str = "dataset") -> None:
        with self._lock:
            repo = self.repo(repo_id, kind)
            sha = repo.resolve(rev)
            assert sha is not None, rev
            repo.tags[tag] = sha

    def files_at(self, repo_id: str, rev: str, kind: str = "dataset") -> dict[str, bytes]:
        with self._lock:
            repo = self.repo(repo_id, kind)
            sha = repo.resolve(rev)
            if sha is None:
                raise KeyError(rev)
            return {p: self.blobs[b] for p, b in repo.commits[sha].files.items()}

    def history(self, repo_id: str, rev: str = "main", kind: str = "dataset") -> list[Commit]:
        """Commits reachable from ``rev``, newest first."""
        with self._lock:
            repo = self.repo(repo_id, kind)
            sha = repo.resolve(rev)
            out: list[Commit] = []
            while sha is not None:
                c = repo.commits[sha]
                out.append(c)
                sha = c.parent
            return out

    def _apply_commit(self, repo: Repo, branch: str, add: dict[str, bytes], delete: list[str], title: str,
                      description: str, parent_commit: str | None = None) -> str:
        """All checks first, then one state change: a commit either lands whole or not at all."""
        with self._lock:
            head = repo.branches.get(branch)
            if head is None and repo.commits:
                raise HttpError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            if parent_commit is not None and parent_commit != head:
                raise HttpError(412, f"A commit has happened since {parent_commit}: the branch head is {head}")
            files = dict(repo.commits[head].files) if head else {}
            for path in delete:
                if path.endswith("/"):
                    gone = [p for p in files if p.startswith(path)]
                    if not gone:
                        raise HttpError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in gone:
                        del files[p]
                elif path in files:
                    del files[path]
                else:
                    raise HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            for path, content in add.items():
                oid = git_blob_id(content)
                self.blobs[oid] = content
                files[path] = oid
            self._counter += 1
            seed = json.dumps([head, sorted(files.items()), title, self._counter, repo.repo_id]).encode()
            oid = hashlib.sha1(seed).hexdigest()
            repo.commits[oid] = Commit(oid, head, files, title, description, _now())
            repo.branches[branch] = oid
            return oid


# --- HTTP -----------------------------------------------------------------------------------


class _Handler(QuietHandler):
    hub: HubServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # --- plumbing ---------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        self._body: bytes | None = None
        self._held: Hold | None = None
        self._swallow = False
        self._route: dict[str, Any] = {"endpoint": "unknown", "repo_id": None, "revision": None, "path": None}
        auth = self.headers.get("Authorization")
        if auth is not None:
            with self.hub._lock:
                self.hub.auth_headers.append(auth)
        self._authorized = self.hub.token is not None and auth == f"Bearer {self.hub.token}"
        status = 500
        with self.hub._lock:
            self.hub._busy += 1
        try:
            handler = self._match(method)
            fault = self.hub._take_fault(self._route["endpoint"])
            hold = fault.hold if fault is not None else None
            if hold is not None and not hold.after_body:
                self._park(hold)
            if fault is not None and fault.kind == "drop":
                self._read_body(limit=max(1, self._content_length() // 2))
                status = 0
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            body = self._read_body()
            if hold is not None and hold.after_body:
                self._park(hold)
            if fault is not None and fault.kind == "status":
                extra = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                raise HttpError(fault.status, f"injected {fault.status}", headers=extra)
            if self._content_length() and body is None:
                status = 0  # the client went away mid-body: nothing happens
                if self._held is not None:
                    self._held.outcome = "truncated"
                self.close_connection = True
                return
            self._swallow = fault is not None and fault.kind == "drop-after"
            status = handler(method)
            if self._swallow:
                status = 0
        except HttpError as e:
            status = e.status
            if self._body is None and self._content_length() and self._read_body() is None:
                self.close_connection = True  # an unread body would poison the next request on this connection
                return
            self._send_json(e.status, {"error": e.message}, code=e.code, message=e.message, extra=e.headers,
                            head=method == "HEAD")
        except (BrokenPipeError, ConnectionResetError):
            status = 0
            self.close_connection = True
        finally:
            with self.hub._settled:
                self.hub._requests.append(Request(method, self._route["endpoint"], self._route["repo_id"],
                                                  self._route["revision"], self._route["path"], status,
                                                  self._authorized))
                self.hub._busy -= 1
                self.hub._settled.notify_all()

    def _park(self, hold: Hold) -> None:
        self._held = hold
        with self.hub._settled:
            self.hub._busy -= 1  # a parked request does not hold up the log
            self.hub._settled.notify_all()
        hold.reached.set()
        hold.released.wait(HOLD_TIMEOUT_S)
        with self.hub._lock:
            self.hub._busy += 1

    def _content_length(self) -> int:
        try:
            return int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return 0

    def _read_body(self, limit: int | None = None) -> bytes | None:
        """The whole body, or None when the connection ended before Content-Length bytes arrived."""
        if self._body is not None:
            return self._body
        want = self._content_length() if limit is None else limit
        chunks, got = [], 0
        while got < want:
            try:
                chunk = self.rfile.read(min(1 << 16, want - got))
            except (ConnectionResetError, OSError):
                chunk = b""
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
        body = b"".join(chunks)
        if limit is None:
            self._body = body
        return body

    def _json_body(self) -> Any:
        try:
            return json.loads(self._body or b"{}")
        except json.JSONDecodeError:
            raise HttpError(400, "body is not JSON") from None

    def _send(self, status: int, body: bytes, headers: dict[str, str], *, head: bool = False) -> None:
        if self._swallow:  # injected: the work is done, the answer never leaves
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, *, code: str | None = None, message: str | None = None,
                   extra: dict[str, str] | None = None, head: bool = False) -> int:
        headers = {"Content-Type": "application/json"}
        if code:
            headers["X-Error-Code"] = code
        if message:
            headers["X-Error-Message"] = message
        headers.update(extra or {})
        self._send(status, json.dumps(obj).encode(), headers, head=head)
        return status

    # --- routing ----------------------------------------------------------------------------

    def _match(self, method: str):
        parts = urlsplit(self.path)
        self._query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        seg = [unquote(s) for s in parts.path.strip("/").split("/")]
        r = self._route
        if seg[:3] == ["api", "repos", "create"] and method == "POST":
            r["endpoint"] = "create"
            return self._create
        if seg[:2] == ["api", "validate-yaml"]:
            r["endpoint"] = "validate-yaml"
            return self._validate_yaml
        if seg[:2] in (["api", "whoami-v2"], ["api", "whoami"]):
            r["endpoint"] = "whoami"
            return self._whoami
        if len(seg) >= 4 and seg[0] == "api" and seg[1] in REPO_KINDS:
            self._kind, r["repo_id"] = REPO_KINDS[seg[1]], f"{seg[2]}/{seg[3]}"
            rest = seg[4:]
            if not rest:
                r["endpoint"] = "info"
                return self._info
            op, args = rest[0], rest[1:]
            r["revision"] = args[0] if args else None
            r["path"] = "/".join(args[1:]) or None
            table = {
                ("revision", "GET"): self._info, ("tree", "GET"): self._tree, ("refs", "GET"): self._refs,
                ("commits", "GET"): self._commits, ("preupload", "POST"): self._preupload,
                ("commit", "POST"): self._commit, ("branch", "POST"): self._branch_create,
                ("branch", "DELETE"): self._branch_delete, ("tag", "POST"): self._tag_create,
                ("tag", "DELETE"): self._tag_delete,
            }
            if (op, method) in table:
                r["endpoint"] = {"revision": "info"}.get(op, op)
                return table[(op, method)]
        # file downloads: /datasets/ns/name/resolve/rev/path, /spaces/..., /ns/name/resolve/rev/path (models)
        if len(seg) >= 5 and seg[0] in ("datasets", "spaces") and seg[3] == "resolve":
            self._kind, r["repo_id"] = REPO_KINDS[seg[0]], f"{seg[1]}/{seg[2]}"
            r["revision"], r["path"] = seg[4], "/".join(seg[5:])
            r["endpoint"] = "resolve"
            return self._resolve
        if len(seg) >= 4 and seg[2] == "resolve":
            self._kind, r["repo_id"] = "model", f"{seg[0]}/{seg[1]}"
            r["revision"], r["path"] = seg[3], "/".join(seg[4:])
            r["endpoint"] = "resolve"
            return self._resolve
        r["path"] = parts.path
        raise HttpError(404, f"no such endpoint: {method} {parts.path}")

    # --- helpers ----------------------------------------------------------------------------

    def _need_write(self) -> None:
        if self.hub.token is not None and not self._authorized:
            raise HttpError(401, "Invalid credentials in Authorization header")

    def _readable_repo(self) -> Repo:
        repo = self.hub.repo(self._route["repo_id"], self._kind)
        if repo.private and not self._authorized:
            raise HttpError(404, f"Repository {repo.repo_id} not found", "RepoNotFound")
        return repo

    def _rev(self, repo: Repo, rev: str | None) -> str:
        sha = repo.resolve(rev or "main")
        if sha is None:
            raise HttpError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return sha

    def _base_url(self, repo: Repo) -> str:
        host, port = self.server.server_address[:2]
        prefix = "" if repo.kind == "model" else f"/{repo.kind}s"
        return f"http://{host}:{port}{prefix}/{repo.repo_id}"

    # --- endpoints --------------------------------------------------------------------------

    def _create(self, method: str) -> int:
        self._need_write()
        body = self._json_body()
        name, org = body.get("name"), body.get("organization") or self.hub.user
        kind = body.get("type") or "model"
        private = body.get("visibility") == "private" or bool(body.get("private"))
        self._route["repo_id"] = f"{org}/{name}"
        repo = self.hub.create_repo(f"{org}/{name}", kind, private=private)
        url = self._base_url(repo)
        return self._send_json(200, {"url": url, "name": repo.repo_id, "id": repo.repo_id})

    def _validate_yaml(self, method: str) -> int:
        content = self._json_body().get("content", "")
        if content.startswith("---"):
            import yaml

            front = content.split("---", 2)[1] if content.count("---") >= 2 else ""
            try:
                yaml.safe_load(front)
            except yaml.YAMLError as e:
                raise HttpError(400, f"invalid YAML: {e}") from None
        return self._send_json(200, {"errors": [], "warnings": []})

    def _whoami(self, method: str) -> int:
        if not self._authorized:
            raise HttpError(401, "Invalid credentials in Authorization header")
        return self._send_json(200, {"type": "user", "name": self.hub.user, "orgs": [],
                                     "auth": {"type": "access_token", "accessToken": {"role": "write"}}})

    def _info(self, method: str) -> int:
        repo = self._readable_repo()
        sha = self._rev(repo, self._route["revision"])
        commit = repo.commits[sha]
        return self._send_json(200, {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0], "sha": sha, "private": repo.private, "gated": False,
            "disabled": False, "createdAt": repo.created_at, "lastModified": commit.date, "tags": [],
            "downloads": 0, "likes": 0, "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        })

    def _tree(self, method: str) -> int:
        repo = self._readable_repo()
        sha = self._rev(repo, self._route["revision"])
        files = repo.commits[sha].files
        base = (self._route["path"] or "").strip("/")
        recursive = self._query.get("recursive", "false").lower() in ("1", "true")
        prefix = base + "/" if base else ""
        dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        if base and base not in dirs:
            raise HttpError(404, f"{base} does not exist at {sha}", "EntryNotFound")
        entries = []
        for d in sorted(dirs):
            if d.startswith(prefix) and (recursive or "/" not in d[len(prefix):]):
                entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
        for p, oid in sorted(files.items()):
            if p.startswith(prefix) and (recursive or "/" not in p[len(prefix):]):
                entries.append({"type": "file", "oid": oid, "size": len(self.hub.blobs[oid]), "path": p})
        return self._send_json(200, entries)

    def _refs(self, method: str) -> int:
        repo = self._readable_repo()
        ref = lambda kind, name, sha: {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": sha}  # noqa: E731
        return self._send_json(200, {
            "branches": [ref("heads", n, s) for n, s in sorted(repo.branches.items())],
            "tags": [ref("tags", n, s) for n, s in sorted(repo.tags.items())],
            "converts": [], "pullRequests": [],
        })

    def _commits(self, method: str) -> int:
        repo = self._readable_repo()
        sha: str | None = self._rev(repo, self._route["revision"])
        out = []
        while sha is not None:
            c = repo.commits[sha]
            out.append({"id": c.oid, "title": c.title, "message": c.description, "authors": [], "date": c.date})
            sha = c.parent
        return self._send_json(200, out)

    def _resolve(self, method: str) -> int:
        repo = self._readable_repo()
        sha = self._rev(repo, self._route["revision"])
        path = self._route["path"] or ""
        oid = repo.commits[sha].files.get(path)
        if oid is None:
            raise HttpError(404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": sha})
        content = self.hub.blobs[oid]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{oid}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        status, body = 200, content
        rng = self.headers.get("Range")
        if method == "GET" and rng and rng.startswith("bytes="):
            start_s, _, end_s = rng[len("bytes="):].partition("-")
            start = int(start_s or 0)
            end = int(end_s) if end_s else len(content) - 1
            if start >= len(content):
                headers["Content-Range"] = f"bytes */{len(content)}"
                raise HttpError(416, "Range Not Satisfiable", headers=headers)
            body = content[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(content)}"
            status = 206
        self._send(status, body, headers, head=method == "HEAD")
        return status

    def _preupload(self, method: str) -> int:
        self._need_write()
        repo = self._readable_repo()
        sha = self._rev(repo, self._route["revision"])
        existing = repo.commits[sha].files
        files = self._json_body().get("files", [])
        return self._send_json(200, {"files": [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": existing.get(f["path"])}
            for f in files
        ], "commitOid": sha})

    def _commit(self, method: str) -> int:
        self._need_write()
        repo = self._readable_repo()
        branch = self._route["revision"] or "main"
        if branch not in repo.branches:
            raise HttpError(404 if repo.resolve(branch) is None else 400,
                            f"Invalid rev id: {branch} (commits go to a branch)", "RevisionNotFound")
        header: dict[str, Any] | None = None
        add: dict[str, bytes] = {}
        delete: list[str] = []
        for line in (self._body or b"").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value", {})
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HttpError(400, f"unsupported encoding {value.get('encoding')!r}")
                add[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                delete.append(value["path"])
            elif key == "deletedFolder":
                delete.append(value["path"].rstrip("/") + "/")
            else:
                raise HttpError(400, f"unsupported commit operation {key!r} (this server only takes regular files)")
        if header is None or not header.get("summary"):
            raise HttpError(400, "commit header with a summary is required")
        oid = self.hub._apply_commit(repo, branch, add, delete, header["summary"], header.get("description", ""),
                                     parent_commit=header.get("parentCommit"))
        if self._held is not None:
            self._held.outcome = "applied"
        return self._send_json(200, {"success": True, "commitOid": oid,
                                     "commitUrl": f"{self._base_url(repo)}/commit/{oid}", "hookOutput": ""})

    def _branch_create(self, method: str) -> int:
        self._need_write()
        repo = self._readable_repo()
        name = self._route["revision"]
        start = self._json_body().get("startingPoint")
        with self.hub._lock:
            if name in repo.branches:
                raise HttpError(409, f"Reference already exists: refs/heads/{name}")
            repo.branches[name] = self._rev(repo, start)
        return self._send_json(200, {})

    def _branch_delete(self, method: str) -> int:
        self._need_write()
        repo = self._readable_repo()
        with self.hub._lock:
            if repo.branches.pop(self._route["revision"], None) is None:
                raise HttpError(404, "Invalid rev id", "RevisionNotFound")
        return self._send_json(200, {})

    def _tag_create(self, method: str) -> int:
        self._need_write()
        repo = self._readable_repo()
        tag = self._json_body().get("tag")
        with self.hub._lock:
            sha = self._rev(repo, self._route["revision"])
            if not tag:
                raise HttpError(400, "tag name is required")
            if tag in repo.tags:
                raise HttpError(409, f"Tag {tag} already exists")
            repo.tags[tag] = sha
        return self._send_json(200, {})

    def _tag_delete(self, method: str) -> int:
        self._need_write()
        repo = self._readable_repo()
        with self.hub._lock:
            if repo.tags.pop(self._route["revision"], None) is None:
                raise HttpError(404, "Invalid rev id", "RevisionNotFound")
        return self._send_json(200, {})


def point_at(monkeypatch, hub: HubServer, home, token: str | None) -> None:
    """A user's environment for ``hub``: the endpoint, the token, a private HF_HOME under ``home``, Xet and
    telemetry off, nothing offline — set for in-process calls (huggingface_hub's own import-time constants
    included: another test may have imported it first)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    if token is not None:
        monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("HF_HOME", str(Path(home) / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    # with telemetry read as on at import, huggingface_hub would fetch an "agent harnesses" list from
    # huggingface.co: nothing here may leave the loopback
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    hub.clear_log()
    hub.clear_faults()

