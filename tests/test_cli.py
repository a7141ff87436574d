"""The command line: flags, usage errors with exit code 2 and a TIP, the seed script, JSONL mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hub_pgen import __version__
from hub_pgen.cli import build_parser, config_from_args, main

REPO = Path(__file__).resolve().parents[1]


def cfg(*argv):
    return config_from_args(build_parser().parse_args(list(argv)))


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--root", "--repo-id", "--sampling", "--episodes", "--dry-run", "--push-to", "--num-image-views-per-sample"):
        assert flag in out


def test_seed_flags_and_model_last_wins():
    c = cfg("--output-dir", "o", "--repo-id", "lerobot/svla_so101_pickplace", "--model", "Qwen/Qwen2-VL-7B-Instruct",
            "--model", "Qwen/Qwen3-VL-30B-A3B-Instruct", "--batch-size", "1", "--temperature", "0.7",
            "--num-image-views-per-sample", "2", "--device", "cpu")
    assert c.model == "Qwen/Qwen3-VL-30B-A3B-Instruct" and c.batch_size == 1 and c.num_image_views == 2
    assert c.device == "cpu" and c.temperature == 0.7 and c.repo_id == "lerobot/svla_so101_pickplace"


def test_episode_ranges_and_mixes():
    c = cfg("--root", "x", "--episodes", "0,3-5", "--scenario-mix", "negative_task=2,direct_request=1")
    assert c.episodes == (0, 3, 4, 5) and c.scenario_mix == {"negative_task": 2.0, "direct_request": 1.0}


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "give exactly one source"),
        (["--root", "a", "--repo-id", "b/c"], "give exactly one source"),
        (["--root", "a", "--sampling", "interval"], "--sample-interval"),
        (["--root", "a", "--branch", "x"], "--branch needs --push-to"),
        (["--root", "a", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["--root", "a", "--episodes", "5-3"], "--episodes"),
        (["--root", "a", "--scenario-mix", "nope=1"], "unknown type 'nope'"),
        (["--input-jsonl", "a.jsonl", "--push-to", "me/x"], "--push-to needs a dataset source"),
    ],
)
def test_usage_errors_exit_2(argv, fragment, capsys):
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_missing_root_is_a_clear_input_error(tmp_path, capsys):
    assert main(["--root", str(tmp_path / "nope"), "--backend", "template"]) == 3
    assert "does not exist" in capsys.readouterr().err


def test_seed_script_delegates_to_the_package(tmp_path):
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "annotate_pgen.py"), "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "--output-dir" in p.stdout and "--num-image-views-per-sample" in p.stdout
    p = subprocess.run([sys.executable, "-c", "import runpy,sys; sys.path.insert(0, 'scripts'); import annotate_pgen as a; "
                        "print(all(hasattr(a, n) for n in ('PGEN_PROMPT_TEMPLATE','construct_prompt','call_qwen','annotate_sample')))"],
                       capture_output=True, text=True, cwd=REPO)
    assert p.stdout.strip() == "True", p.stderr


def test_jsonl_input_gives_dsyn_jsonl_and_records_bad_lines(tmp_path):
    lines = [
        {"episode_id": "ep_001", "t": 37, "images": ["cam0.jpg", "cam1.jpg"], "skill_current": "pick up the KitKat",
         "skill_history": ["open fridge"], "task_description": "making a sandwich"},
        "this is not json",
        {"episode_id": "ep_001", "t": 40, "images": "not-a-list", "skill_current": "x"},
        {"episode_id": "ep_002", "t": 3, "images": [], "skill_current": "close the fridge", "skill_history": [],
         "task_description": "making a sandwich"},
    ]
    src = tmp_path / "d_labeled.jsonl"
    src.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "out"
    assert main(["--input-jsonl", str(src), "--output-dir", str(out), "--backend", "template", "-q"]) == 0
    recs = [json.loads(line) for line in (out / "syn_annotations.jsonl").read_text().splitlines()]
    assert [r["status"] for r in recs] == ["ok", "failed", "failed", "ok"]
    assert recs[0]["episode_id"] == "ep_001" and recs[0]["t"] == 37 and recs[0]["images"] == ["cam0.jpg", "cam1.jpg"]
    assert recs[0]["user_prompt"] and recs[0]["robot_utterance"] and recs[0]["skill_history"] == ["open fridge"]
    assert "line 2" in recs[1]["error"] and "not JSON" in recs[1]["error"]
    assert "line 3" in recs[2]["error"] and "'images'" in recs[2]["error"]
