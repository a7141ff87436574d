"""Every exception hub-pgen raises on purpose.

Each one is also the closest built-in (so ``except FileNotFoundError`` still works for callers who
do not know hub-pgen), carries the fields a caller needs to act on it, and says three things: what
was given, what was expected, and what to do next (``hint``). The CLI maps these classes to exit
codes in one place (``hub_pgen.cli``); nothing else prints them.
"""

from __future__ import annotations

import re
from pathlib import Path

_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")


def scrub(text: str) -> str:
    """``text`` without credentials inside URLs (``https://user:pass@host`` → ``https://***@host``):
    an ``HF_ENDPOINT`` may carry them, and messages end up in CI logs."""
    return _URL_USERINFO.sub(r"\1***@", text)


class HubPgenError(Exception):
    """Base class. ``hint`` is the next step for the user, shown as a ``TIP:`` line by the CLI."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(HubPgenError, ValueError):
    """Command-line arguments that cannot work together (checked before any I/O)."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or "hub-pgen --help lists every option, its default and allowed values")


# --- inputs -----------------------------------------------------------------------------------


class SourceError(HubPgenError, ValueError):
    """The source dataset is not a readable LeRobot v3.0 dataset."""

    exit_code = 3

    def __init__(self, message: str, *, path: Path | str | None = None, hint: str | None = None) -> None:
        if hint is None:
            hint = ("the dataset is damaged or not a LeRobot v3.0 dataset: fix the file named above, or download "
                    "the dataset again")
        super().__init__(message, hint=hint)
        self.path = Path(path) if path is not None else None


class SourceNotFoundError(SourceError, FileNotFoundError):
    """A file the dataset needs is absent."""


class UnsupportedVersionError(SourceError):
    """``meta/info.json`` declares a codebase_version other than v3.0."""

    def __init__(self, version: object, *, path: Path | str | None = None) -> None:
        if isinstance(version, str) and version.startswith(("v1.", "v2.")):
            hint = "convert the dataset first: python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 --repo-id=..."
        elif isinstance(version, str) and version.startswith("v") and version > "v3.0":
            hint = (f"{version} is newer than this hub-pgen knows: upgrade hub-pgen (pip install -U hub-pgen), or "
                    "use a v3.0 revision of the dataset (--revision v3.0)")
        else:
            hint = "meta/info.json's codebase_version must be \"v3.0\": the file is damaged or not LeRobot's"
        super().__init__(
            f"{path}: codebase_version is {version!r}; hub-pgen reads LeRobot v3.0 datasets only",
            path=path,
            hint=hint,
        )
        self.version = version


class ShardError(HubPgenError, ValueError):
    """A shard's folder given to ``hub-pgen merge`` holds what no shard run writes: a number out of
    bounds, a field of the wrong type, a record that disagrees with the merge's plan (edited, or
    made from another copy of the source)."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or "rerun the shard named above (the same command): a shard's folder "
                                               "is merged only as its run wrote it")


class SkillsError(HubPgenError, ValueError):
    """``meta/skills.json`` is missing, malformed, or disagrees with the dataset."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        episode: int | str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = str(path) if path is not None else "skills.json"
        if episode is not None:
            where += f", episode {episode}"
        if key is not None:
            where += f", key {key!r}"
        if hint is None:
            hint = ("correct meta/skills.json and rerun: each episode's skills need a name and "
                    "0 <= start < end, in seconds from the episode's start")
        super().__init__(f"{where}: {message}", hint=hint)
        self.path = Path(path) if path is not None else None
        self.episode = episode
        self.key = key


class InputJsonlError(HubPgenError, ValueError):
    """A D_labeled ``--input-jsonl`` file cannot be used at all (bad lines alone are per-sample failures)."""

    exit_code = 3

    def __init__(self, message: str, *, path: Path | str, line: int | None = None, hint: str | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        if hint is None:
            hint = "give a UTF-8 file with one JSON object per line, in the D_labeled format (see the README)"
        super().__init__(f"{where}: {message}", hint=hint)
        self.path = Path(path)
        self.line = line


# --- outputs ----------------------------------------------------------------------------------


class OutputError(HubPgenError, OSError):
    """The output folder cannot be used or written."""

    exit_code = 4

    def __init__(self, message: str, *, path: Path | str | None = None, hint: str | None = None) -> None:
        if hint is None:
            hint = ("choose an --output-dir that is writable and has free space; rerunning the same command "
                    "resumes from the journal")
        HubPgenError.__init__(self, message, hint=hint)
        self.path = Path(path) if path is not None else None


class OutputExistsError(OutputError, FileExistsError):
    """The output folder holds something that is not this run's result."""


class ConfigMismatchError(OutputExistsError):
    """The output folder (or its journal) was made by a different configuration."""

    def __init__(self, path: Path | str, differences: dict[str, tuple[object, object]]) -> None:
        diff = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(differences.items()))
        super().__init__(
            f"{path} was made by a different configuration ({diff or 'fingerprint differs'}); "
            "hub-pgen never mixes two configurations in one dataset",
            path=path,
            hint="pick another --output-dir, or leave --output-dir out to get a new versioned folder",
        )
        self.differences = differences


