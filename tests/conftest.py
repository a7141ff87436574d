"""The test-suite base: an isolated Hugging Face environment and the shared example datasets.

Environment (set when pytest imports this file, before any test module imports huggingface_hub,
datasets or lerobot, which read these variables once at import):

- ``HF_HOME`` (hence the Hub cache), ``HF_DATASETS_CACHE``, ``HF_LEROBOT_HOME`` point into one temp
  folder (removed at exit), so no test reads or fills the user's caches — ``LeRobotDataset``
  writes an Arrow cache of every parquet it loads to ``HF_DATASETS_CACHE``.
- ``HF_HUB_OFFLINE=1`` in ``os.environ``: subprocesses, ``datasets`` and hub-pgen's own
  environment checks see it. huggingface_hub is imported just *before* it is set, so the
  in-process ``huggingface_hub.constants.HF_HUB_OFFLINE`` keeps the user's value (normally
  False): the loopback-Hub tests (``test_hub.py``) unset the variable and talk to 127.0.0.1.
  A test that must prove it makes no network call at all takes the ``no_network`` fixture.
- ``HF_HUB_DISABLE_TELEMETRY=1`` and ``HF_HUB_DISABLE_XET=1`` unless already set (both are read
  at import too).

Shared datasets: ``example_root`` (``ExampleSpec()``: 6 episodes, 2 AV1 cameras, 2 data/video
files, every skills.json edge case) and ``example_h264_root`` (the same in H.264) are built once a
session. They are READ-ONLY: a test that needs to change a dataset copies it first (or builds its
own with ``build_example_dataset``). Each checks at the end of the session that no file in it
changed, and errors naming the files when one did.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# A suite started in the background of a shell (``bash .ci/run &``) inherits SIGINT ignored, and so
# would every hub-pgen it starts: the Ctrl-C tests would then test nothing. Python's own handler here
# is reset to the default across exec, so the children get what a terminal gives them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Subprocesses (``python -m hub_pgen``) run the checkout these tests belong to, whatever checkout
# an editable install in the venv points at (two worktrees can share one venv).
_REPO = Path(__file__).resolve().parent.parent
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), os.environ.get("PYTHONPATH", "")) if p)

_HF_TMP = Path(tempfile.mkdtemp(prefix="hub-pgen-tests-hf-"))
atexit.register(shutil.rmtree, _HF_TMP, ignore_errors=True)
os.environ["HF_HOME"] = str(_HF_TMP / "home")
os.environ["HF_DATASETS_CACHE"] = str(_HF_TMP / "datasets")
os.environ["HF_LEROBOT_HOME"] = str(_HF_TMP / "lerobot")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
import huggingface_hub.constants  # noqa: E402  (reads the environment now, before HF_HUB_OFFLINE)

os.environ["HF_HUB_OFFLINE"] = "1"

from hub_pgen.example import ExampleSpec, build_example_dataset  # noqa: E402


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by POSIX path relative to it."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def _shared_example(tmp_path_factory: pytest.TempPathFactory, name: str, spec: ExampleSpec) -> Iterator[Path]:
    root = build_example_dataset(tmp_path_factory.mktemp(name) / "dataset", spec)
    before = tree_digest(root)
    yield root
    after = tree_digest(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        raise AssertionError(f"a test changed the shared, read-only {name} dataset at {root}: {changed}; "
                             "copy it (shutil.copytree) or build your own before changing it")


@pytest.fixture(scope="session")
def example_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default example (``ExampleSpec()``, AV1), built once a session. Read-only."""
    yield from _shared_example(tmp_path_factory, "example-av1", ExampleSpec())


@pytest.fixture(scope="session")
def example_h264_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default example encoded as H.264, built once a session. Read-only."""
    yield from _shared_example(tmp_path_factory, "example-h264", ExampleSpec(codec="h264"))


_SCHEDULING = (os.sched_getscheduler(0), os.sched_getparam(0)) if hasattr(os, "sched_getscheduler") else None


@pytest.fixture(autouse=True)
def _scheduling_kept() -> Iterator[None]:
    """No test leaves the suite's process real-time. A video encoder that switches its thread to
    SCHED_FIFO (PyAV's SVT-AV1 does, as root: hub_pgen.example.frames.keep_scheduling) makes every later
    subprocess real-time too, and one whose threads spin then stalls a 2-core machine for good (a CI run
    hung 90 minutes in ``test_demo_with_a_tiny_qwen_model``): the test that caused it fails here instead,
    and the suite goes on as it started."""
    yield
    if _SCHEDULING is None:
        return
    now = (os.sched_getscheduler(0), os.sched_getparam(0))
    if now != _SCHEDULING:
        os.sched_setscheduler(0, *_SCHEDULING)
        pytest.fail(f"this test left the test process with scheduling policy {now[0]} priority "
                    f"{now[1].sched_priority} (was {_SCHEDULING[0]}); put back", pytrace=False)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails, and huggingface_hub is in offline mode: for tests that prove a
    code path (lerobot loading a local dataset, say) never reaches for the network."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(f"network access attempted in a no_network test: {args[1:] or kwargs}")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


# --- the Hub stand-in, for the modules that talk to it (tests/hubserver.py) ---------------------------


@pytest.fixture(scope="module")
def server():
    """The loopback Hub stand-in, one a module (a module that means another server defines its own)."""
    from .hubserver import TOKEN, HubServer

    with HubServer(token=TOKEN) as s:
        yield s


@pytest.fixture
def hub_env(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment a user would set for ``server``: endpoint, token, a private HF_HOME; Xet off."""
    from .hubserver import TOKEN, point_at

    point_at(monkeypatch, server, tmp_path, TOKEN)
    return tmp_path / "hf_home"

