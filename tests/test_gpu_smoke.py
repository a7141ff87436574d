"""``scripts/gpu_smoke.sh --tiny``: the GPU smoke script itself, run the way a user runs it (bash, the
``hub-pgen`` CLI installed from this checkout without network), with the tiny random Qwen2.5-VL model
on CPU, so the script is known to work before anyone spends GPU time on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub_pgen.write.validate import validate

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["wheels", "install", "env", "model", "dataset", "run", "validate", "dataset-as-is", "run-as-is",
         "validate-as-is"]


@pytest.mark.slow
def test_gpu_smoke_tiny_passes_and_leaves_a_valid_dataset(tmp_path):
    work, device_out = tmp_path / "work", tmp_path / "device-out"
    env = dict(os.environ)  # HF_HUB_OFFLINE=1 and the temp HF_HOME from conftest carry over
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHON"] = sys.executable
    env["OUT"] = str(device_out)  # as the device tool sets it: the results land there too
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_smoke.sh"), "--tiny", "--work", str(work)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert "gpu_smoke tiny: PASS" in log

    out = work / "out"
    validate(out, source=work / "source")
    info = json.loads((out / "meta" / "info.json").read_text())
    assert "task_index_high_level" in info["features"]
    assert sorted(p.name for p in (work / "model").glob("*.safetensors"))  # a saved model folder
    assert (work / "model" / "model.safetensors.index.json").is_file()

    report = json.loads((device_out / "gpu_smoke.json").read_text())
    assert report["verdict"] == "PASS" and report["problems"] == []
    assert [s["step"] for s in report["steps"]] == STEPS
    assert all(s["rc"] == 0 and s["seconds"] >= 0 for s in report["steps"])
    assert report["result"]["samples"] == 15 and report["result"]["ok"] >= 1
    assert report["command"].startswith("hub-pgen --root ") and "--device cpu" in report["command"]
    assert "on device cpu, dtype float32" in report["model_line"]  # the log names device and dtype
    # the dataset without skills: the same command labels them with the model, then generates
    assert report["result_as_is"]["skills"]["source"] == "annotate" and report["result_as_is"]["ok"] >= 1
    validate(work / "out-as-is", source=work / "source-as-is")
    assert (device_out / "gpu_smoke.log").read_text().count("== run") >= 2
    # hub-pgen itself came from this checkout, installed into the work folder, not from the venv
    assert f"hub-pgen: {work}/site-hub-pgen/bin/hub-pgen" in log
