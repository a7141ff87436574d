"""Issue 2 end to end: hub-pgen on a real v3.0 fixture → a dataset lerobot 0.6.1 loads, per the contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hub_pgen.cli import main
from hub_pgen.write.validate import validate

from .contract import expected_segments, expected_skills, load_skills_json, tree_hashes

FEATURE = "task_index_high_level"


@pytest.fixture(scope="module")
def template_run(example_root, tmp_path_factory):
    before = tree_hashes(example_root)
    out = tmp_path_factory.mktemp("run") / "out"
    rc = main(["--root", str(example_root), "--output-dir", str(out), "--backend", "template", "-q"])
    assert rc == 0
    return example_root, out, before


def test_source_is_byte_identical_after_the_run(template_run):
    src, _, before = template_run
    assert tree_hashes(src) == before


def test_output_passes_validation_against_source(template_run):
    src, out, _ = template_run
    validate(out, source=src)


def test_every_frame_points_at_its_skill_or_minus_one(template_run):
    src, out, _ = template_run
    skills = load_skills_json(src)
    tasks = pd.read_parquet(out / "meta" / "tasks.parquet")
    skill_of = dict(zip(tasks["task_index"], tasks["skill"]))
    checked = outside = 0
    for path in sorted((out / "data").glob("chunk-*/file-*.parquet")):
        t = pq.read_table(path).to_pandas()
        for e, g in t.groupby("episode_index"):
            want = expected_skills(skills, int(e), g["timestamp"].astype(float).tolist())
            for value, skill in zip(g[FEATURE].tolist(), want):
                if skill is None:
                    assert value == -1
                    outside += 1
                else:
                    assert value >= 0 and skill_of[value] == skill
                checked += 1
    assert checked > 100 and outside > 0  # the fixture has a gap and an unannotated episode


def test_segment_sampling_gives_one_dialogue_per_segment(template_run):
    src, out, _ = template_run
    lines = (out / "meta" / "syn_annotations.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == expected_segments(load_skills_json(src), src)
    for r in records:
        for key in ("episode_id", "t", "images", "skill_current", "skill_history", "task_description",
                    "user_prompt", "robot_utterance", "scenario_type", "response_type", FEATURE,
                    "frame_index", "timestamp"):
            assert key in r
        assert r["status"] == "ok" and r[FEATURE] >= 0


def test_tasks_info_stats_follow_the_contract(template_run):
    src, out, _ = template_run
    old = pd.read_parquet(src / "meta" / "tasks.parquet")
    new = pd.read_parquet(out / "meta" / "tasks.parquet")
    pd.testing.assert_frame_equal(new.iloc[: len(old)][old.columns], old)
    added = new.iloc[len(old):]
    assert list(added["task_index"]) == list(range(old["task_index"].max() + 1, old["task_index"].max() + 1 + len(added)))
    assert all(added.index == added["user_prompt"] + " | " + added["robot_utterance"])
    assert new.iloc[: len(old)]["user_prompt"].isna().all()
    info_old = json.loads((src / "meta" / "info.json").read_text())
    info_new = json.loads((out / "meta" / "info.json").read_text())
    assert info_new["features"][FEATURE] == {"dtype": "int64", "shape": [1], "names": None}
    assert info_new["total_tasks"] == len(new)
    for k in info_old:
        if k not in ("features", "total_tasks"):
            assert info_new[k] == info_old[k]
    stats_old = json.loads((src / "meta" / "stats.json").read_text())
    stats_new = json.loads((out / "meta" / "stats.json").read_text())
    assert set(stats_new[FEATURE]) == set(stats_old["task_index"])
    assert stats_new[FEATURE]["min"] == [-1]
    eps = pq.read_table(next((out / "meta" / "episodes").glob("chunk-*/file-*.parquet"))).column_names
    assert {f"stats/{FEATURE}/{s}" for s in stats_old["task_index"]} <= set(eps)


def test_videos_are_hard_links(template_run):
    src, out, _ = template_run
    vids = sorted((src / "videos").rglob("*.mp4"))
    assert vids
    for v in vids:
        o = out / v.relative_to(src)
        assert os.path.samefile(v, o)


def test_card_and_provenance(template_run):
    _, out, _ = template_run
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "LeRobot" in card and "task_categories:\n- robotics\n" in card
    prov = json.loads((out / "meta" / "hub_pgen.json").read_text())
    assert prov["generation"]["backend"] == "template" and prov["tool"]["name"] == "hub-pgen"
    assert prov["counts"]["ok"] == prov["counts"]["samples"] > 0 and len(prov["fingerprint"]) == 16


def test_lerobot_loads_the_output(template_run):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    src, out, _ = template_run
    ds = LeRobotDataset("local/out", root=out, video_backend="pyav")
    ref = LeRobotDataset("local/src", root=src, video_backend="pyav")
    assert len(ds) == len(ref)
    col = np.asarray([int(x) for x in ds.hf_dataset[FEATURE]])
    assert len(col) == len(ds) and (col >= -1).all()
    for i in (0, len(ds) // 2, len(ds) - 1):
        item, orig = ds[i], ref[i]
        assert FEATURE in item and int(item[FEATURE]) == col[i]
        assert item["task"] == orig["task"]
        for cam in ds.meta.video_keys:
            assert np.array_equal(item[cam].numpy(), orig[cam].numpy())
        assert ds.meta.tasks.iloc[int(item["task_index"])].name == item["task"]


def test_rerun_same_config_is_a_no_op_and_other_config_is_refused(template_run, capsys):
    src, out, _ = template_run
    before = tree_hashes(out)
    assert main(["--root", str(src), "--output-dir", str(out), "--backend", "template", "-q"]) == 0
    assert tree_hashes(out) == before
    rc = main(["--root", str(src), "--output-dir", str(out), "--backend", "template", "--seed", "5", "-q"])
    assert rc == 4
    err = capsys.readouterr().err
    assert "different configuration" in err and "seed: 0 -> 5" in err and "TIP:" in err
    assert tree_hashes(out) == before


def _cli(args, env_extra=None, check=None):
    env = {**os.environ, **(env_extra or {})}
    p = subprocess.run([sys.executable, "-m", "hub_pgen", *args], capture_output=True, text=True, env=env, timeout=300)
    return p


def test_sigkill_mid_run_then_rerun_equals_uninterrupted(example_root, tmp_path):
    args = ["--root", str(example_root), "--backend", "template", "--sampling", "frame", "-q", "--json"]
    ref = tmp_path / "ref"
    assert _cli([*args, "--output-dir", str(ref)]).returncode == 0
    out = tmp_path / "out"
    killed = _cli([*args, "--output-dir", str(out)], {"HUB_PGEN_KILL_AT": "journal:5"})
    assert killed.returncode == -9
    journal = Path(str(out) + ".partial") / "journal.jsonl"
    journaled = len(journal.read_text().splitlines())
    assert journaled == 5 and not out.exists()
    done = _cli([*args, "--output-dir", str(out)])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["resumed"] == 5 and result["generated"] == result["samples"] - 5
    assert not Path(str(out) + ".partial").exists()
    a, b = tree_hashes(ref), tree_hashes(out)
    for rel in ("meta/hub_pgen.json", "meta/hub_pgen_report.html"):  # created_at (the review page shows it)
        a.pop(rel), b.pop(rel)
    assert a == b
