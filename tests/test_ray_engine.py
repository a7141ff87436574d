"""Issue 13 part 2: --engine ray (a local Ray cluster, two model actors) gives the one-process result."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub_pgen.cli import main
from hub_pgen.testing.tiny_qwen import tiny_model_dir
from hub_pgen.write.validate import validate

from .contract import tree_hashes

pytest.importorskip("ray")


def run(src: Path, out: Path, *extra: str) -> int:
    return main(["--root", str(src), "--output-dir", str(out), "-q", *extra])


def same_except_engine(a: Path, b: Path) -> None:
    """The same dataset; the card lists the parameters, so it differs in the engine's lines only."""
    ha, hb = tree_hashes(a), tree_hashes(b)
    for rel in ("meta/hub_pgen.json", "README.md", "meta/hub_pgen_report.html"):  # the page shows the provenance
        ha.pop(rel), hb.pop(rel)
    assert ha == hb
    lines_b = set((b / "README.md").read_text().splitlines())
    diff = [line for line in (a / "README.md").read_text().splitlines() if line not in lines_b]
    assert diff and all('"engine"' in line or '"workers"' in line for line in diff), diff


def test_two_ray_actors_with_a_tiny_model_give_the_one_process_result(example_root, tmp_path):
    tiny = tiny_model_dir(tmp_path / "tiny", "qwen2_vl")
    args = ("--model", str(tiny), "--device", "cpu", "--batch-size", "4")
    assert run(example_root, tmp_path / "local", *args) == 0
    assert run(example_root, tmp_path / "ray", *args, "--engine", "ray", "--workers", "2") == 0
    validate(tmp_path / "ray", source=example_root)
    same_except_engine(tmp_path / "ray", tmp_path / "local")


def test_the_ray_engine_resumes_from_the_journal_like_a_local_run(example_root, tmp_path):
    """A journal left by a local run that stopped early: the Ray run generates only what is missing."""
    local = tmp_path / "local"
    assert run(example_root, local, "--backend", "template") == 0
    out = tmp_path / "out"
    work = Path(f"{out}.partial")
    work.mkdir()
    lines = (local / "meta" / "syn_annotations.jsonl").read_text().splitlines()
    import json

    fp = json.loads((local / "meta" / "hub_pgen.json").read_text())["fingerprint"]
    journal = [json.dumps({**json.loads(x), "fingerprint": fp, "task_index_high_level": None}) for x in lines[:10]]
    (work / "journal.jsonl").write_text("\n".join(journal) + "\n")
    (work / "run.json").write_text(json.dumps({"fingerprint": fp, "identity": {}, "started_at": "x"}))
    assert main(["--root", str(example_root), "--output-dir", str(out), "--backend", "template", "--engine", "ray",
                 "--workers", "2", "--json"]) == 0
    same_except_engine(out, local)


def test_ray_options_are_checked_before_anything_happens(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    for extra, message in (
        (("--workers", "2"), "--ray-address and --workers go with --engine ray"),
        (("--engine", "ray", "--workers", "0"), "--workers must be >= 1"),
        (("--engine", "ray", "--backend", "openai", "--serve", "vllm", "--model", "m"),
         "the servers would start on this machine only"),
    ):
        assert run(example_root, out, "--backend", "template", *extra) == 2
        assert message in capsys.readouterr().err
    # a cluster without GPUs (this one) needs to be told how many actors to start
    assert run(example_root, out, "--backend", "template", "--engine", "ray") == 2
    assert "needs --workers N" in capsys.readouterr().err
