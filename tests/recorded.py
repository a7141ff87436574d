"""Datasets as lerobot itself records them, for the tests that must not rest on hub-pgen's own example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def record_with_lerobot(script: str, root: Path, *, timeout: float = 300) -> Path:
    """Run ``script`` (a Python program that writes a dataset with lerobot's recorder API at ``argv[1]``)
    in a process of its own, with a Hub cache of its own; the dataset folder ``root`` comes back."""
    proc = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HOME": str(Path(root).parent / "hf-recorder")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(root)
