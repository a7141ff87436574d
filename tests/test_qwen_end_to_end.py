"""Issue 3 end to end: the CLI with a real (tiny, random-weight) Qwen-VL model on the fixture dataset,
frames decoded from its AV1 videos, constrained JSON, and an output lerobot 0.6.1 loads."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hub_pgen.cli import main
from hub_pgen.testing.tiny_qwen import tiny_model_dir
from hub_pgen.write.validate import validate

from .contract import tree_hashes

FEATURE = "task_index_high_level"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"), "qwen2_vl")


@pytest.fixture(scope="module")
def qwen_run(example_root, tiny, tmp_path_factory):
    before = tree_hashes(example_root)
    out = tmp_path_factory.mktemp("qwen") / "out"
    rc = main(["--root", str(example_root), "--output-dir", str(out), "--model", str(tiny), "--device", "cpu",
               "--batch-size", "4", "-q"])
    assert rc == 0
    assert tree_hashes(example_root) == before
    return out


def journal(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "meta" / "syn_annotations.jsonl").read_text().splitlines()]


def test_every_sample_is_a_schema_valid_dialogue_with_its_assigned_types(qwen_run):
    rows = journal(qwen_run)
    assert len(rows) == 25 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        raw = json.loads(r["raw_text"])  # constrained decoding: the model's own text is the JSON object
        assert (raw["scenario_type"], raw["response_type"]) == (r["scenario_type"], r["response_type"])
        assert r["user_prompt"].strip() and r["robot_utterance"].strip()
        assert [i.split("@")[0] for i in r["images"]] == ["observation.images.up", "observation.images.side"]


def test_provenance_names_the_model_and_the_output_validates(qwen_run, example_root, tiny):
    validate(qwen_run, source=example_root)
    prov = json.loads((qwen_run / "meta" / "hub_pgen.json").read_text())
    gen = prov["generation"]
    assert gen["backend"] == "transformers" and gen["model"] == tiny.name  # a local folder: its name, not its path
    assert gen["model_source"] == "local folder"
    assert gen["backend_details"]["identity"]["constrained"] is True


def test_lerobot_loads_the_qwen_output(qwen_run, example_root, no_network):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/qwen", root=qwen_run, video_backend="pyav")
    tasks = pd.read_parquet(qwen_run / "meta" / "tasks.parquet")
    assert FEATURE in ds.meta.features
    labelled = [i for i in range(len(ds)) if int(ds.hf_dataset[i][FEATURE]) >= 0]
    assert labelled
    item = ds[labelled[len(labelled) // 2]]
    dialogue = tasks.index[tasks["task_index"] == int(item[FEATURE])][0]
    assert " | " in dialogue
    assert item["observation.images.up"].shape[0] == 3


def test_resuming_with_another_batch_size_reuses_every_sample(qwen_run, example_root, tiny, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(qwen_run, out)
    before = tree_hashes(out)
    rc = main(["--root", str(example_root), "--output-dir", str(out), "--model", str(tiny), "--device", "cpu",
               "--batch-size", "1", "-q"])
    assert rc == 0 and tree_hashes(out) == before  # batch size is not part of the configuration


def test_one_camera_and_max_pixels(example_root, tiny, tmp_path):
    out = tmp_path / "out"
    rc = main(["--root", str(example_root), "--output-dir", str(out), "--model", str(tiny), "--device", "cpu",
               "--batch-size", "8", "--num-image-views-per-sample", "1", "--max-pixels", "1024",
               "--episodes", "0,1", "-q"])
    assert rc == 0
    rows = journal(out)
    assert rows and all(len(r["images"]) == 1 and r["images"][0].startswith("observation.images.up@")
                        for r in rows if r["status"] == "ok")
    prov = json.loads((out / "meta" / "hub_pgen.json").read_text())
    assert prov["identity"]["max_pixels"] == 1024 and prov["identity"]["cameras"] == ["observation.images.up"]


@pytest.mark.slow
def test_bench_gpu_pipeline_tiny_smoke(tmp_path):
    """The GPU end-to-end benchmark runs (tiny model, CPU) and reports what docs/benchmarks.md uses."""
    import subprocess
    import sys

    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "scripts/bench_gpu_pipeline.py", "--tiny", "--model", "qwen2_vl_7b",
                        "--episodes", "2", "--width", "96", "--height", "72", "--batch-sizes", "1,4",
                        "--new-tokens", "8", "--cameras", "1", "--full-batches", "2", "--json", str(out)],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert [row["batch_size"] for row in r["rows"]] == [1, 4]
    assert r["cameras"] == 1 and r["ceiling"]["prompt_tokens"] > 0 and r["ceiling"]["image_patches"] > 0
    assert r["rows"][0]["samples"] < r["rows"][1]["samples"]  # --full-batches: fewer episodes for batch 1
    assert [row["samples"] for row in r["rows"]] == [5, 10] and all(row["in_generate_s"] > 0 for row in r["rows"])
    assert r["images"] == 5 and r["frames_alone_s"] > 0  # the first plan: 5 samples, one camera


def readme_train_snippet() -> str:
    """The README's "Train on it" code, as users copy it."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Train on it", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_lerobot_renders_prompt_say_call_and_skill_at_a_sampled_frame(qwen_run, no_network, capsys):
    """Issue 11: the README's snippet, run on a tiny-model output, renders with lerobot 0.6.1's own
    ``render_sample`` the user prompt, the robot's say call and the active skill of that frame."""
    code = readme_train_snippet()
    assert 'root = "hub-pgen-out/' in code
    code = code.replace(code.split("root = ", 1)[1].split("\n", 1)[0], repr(str(qwen_run)) + "  # the test's output")
    scope: dict = {}
    exec(compile(code, "README.md#train-on-it", "exec"), scope)
    ds, i, item = scope["ds"], scope["i"], scope["item"]
    e, f = int(item["episode_index"]), int(item["frame_index"])
    rec = next(r for r in journal(qwen_run) if r["episode_index"] == e and r["frame_start"] == f)
    assert rec["status"] == "ok" and i == int(ds.meta.episodes[e]["dataset_from_index"]) + f
    assert scope["rendered"]["messages"] == [
        {"role": "user", "content": rec["user_prompt"]},
        {"role": "assistant", "content": rec["skill_current"], "tool_calls": [
            {"type": "function", "function": {"name": "say", "arguments": {"text": rec["robot_utterance"]}}}]},
    ]
    assert scope["rendered"]["target_message_indices"] == [1]
    hl = scope["high_level"]
    assert (hl.user_prompt, hl.robot_utterance, hl.skill) == (rec["user_prompt"], rec["robot_utterance"],
                                                               rec["skill_current"])
    assert rec["user_prompt"] in capsys.readouterr().out
    # the next frame of that segment: no interjection, so this recipe renders nothing to train on there,
    # while the skill is still the active subtask
    from lerobot.datasets.language_render import active_at

    later = ds[i + 1]
    assert scope["render_sample"](recipe=scope["recipe"], persistent=later["language_persistent"],
                                  events=later["language_events"], t=float(later["timestamp"]),
                                  sample_idx=i + 1) is None
    assert active_at(float(later["timestamp"]), persistent=later["language_persistent"],
                     style="subtask")["content"] == rec["skill_current"]
