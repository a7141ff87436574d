"""Issue 19, part 4: the GPU runner's road on a machine without one — a GPU that is there but unusable is
said (not a silent float32 run on the CPU), ``--dry-run`` runs without torch and prices a run in tokens,
calls and GPU time, and its token arithmetic is the processor's own."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from hub_pgen.cli import main
from hub_pgen.plan import cost
from hub_pgen.testing.tiny_qwen import tiny_model_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"), "qwen2_5_vl")


def test_a_gpu_that_is_there_but_unusable_stops_the_run_with_what_to_do(example_root, tiny, tmp_path, capsys,
                                                                        monkeypatch):
    from hub_pgen.generate import loading

    monkeypatch.setattr(loading, "gpu_present", lambda: "GPU 0: NVIDIA H200 (UUID: GPU-0000)")
    monkeypatch.setattr(loading, "cuda_usable", lambda: False)
    out = tmp_path / "out"
    assert main(["--root", str(example_root), "--output-dir", str(out), "--model", str(tiny)]) == 5
    err = capsys.readouterr().err
    assert "this machine has a GPU (GPU 0: NVIDIA H200" in err and "torch cannot use it" in err
    assert "does not fall back to the CPU silently" in err and "--device cpu to run on the CPU on purpose" in err
    assert not out.exists() and not Path(f"{out}.partial").exists()
    loading.check_device("cpu")  # asked for: fine
    monkeypatch.setattr(loading, "gpu_present", lambda: None)
    loading.check_device(None)  # no GPU at all: the CPU, as before


def test_a_dry_run_needs_no_torch_and_prices_the_run(example_root, tmp_path):
    code = ("import sys\n"
            "for m in ('torch', 'torchvision', 'transformers', 'accelerate', 'xgrammar'): sys.modules[m] = None\n"
            "from hub_pgen.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", code, "--root", str(example_root), "--dry-run", "--json",
                           "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--batch-size", "4"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(proc.stdout)["plan_report"]
    c = plan["cost"]
    assert c["family"] == "qwen2_5_vl" and "smart_resize" in c["image_tokens_from"]
    assert c["text_tokens_from"].startswith("estimate")
    # the example's cameras are 64x48 (info.json): Qwen2.5-VL resizes to 56x56 → 2x2 tokens each
    assert c["image_tokens_per_image"] == [4, 4] and c["image_tokens_per_sample"] == 8
    assert c["model_calls"] == plan["samples"] and c["gpu_seconds_estimate"] > 0
    expected = cost.gpu_seconds(plan["samples"], c["input_tokens_per_sample"], c["output_tokens_per_sample"], 4)
    assert c["gpu_seconds_estimate"] == pytest.approx(expected, abs=0.1)
    assert "prefill tokens/s" in c["gpu_rate_assumed"] and "not a measurement" in c["gpu_rate_assumed"]
    # and it says what the real run would need: the model stack is missing here (exit 5, with the install)
    assert plan["real_run"].startswith("the real run would stop here (exit 5)") and "[transformers]" in plan["real_run"]
    assert "the real run would stop here (exit 5)" in proc.stderr


def test_the_formula_is_transformers_smart_resize():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    rng = random.Random(0)
    for _ in range(2000):
        h, w = rng.randint(32, 4000), rng.randint(32, 4000)
        if max(h, w) / min(h, w) > 150:
            continue
        factor = rng.choice((28, 32))
        lo, hi = rng.choice(((3136, 12845056), (65536, 16777216), (3136, 1003520)))
        assert cost.smart_resize(h, w, factor, lo, hi) == tuple(smart_resize(h, w, factor, lo, hi)), (h, w, factor)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_image_tokens_are_what_the_processor_puts_in_the_prompt(family, tmp_path_factory):
    """Counted the way the model sees them: image pad tokens in the processed prompt."""
    import numpy as np
    from PIL import Image
    from transformers import AutoProcessor

    folder = tiny_model_dir(tmp_path_factory.mktemp(family), family)
    proc = cost.processor_for(str(folder))
    assert proc.source == "processor" and proc.family == family
    processor = AutoProcessor.from_pretrained(folder)
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for h, w in ((48, 64), (480, 640), (123, 457)):
        image = Image.fromarray(np.zeros((h, w, 3), np.uint8))
        text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}]}], tokenize=False)
        ids = processor(text=[text], images=[image], return_tensors="np")["input_ids"][0]
        assert int((ids == pad).sum()) == proc.image_tokens(h, w), (family, h, w)


def test_the_family_is_read_from_the_name_or_the_folder(tiny):
    assert cost.family_of("Qwen/Qwen3-VL-30B-A3B-Instruct") == "qwen3_vl_moe"
    assert cost.family_of("Qwen/Qwen3-VL-8B-Instruct") == "qwen3_vl"
    assert cost.family_of("Qwen/Qwen2.5-VL-7B-Instruct") == "qwen2_5_vl"
    assert cost.family_of("Qwen/Qwen2-VL-7B-Instruct") == "qwen2_vl"
    assert cost.family_of(str(tiny)) == "qwen2_5_vl"
    # a 640x480 camera, as the README's cost lines say: Qwen2.5-VL 391 tokens, Qwen3-VL 300
    assert cost.processor_for("Qwen/Qwen2.5-VL-7B-Instruct").image_tokens(480, 640) == 17 * 23
    assert cost.processor_for("Qwen/Qwen3-VL-8B-Instruct").image_tokens(480, 640) == 15 * 20
    assert math.isclose(cost.gpu_seconds(10, 1000, 100, 2), 10 * 1000 / 10_000 + 5 * 100 / 40)
