"""One run per output folder: an exclusive lock on ``OUT.partial/lock`` for the run's lifetime.

Two runs on one ``--output-dir`` would generate the same samples into one journal and race on the
final rename. The lock is a POSIX ``flock`` on a file inside the work folder: the kernel drops it
when the process ends, however it ends, so a ``kill -9`` never leaves a stale lock behind. The file
holds the holder's pid, host and start time, which is what a refused run reports.

A finished run removes the work folder, lock file included, while it still holds the lock. A run
that was waiting on that file then owns a lock on a file nobody can find; :meth:`RunLock.acquire`
notices (the path no longer names the inode it locked) and locks the new file instead.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import logging
import os
import socket
from pathlib import Path

from hub_pgen import fsio, layout
from hub_pgen.errors import OutputBusyError, OutputError, UnsafePathError

logger = logging.getLogger(__name__)


class RunLock:
    def __init__(self, work: Path) -> None:
        self.work = Path(work)
        self.path = self.work / layout.LOCK_NAME
        self._fd: int | None = None
        self._created: list[Path] = []  # folders this lock created (removed again by abandon())

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, wait: bool = False) -> None:
        """Take the lock, or raise :class:`OutputBusyError` naming the holder (``wait``: block until free)."""
        self._make_work_folder()
        announced = False
        while True:
            try:
                fd = fsio.open_locked_file(self.path)  # never through a link: it is truncated below
            except UnsafePathError:
                raise
            except OSError as e:
                raise OutputError(f"cannot create the lock file {self.path}: {e.strerror or e}", path=self.path,
                                  hint="choose a writable --output-dir") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._describe_holder(fd)
                if not wait:
                    os.close(fd)
                    raise OutputBusyError(self.work, holder) from None
                if not announced:
                    logger.warning("%s is in use by %s; waiting for it to finish (--wait)", self.work, holder)
                    announced = True
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
            if self._still_ours(fd):
                break
            os.close(fd)  # the holder finished and removed the folder: lock the new file
            self._make_work_folder()
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}
                                ).encode())

    def release(self) -> None:
        """Unlock, removing the lock file first (a run waiting on it notices and locks a new one), so a
        stopped run leaves only its state: ``run.json`` and the journal."""
        if self._fd is not None:
            if self._still_ours(self._fd):
                self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def abandon(self) -> None:
        """Release, and remove the work folder when it holds nothing but the lock (a run that stopped
        before it wrote any state), and any parent folders this lock created."""
        try:
            if self.work.is_dir() and {p.name for p in self.work.iterdir()} <= {layout.LOCK_NAME}:
                if self._fd is not None and self._still_ours(self._fd):
                    self.path.unlink(missing_ok=True)
                self.work.rmdir()
                for folder in self._created:  # deepest first
                    folder.rmdir()
        except OSError:
            pass  # not empty (another run started there): leave it
        finally:
            self.release()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- internals --------------------------------------------------------------------------------

    def _make_work_folder(self) -> None:
        missing = []
        probe = self.work
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        try:
            self.work.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create the run folder {self.work}: {e.strerror or e}", path=self.work,
                              hint="choose a writable --output-dir") from e
        self._created += [p for p in missing[1:] if p not in self._created]  # parents only; work itself is checked by abandon

    def _still_ours(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _describe_holder(self, fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f"process {info['pid']} on {info['host']} (since {info['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another hub-pgen process"
