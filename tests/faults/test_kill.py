"""Issue 5.1: SIGKILL anywhere, rerun, and the dataset is byte-identical to an uninterrupted run;
Ctrl-C / SIGTERM stop cleanly with the journal intact and say how to resume.

Real processes (``python -m hub_pgen``) with the tiny random-weight Qwen2-VL on CPU, killed at seeded
points: at a named stage (``HUB_PGEN_KILL_AT``, :mod:`hub_pgen.faults`: the process SIGKILLs itself
the n-th time it passes that point) or from outside at a seeded moment during generation. Each
rerun is the same command, in process.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub_pgen.cli import main
from hub_pgen.faults import POINTS
from hub_pgen.journal import load_journal
from hub_pgen.testing.tiny_qwen import tiny_model_dir

from ..contract import tree_hashes

pytestmark = pytest.mark.slow

# files that must be byte-identical to the uninterrupted run's (provenance and card carry a timestamp)
COMPARED = ("data/", "meta/tasks.parquet", "meta/info.json", "meta/stats.json", "meta/episodes/",
            "meta/skills.json", "videos/")
# how many times each point is passed in one run of the fixture (25 samples, batch 4 = 7 batches, 2 data files)
PASSES = {"plan": 1, "frames": 7, "generate": 7, "journal": 7, "write.data": 2, "write.meta": 1,
          "finalize": 1, "cleanup": 1}
assert set(PASSES) == set(POINTS)


def _trials() -> list[tuple[str, int]]:
    rng = random.Random(20261124)
    trials = [(p, rng.randint(1, PASSES[p])) for p in POINTS]  # every point once
    trials += [(p, rng.randint(1, PASSES[p])) for p in rng.choices(POINTS, k=12)]
    trials += [("timer", rng.randint(1, 20)) for _ in range(4)]  # SIGKILL from outside, mid-generation
    return trials


TRIALS = _trials()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"), "qwen2_vl")


def args(src: Path, out: Path, tiny: Path, *extra: str) -> list[str]:
    return ["--root", str(src), "--output-dir", str(out), "--model", str(tiny), "--device", "cpu",
            "--batch-size", "4", *extra]


def compared_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).as_posix().startswith(COMPARED)}


def journal_ids(path: Path) -> list[str]:
    return [json.loads(line)["sample_id"] for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def reference(example_root, tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(args(example_root, out, tiny, "-q")) == 0
    return compared_files(out), sorted(journal_ids(out / "meta" / "syn_annotations.jsonl"))


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}


def _kill_when_journal_has(proc: subprocess.Popen, journal: Path, lines: int, sig: int, timeout: float = 120) -> int:
    """Send ``sig`` once the journal holds ``lines`` records (or the run ended first)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if journal.is_file() and journal.read_bytes().count(b"\n") >= lines:
            proc.send_signal(sig)
            break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=timeout)
    return err


@pytest.mark.parametrize("point,n", TRIALS, ids=[f"{i:02d}-{p}:{n}" for i, (p, n) in enumerate(TRIALS)])
def test_sigkill_then_rerun_equals_an_uninterrupted_run(point, n, example_root, tiny, reference, tmp_path, capsys):
    before = tree_hashes(example_root)
    out = tmp_path / "out"
    journal = tmp_path / "out.partial" / "journal.jsonl"
    cmd = [sys.executable, "-m", "hub_pgen", *args(example_root, out, tiny, "-q")]
    if point == "timer":
        proc = subprocess.Popen(cmd, env=env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        _kill_when_journal_has(proc, journal, n, signal.SIGKILL)
        assert proc.returncode in (-signal.SIGKILL, 0)
    else:
        proc = subprocess.run(cmd, env=env(HUB_PGEN_KILL_AT=f"{point}:{n}"), capture_output=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]  # it really died there

    # what the kill left: a complete OUT (killed after the rename) or no OUT; a journal of whole lines
    if out.exists():
        assert point == "cleanup" or proc.returncode == 0
    kept = load_journal(journal, fingerprint=None) if journal.is_file() else {}
    ids = journal_ids(journal) if journal.is_file() else []
    assert len(ids) == len(set(ids)), "a sample is in the journal twice"

    capsys.readouterr()
    assert main(args(example_root, out, tiny, "--json")) == 0
    result = json.loads(capsys.readouterr().out)
    files, want_ids = reference
    assert compared_files(out) == files
    final_ids = journal_ids(out / "meta" / "syn_annotations.jsonl")
    assert sorted(final_ids) == want_ids and len(final_ids) == len(set(final_ids))
    if result["state"] == "written":  # nothing finished before the kill is generated again
        assert result["resumed"] == len(kept) and result["generated"] == result["samples"] - len(kept)
    assert not journal.parent.exists()  # the work folder is gone once OUT is complete
    assert tree_hashes(example_root) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_cleanly_keeps_the_journal_and_says_how_to_resume(sig, example_root, tiny, reference,
                                                                          tmp_path, capsys):
    before = tree_hashes(example_root)
    out = tmp_path / "out"
    journal = tmp_path / "out.partial" / "journal.jsonl"
    cmd = [sys.executable, "-m", "hub_pgen", *args(example_root, out, tiny), "--batch-size", "1"]
    proc = subprocess.Popen(cmd, env=env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    err = _kill_when_journal_has(proc, journal, 3, sig)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and str(journal) in err and "TIP: rerun the same command" in err
    assert "Traceback" not in err
    assert not out.exists()
    lines = journal.read_text().splitlines()
    assert len(lines) >= 3 and all(json.loads(line)["status"] == "ok" for line in lines)  # whole records only
    said = int(re.search(r"interrupted: (\d+) of", err).group(1))
    assert said in (len(lines), len(lines) - 1)  # what it says is safe is in the journal (an fsync may race it)

    capsys.readouterr()
    assert main(args(example_root, out, tiny, "--json")) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["resumed"] == len(lines)
    assert compared_files(out) == reference[0]
    assert tree_hashes(example_root) == before