class UnsafePathError(OutputError):
    """Where hub-pgen would write a file there is a symbolic link (or a folder, a FIFO): it never
    writes through one (a link planted there would make it overwrite the file the link points at)."""

    def __init__(self, path: Path | str, *, what: str, target: str | None = None) -> None:
        super().__init__(
            f"{path} is {what}" + (f" (to {target})" if target is not None else "")
            + "; hub-pgen never writes through a link (that would overwrite what it points at), nor into "
              "anything but a regular file",
            path=path,
            hint=f"remove {path} (hub-pgen never makes it {what}), or choose another output location; "
                 "then rerun the same command",
        )
        self.what = what
        self.target = target


class OutputBusyError(OutputError):
    """Another run holds the output folder's lock."""

    def __init__(self, work: Path | str, holder: str) -> None:
        super().__init__(
            f"{work} is in use by {holder}: another hub-pgen run is writing this output",
            path=work,
            hint="wait for that run to finish (it resumes and finishes the same work), or add --wait to "
                 "start when it is done",
        )
        self.holder = holder


# --- stages -----------------------------------------------------------------------------------


class FrameError(HubPgenError, RuntimeError):
    """Images for one sample could not be produced (recorded as that sample's failure)."""

    exit_code = 3

    def __init__(self, message: str, *, path: Path | str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = Path(path) if path is not None else None


class ModelLoadError(HubPgenError, OSError):
    """The pgen model or its processor could not be loaded."""

    exit_code = 5


class MissingPackagesError(ModelLoadError):
    """A backend's packages are not installed (the extra to install is in the hint)."""


class GenerationError(HubPgenError, RuntimeError):
    """A model answer could not be turned into a valid dialogue (recorded per sample)."""

    def __init__(self, message: str, *, raw_text: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.raw_text = raw_text


class NothingGeneratedError(HubPgenError, RuntimeError):
    """Every sample failed: the result is written (so ``--retry-failed`` can pick it up) but holds no
    dialogue, and is not pushed."""

    exit_code = 8


class HubError(HubPgenError, OSError):
    """A Hugging Face Hub download or push failed."""

    exit_code = 6

    def __init__(self, message: str, *, repo_id: str | None = None, hint: str | None = None) -> None:
        HubPgenError.__init__(self, message, hint=hint)
        self.repo_id = repo_id


class ServerError(HubPgenError, ConnectionError):
    """A model server (``--backend openai``) cannot be used: unreachable after retries, the key
    refused, the path or model unknown. Every finished sample is in the journal."""

    exit_code = 6


class ValidationError(HubPgenError, ValueError):
    """A dataset folder does not meet the output contract (``hub-pgen validate``)."""

    exit_code = 7

    def __init__(self, path: Path | str, problems: list[str], *, source: Path | str | None = None) -> None:
        shown = "\n".join(f"  - {p}" for p in problems)
        hint = ("a finished hub-pgen folder passes; this one was changed after the run, is unfinished, or was made "
                "by another tool: run hub-pgen again into a new --output-dir")
        if source is not None:
            hint = (f"check that --source {source} is the dataset this folder was made from (meta/hub_pgen.json "
                    "names it); if it is, " + hint[0].lower() + hint[1:])
        super().__init__(f"{path} fails validation ({len(problems)} problem(s)):\n{shown}", hint=hint)
        self.path = Path(path)
        self.problems = problems


class Interrupted(HubPgenError):
    """Ctrl-C or SIGTERM during generation: every finished sample is already in the journal."""

    exit_code = 130

    def __init__(self, done: int, total: int, journal: Path, what: str = "samples") -> None:
        super().__init__(
            f"interrupted: {done} of {total} {what} are safe in the journal {journal}",
            hint=f"rerun the same command to resume; the model is not asked again for the finished {what}",
        )
        self.done, self.total, self.journal = done, total, Path(journal)
