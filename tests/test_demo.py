"""The README's first command: ``hub-pgen demo`` runs the whole job offline on a bundled example."""

from __future__ import annotations

import os
import subprocess
import sys

from hub_pgen.write.validate import validate


def demo(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub_pgen", "demo", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_demo_runs_offline_and_its_output_loads_in_lerobot(tmp_path, no_network):
    p = demo(cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    out = tmp_path / "demo-out" / "dataset"
    assert "A few generated dialogues" in p.stdout and "user:" in p.stdout and str(out) in p.stdout
    assert "Svt[" not in p.stderr  # no encoder banner before hub-pgen's own output
    warnings = [line for line in p.stderr.splitlines() if "] WARNING" in line]
    assert len(warnings) == 1 and "on purpose" in p.stderr  # the example's deliberate flaw, said so
    validate(out, source=tmp_path / "demo-out" / "source")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/demo", root=out, video_backend="pyav")
    assert "task_index_high_level" in ds[0]
    again = demo(cwd=tmp_path)  # the same command twice: the finished dataset is kept as it is
    assert again.returncode == 0, again.stderr[-2000:]


def test_demo_with_a_tiny_qwen_model(tmp_path):
    from hub_pgen.testing.tiny_qwen import tiny_model_dir

    tiny = tiny_model_dir(tmp_path / "models", "qwen2_vl")
    p = demo("--backend", "transformers", "--model", str(tiny), "--device", "cpu", "--episodes", "2",
             "--output-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    validate(tmp_path / "d" / "dataset")
