"""Where a run's result goes, and how it gets there without ever being half-written.

``OUT`` is the finished dataset and nothing else. While a run is in progress its state lives beside
it in ``OUT.partial/``: ``run.json`` (the configuration and its fingerprint), ``journal.jsonl``
(every finished sample) and ``staging/`` (the dataset being written). When the staging folder is
complete it is renamed to ``OUT`` in one step, then ``OUT.partial/`` is removed. So at any kill:

- ``OUT`` absent, ``OUT.partial`` present → rerun resumes from the journal;
- ``OUT`` complete (its ``meta/hub_pgen.json`` has the same fingerprint) → rerun says so, cleans up;
- ``OUT`` of another fingerprint → refused: two configurations never share a folder;
- ``OUT.partial`` of another fingerprint whose journal holds no sample (a run that stopped at model
  loading, say) → ``stale``: it protects nothing and is replaced.

``OUT.partial/lock`` is held by the running process (:mod:`hub_pgen.write.lock`): one run per folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hub_pgen import faults, fsio, layout
from hub_pgen.config import diff_identity
from hub_pgen.errors import ConfigMismatchError, OutputError, OutputExistsError, UnsafePathError

logger = logging.getLogger(__name__)

State = Literal["fresh", "resume", "complete", "stale"]


@dataclass(frozen=True)
class OutputPaths:
    output: Path
    work: Path
    journal: Path
    run_file: Path
    staging: Path

    @classmethod
    def for_output(cls, output: Path) -> OutputPaths:
        output = Path(os.path.abspath(output))
        work = output.with_name(output.name + layout.WORK_SUFFIX)
        return cls(output, work, work / layout.JOURNAL_NAME, work / layout.RUN_NAME, work / layout.STAGING_NAME)


def default_output_dir(source_name: str, fp: str, base: Path = Path("hub-pgen-out"), kind: str = "pgen") -> Path:
    """Versioned by configuration: a different configuration gets a different folder (``kind``: "pgen"
    for a dataset, "skills" for ``hub-pgen label``'s labels)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in source_name) or "dataset"
    return base / f"{safe}-{kind}-{fp[:8]}"


def read_output_fingerprint(output: Path) -> tuple[str, dict[str, Any]] | None:
    prov = output / layout.PROVENANCE_PATH
    if not prov.is_file():
        return None
    try:
        d = json.loads(prov.read_text(encoding="utf-8"))
        identity = dict(d.get("identity", {}))
        shard = d.get("shard")
        if isinstance(shard, dict):  # a shard result: keyed by its shard too (hub_pgen.run.shards)
            identity["shard"] = f"{shard.get('index')} of {shard.get('count')}"
        return str(d["fingerprint"]), identity
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


def inspect_output(
    paths: OutputPaths, *, fingerprint: str, identity: dict[str, Any], source_root: Path | None
) -> State:
    """Decide fresh / resume / complete, or refuse with an error that says why and what to do."""
    out = paths.output
    check_output_path(paths)
    if source_root is not None:
        # resolved paths: a link to the source (or an output parent that links into it) is the source
        src = Path(os.path.realpath(source_root))
        for mine in (out, paths.work):
            real = Path(os.path.realpath(mine))
            if real == src or src in real.parents or real in src.parents:
                raise OutputError(
                    f"output {out} overlaps the source dataset {source_root}"
                    + (f" (through links: it is {real})" if real != mine else "") + "; the source is never written",
                    path=out,
                    hint="choose an --output-dir outside the source folder",
                )
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output {out} exists and is not a folder", path=out,
                                hint="choose another --output-dir; hub-pgen never overwrites a file")
    if out.is_dir() and any(out.iterdir()):
        found = read_output_fingerprint(out)
        if found is None:
            raise OutputExistsError(
                f"output folder {out} is not empty and is not a hub-pgen result",
                path=out,
                hint="choose a new --output-dir (hub-pgen never writes into a folder that holds something else)",
            )
        old_fp, old_identity = found
        if old_fp != fingerprint:
            raise ConfigMismatchError(out, diff_identity(old_identity, identity))
        return "complete"
    if paths.run_file.is_file():
        try:
            run = json.loads(paths.run_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            run = {}
        if run.get("fingerprint") != fingerprint:
            if not journal_has_records(paths.journal):
                return "stale"
            raise ConfigMismatchError(paths.work, diff_identity(run.get("identity", {}), identity))
        return "resume"
    if paths.work.is_file():
        raise OutputExistsError(f"{paths.work} is a file, where hub-pgen keeps a run's state",
                                path=paths.work, hint=f"remove {paths.work} or choose another --output-dir")
    # a merge cut short while it checked the shards leaves the journal it was writing beside the lock
    # (hub_pgen.run.merging.stage_journal): not a run's state, and the next merge writes it anew
    merging = paths.journal.name + layout.STAGED_SUFFIX
    if paths.work.is_dir() and {p.name for p in paths.work.iterdir()} - {layout.LOCK_NAME, layout.SERVERS_NAME,
                                                                         merging}:
        raise OutputExistsError(
            f"{paths.work} exists but holds no hub-pgen run state",
            path=paths.work,
            hint=f"remove {paths.work} or choose another --output-dir",
        )
    parent = out.parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create {out}: {probe} is not writable", path=out, hint="choose a writable --output-dir")
    return "fresh"


def check_output_path(paths: OutputPaths) -> None:
    """Names the file system will take, and no link where hub-pgen renames folders into place."""
    out = paths.output
    try:
        name_max = os.pathconf(out.anchor or "/", "PC_NAME_MAX")
        path_max = os.pathconf(out.anchor or "/", "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    longest = max(len(os.fsencode(p)) for p in (paths.work, paths.staging)) + 64  # room for files inside
    if len(os.fsencode(paths.work.name)) > name_max or longest > path_max:
        raise OutputError(
            f"output path {out} is too long for the file system once hub-pgen's work folder "
            f"({paths.work.name}) and the dataset's files are added (names up to {name_max} bytes, paths up to "
            f"{path_max})",
            path=out, hint="choose a shorter --output-dir",
        )
    for p in (out, paths.work):
        if p.is_symlink():
            raise OutputError(f"{p} is a symbolic link; hub-pgen renames finished folders into place and will not "
                              "write through a link", path=p,
                              hint=f"give the real folder ({os.path.realpath(p)}) or another --output-dir")


def journal_has_records(journal: Path) -> bool:
    """Whether a journal holds at least one whole line (a sample worth keeping), or its folder's
    skills journal (``--skills annotate``) one episode the model did label."""
    try:
        if b"\n" in journal.read_bytes():
            return True
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        pass
    try:
        labels = (journal.parent / layout.SKILLS_JOURNAL_NAME).read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False
    return any(b'"status": "ok"' in line for line in labels.split(b"\n")[:-1])


def discard_state(paths: OutputPaths) -> None:
    """Remove a stale run's state (run.json, empty journal, failed labels, staging, the pass's checkpoint); the lock
    file stays."""
    for p in (paths.run_file, paths.journal, paths.work / layout.SKILLS_JOURNAL_NAME):
        p.unlink(missing_ok=True)
    _remove(paths.staging)
    _remove(paths.work / layout.PASS_NAME)


def _remove(path: Path) -> None:
    """Remove what is at ``path`` in the work folder: a folder with its contents, else the entry itself
    (a link is removed, never followed: ``rmtree`` of a link would refuse, and its target is not ours)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def start_run(paths: OutputPaths, *, fingerprint: str, identity: dict[str, Any], started_at: str) -> str:
    """Create the work folder and its ``run.json`` (kept on resume). Returns the run's start time."""
    try:
        paths.work.mkdir(parents=True, exist_ok=True)
        if paths.run_file.is_file():
            return json.loads(paths.run_file.read_text(encoding="utf-8")).get("started_at", started_at)
        fsio.write_atomic(paths.run_file, fsio.json_dumps(
            {"fingerprint": fingerprint, "identity": identity, "started_at": started_at},
            indent=2, sort_keys=True, default=str))
    except UnsafePathError:
        raise
    except OSError as e:
        raise OutputError(f"cannot create the run folder {paths.work}: {e.strerror or e}", path=paths.work,
                          hint="choose a writable --output-dir") from e
    return started_at


def fresh_staging(paths: OutputPaths) -> Path:
    """An empty staging folder; a half-written one from a killed run is discarded (writing is
    deterministic, so writing again gives the same bytes)."""
    try:
        _remove(paths.staging)
        paths.staging.mkdir(parents=True)
    except OSError as e:
        raise OutputError(f"cannot create the staging folder {paths.staging}: {e.strerror or e}",
                          path=paths.staging) from e
    return paths.staging


def finalize(paths: OutputPaths, *, replace: bool = False) -> Path:
    """Move the complete staging folder to ``OUT`` in one rename, then drop the work folder.

    ``replace`` (``--retry-failed``): ``OUT`` holds the earlier result of the same configuration; it
    is moved into the work folder first, so a kill between the two renames leaves ``OUT.partial``
    with the whole journal, and the rerun writes ``OUT`` again."""
    _fsync_tree(paths.staging)
    try:
        if replace and paths.output.is_dir():
            os.rename(paths.output, paths.work / layout.PREVIOUS_NAME)
        elif paths.output.is_dir():
            paths.output.rmdir()  # only ever empty here (inspect_output refused anything else)
        paths.output.parent.mkdir(parents=True, exist_ok=True)
        os.rename(paths.staging, paths.output)
        _fsync_dir(paths.output.parent)
    except OSError as e:
        raise OutputError(f"cannot move the finished dataset to {paths.output}: {e.strerror or e}",
                          path=paths.output) from e
    faults.point("cleanup")
    cleanup_work(paths)
    return paths.output


def cleanup_work(paths: OutputPaths) -> None:
    if paths.work.exists():
        shutil.rmtree(paths.work, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
