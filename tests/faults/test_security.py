"""Issue 5.5: no remote code unless asked; model text is data, never markup, wherever it is shown."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from hub_pgen import run as runner
from hub_pgen.cli import build_parser, config_from_args
from hub_pgen.config import RunConfig
from hub_pgen.data import Dialogue, GenerationRequest, GenerationResult
from hub_pgen.report import write_step_summary
from hub_pgen.testing.tiny_qwen import tiny_model_dir

from ..contract import tree_hashes

EVIL = "<script>alert('x')</script> <img src=x onerror=alert(1)> | col"


class EvilBackend:
    """A model whose answers try to inject HTML and break Markdown tables."""

    name = "evil"
    needs_images = False

    def describe(self) -> dict:
        return {"backend": self.name, "identity": {"backend": self.name}}

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Even samples: a dialogue made of markup; odd ones: a failure whose reason quotes it."""
        return [GenerationResult(r.sample.sample_id, Dialogue(r.sample.scenario_type, r.sample.response_type,
                                                              EVIL, EVIL + " reply"))
                if r.sample.frame_index % 2 == 0 else
                GenerationResult(r.sample.sample_id, None, raw_text=EVIL, error=f"not JSON: {EVIL}")
                for r in requests]


def test_model_text_is_escaped_in_the_card_and_the_job_summary(example_root, tmp_path, monkeypatch):
    before = tree_hashes(example_root)
    config = RunConfig(root=example_root, output_dir=tmp_path / "out", backend="template")
    result = runner.run(config, backend=EvilBackend())
    card = (tmp_path / "out" / "README.md").read_text()
    assert "<script>" not in card and "<img" not in card and "&lt;script&gt;" in card
    assert "\\| col" in card  # a pipe cannot open a new table column
    # the dialogue itself is kept verbatim as data
    rows = [json.loads(x) for x in (tmp_path / "out/meta/syn_annotations.jsonl").read_text().splitlines()]
    assert rows[0]["user_prompt"] == EVIL
    assert result.failures and result.ok
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_step_summary(result, config)
    text = summary.read_text()
    assert "### Failures" in text and "&lt;script&gt;" in text and "<script>" not in text and "<img" not in text
    assert tree_hashes(example_root) == before


def test_trust_remote_code_is_off_unless_asked():
    parse = build_parser().parse_args
    assert config_from_args(parse(["--root", "x"])).trust_remote_code is False
    assert config_from_args(parse(["--root", "x", "--trust-remote-code"])).trust_remote_code is True


@pytest.fixture(scope="module")
def booby_trapped_model(tmp_path_factory) -> tuple[Path, Path]:
    """A real tiny model folder whose config asks for custom code that, if ever imported, leaves a mark."""
    tiny = tiny_model_dir(tmp_path_factory.mktemp("tiny"), "qwen2_vl")
    model = tmp_path_factory.mktemp("trap") / "model"
    shutil.copytree(tiny, model)
    marker = model.parent / "REMOTE_CODE_RAN"
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                   "from transformers import Qwen2VLForConditionalGeneration as EvilModel\n")
    cfg = json.loads((model / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForImageTextToText": "evil.EvilModel"}
    (model / "config.json").write_text(json.dumps(cfg))
    return model, marker


def test_custom_code_in_a_model_folder_is_never_run_by_default(booby_trapped_model, example_root, tmp_path):
    from hub_pgen.cli import main

    model, marker = booby_trapped_model
    marker.unlink(missing_ok=True)
    rc = main(["--root", str(example_root), "--output-dir", str(tmp_path / "out"), "--model", str(model),
               "--device", "cpu", "--episodes", "0", "-q"])
    assert rc == 0 and not marker.exists()


def test_the_trap_is_real_custom_code_runs_with_trust_remote_code(booby_trapped_model):
    """Proves the test above can fail: with the flag, transformers imports the folder's code. In a
    subprocess: transformers registers remote classes process-wide, which would leak into later tests."""
    import subprocess
    import sys

    model, marker = booby_trapped_model
    code = ("from hub_pgen.generate.qwen import TransformersBackend\n"
            "try:\n"
            f"    TransformersBackend.load({str(model)!r}, device='cpu', trust_remote_code=True)\n"
            "except Exception:\n"
            "    pass  # whatever happens after the import does not matter here\n")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
                   capture_output=True)
    assert marker.exists()
