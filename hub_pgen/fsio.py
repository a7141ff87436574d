"""Every file hub-pgen writes is created here, and none through a link planted in its way.

A fixed temporary name (``FILE.tmp``) or a plain ``open(path, "w")`` follows a symbolic link someone
put at that name, and overwrites whatever file it points at that the user can write. So:

- :func:`write_atomic` (a file that replaces another: the review page, ``run.json``, the card, a
  Hub cache ref): the bytes go to a new file of a random name in the destination's folder, created
  exclusively (``mkstemp``: ``O_EXCL``, so never through a link), then ``os.replace`` puts it in place
  in one step. A link at the destination is replaced itself, never followed; its target is untouched.
- :func:`create` (a file of a fresh folder, like the staging folder's): created exclusively
  (``O_CREAT | O_EXCL | O_NOFOLLOW``), so a file or link already there is an error, never overwritten.
- :func:`open_append` / :func:`open_locked_file` (the journals, a server's log, the lock): opened with
  ``O_NOFOLLOW``, refusing a link at the name or at its folder, and anything but a regular file, with
  :class:`~hub_pgen.errors.UnsafePathError` (exit 4) naming the link and its target.

Text goes out as UTF-8 that always encodes (:func:`hub_pgen.textsafe.well_formed`), JSON through
:func:`hub_pgen.textsafe.json_dumps` (a lone surrogate kept as its escape).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from hub_pgen.errors import UnsafePathError
from hub_pgen.textsafe import json_dumps, well_formed

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_UMASK = os.umask(0o022)  # read once, at import (setting it is process-wide: never while threads write)
os.umask(_UMASK)


def umask() -> int:
    """The process's umask, as it was when hub-pgen was imported."""
    return _UMASK


def _refuse_link(path: Path) -> None:
    for p in (path, path.parent):
        if p.is_symlink():
            raise UnsafePathError(p, what="a symbolic link", target=os.readlink(p))


def _check_regular(fd: int, path: Path) -> None:
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise UnsafePathError(path, what=kind)


def _open_fd(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never follows a link at ``path`` (or at its folder) and opens regular files only."""
    path = Path(path)
    _refuse_link(path)
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK, mode)  # NONBLOCK: a FIFO cannot hang it
    except OSError as e:
        if e.errno == errno.ELOOP:  # made a link since the check above
            raise UnsafePathError(path, what="a symbolic link") from None
        if e.errno == errno.EISDIR:
            raise UnsafePathError(path, what="a folder") from None
        raise
    _check_regular(fd, path)
    os.set_blocking(fd, True)
    return fd


def open_append(path: Path) -> int:
    """A file descriptor appending to ``path`` (created if absent; ``O_APPEND``, readable too, so a
    torn tail can be found and cut on it), never through a link."""
    return _open_fd(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)


def open_read(path: Path) -> int:
    """A read-only descriptor on ``path``, never through a link (the journal read back: ``pread`` on it)."""
    return _open_fd(path, os.O_RDONLY)


def open_locked_file(path: Path) -> int:
    """A read-write descriptor on ``path`` (created if absent), for a lock file: never through a link."""
    return _open_fd(path, os.O_RDWR | os.O_CREAT)


@contextlib.contextmanager
def create(path: Path, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO[Any]]:
    """A new file at ``path`` (``O_EXCL``: whatever is there already, a link included, is an error).
    Removed again if the block raises, so nothing half-written is left under its name."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
    try:
        with open(fd, mode, encoding=encoding, newline="" if "b" not in mode else None) as fh:
            yield fh
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def write_new(path: Path, data: bytes | str) -> None:
    """:func:`create` ``path`` holding ``data`` (text as UTF-8, made :func:`well_formed`)."""
    blob = well_formed(data).encode("utf-8") if isinstance(data, str) else data
    with create(path) as fh:
        fh.write(blob)


def json_text(obj: Any, *, indent: int | None = 4, sort_keys: bool = False) -> str:
    """What hub-pgen's JSON files hold: UTF-8 text (lone surrogates as escapes), a final newline."""
    return json_dumps(obj, indent=indent, ensure_ascii=False, sort_keys=sort_keys) + "\n"


def jsonl_line(obj: Any) -> bytes:
    """One JSONL record (the journals, D_syn): always encodable, whatever strings it holds."""
    return (json_dumps(obj, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def copy_new(src: Path, dst: Path) -> None:
    """Copy ``src`` (its bytes, mode and times, as ``shutil.copy2``) to a :func:`create`-d ``dst``."""
    with open(src, "rb") as fin, create(dst) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    shutil.copystat(src, dst)


@contextlib.contextmanager
def temp_beside(path: Path) -> Iterator[Path]:
    """A new, empty file of a random name in ``path``'s folder (for a library that writes by file name),
    removed on the way out unless the block moved it (:func:`os.replace`) into place."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def write_atomic(path: Path, data: bytes | str | Iterable[bytes | str], *, durable: bool = True) -> int:
    """Replace ``path`` with a file holding ``data`` in one step (whole or not at all): bytes, text
    (UTF-8, made :func:`well_formed`), or pieces of either, written as they come (a large page is never
    held whole). Returns the bytes written. Raises the ``OSError`` it meets (the caller says what the
    file is), and whatever making a piece raises; ``path`` is never followed if a link."""
    path = Path(path)
    pieces = (data,) if isinstance(data, (bytes, bytearray, memoryview, str)) else data
    if path.is_dir() and not path.is_symlink():
        raise UnsafePathError(path, what="a folder")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    size = 0
    try:
        with open(fd, "wb") as fh:
            for piece in pieces:
                size += fh.write(well_formed(piece).encode("utf-8") if isinstance(piece, str) else piece)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(name, 0o666 & ~_UMASK)  # as open() would have made it (mkstemp makes 0600)
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return size
