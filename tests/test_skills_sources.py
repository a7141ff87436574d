"""Issue 12: skills where there are none. A dataset lerobot itself wrote (no meta/skills.json):
``--skills annotate`` with the template backend and a tiny constrained model, lerobot's own subtask
rows picked by ``auto``, ``auto`` with neither stopping before anything exists, and a kill during the
labelling resumed byte-identically without asking the model twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hub_pgen.cli import main
from hub_pgen.skills.annotate import EpisodeRequest, SegmentationError, parse_segmentation
from hub_pgen.testing.tiny_qwen import tiny_model_dir
from hub_pgen.write.validate import validate

from .contract import persistent_by_episode, tree_hashes
from .recorded import record_with_lerobot

LEROBOT_WRITER = """
import sys
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
cams = ("observation.images.up", "observation.images.side")
feats = {cam: {"dtype": "video", "shape": (48, 64, 3), "names": ["height", "width", "channels"]} for cam in cams}
feats["observation.state"] = {"dtype": "float32", "shape": (2,), "names": None}
ds = LeRobotDataset.create("me/recorded", fps=10, features=feats, root=sys.argv[1], use_videos=True)
tasks = ["pick up the cube and place it in the bowl", "open the drawer, then push it closed"]
for e, length in enumerate((50, 42, 61)):
    for f in range(length):
        frame = {cam: np.full((48, 64, 3), (5 * f + 40 * e) % 255, np.uint8) for cam in cams}
        ds.add_frame(frame | {"observation.state": np.zeros(2, np.float32), "task": tasks[e % 2]})
    ds.save_episode()
ds.finalize()
"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """Three episodes (4.2-6.1 s at 10 fps, two cameras) written by lerobot 0.6.1's own recorder API."""
    pytest.importorskip("lerobot")
    src = record_with_lerobot(LEROBOT_WRITER, tmp_path_factory.mktemp("recorded") / "src")
    assert not (src / "meta" / "skills.json").exists()
    return src


def run(src: Path, out: Path, *extra: str) -> int:
    return main(["--root", str(src), "--output-dir", str(out), "-q", *extra])


def skills_json(out: Path) -> dict:
    return json.loads((out / "meta" / "skills.json").read_text())


def check_skills_cover_each_episode(out: Path, min_seconds: float = 1.0) -> None:
    """The seed's skills.json format; per episode, contiguous skills from the first frame to the end."""
    data = skills_json(out)
    info = json.loads((out / "meta" / "info.json").read_text())
    assert set(data) == {"coarse_description", "skill_to_task_index", "episodes"}
    names = {s["name"] for ep in data["episodes"].values() for s in ep["skills"]}
    assert set(data["skill_to_task_index"]) == names
    assert sorted(data["skill_to_task_index"].values()) == list(range(len(names)))
    lengths = {e: n for e, n in zip(*_episode_lengths(out))}
    assert set(map(int, data["episodes"])) == set(lengths)
    for key, ep in data["episodes"].items():
        skills = ep["skills"]
        assert ep["episode_index"] == int(key) and skills
        assert skills[0]["start"] == 0.0
        assert abs(skills[-1]["end"] - lengths[int(key)] / info["fps"]) < 1e-6
        for a, b in zip(skills, skills[1:]):
            assert a["end"] == b["start"]
        if len(skills) > 1:
            assert all(s["end"] - s["start"] >= min_seconds - 1e-9 for s in skills)
        for s in skills:
            assert s["name"] and s["name"][0].isalpha() and len(s["name"]) <= 60


def _episode_lengths(out: Path) -> tuple[list[int], list[int]]:
    t = pa.concat_tables([pq.read_table(p, columns=["episode_index", "length"])
                          for p in sorted((out / "meta" / "episodes").glob("chunk-*/file-*.parquet"))])
    return t.column("episode_index").to_pylist(), t.column("length").to_pylist()


def test_file_or_language_without_skills_stops_before_anything_exists_and_names_annotate(recorded, tmp_path,
                                                                                          capsys):
    before = tree_hashes(recorded)
    out = tmp_path / "out"
    assert run(recorded, out, "--backend", "template", "--skills", "file") == 3
    err = capsys.readouterr().err
    assert "--skills file: dataset" in err and "has no meta/skills.json" in err
    assert "TIP: let the model label the skills first: --skills annotate" in err and "3 episode(s)" in err
    assert run(recorded, out, "--backend", "template", "--skills", "language") == 3
    assert "has no language columns at all" in capsys.readouterr().err
    assert tree_hashes(recorded) == before and not out.exists() and not Path(f"{out}.partial").exists()


def test_auto_without_skills_labels_them_first_and_says_so(recorded, template_annotated, tmp_path, capsys):
    """The card's one command on a dataset as lerobot records it: auto labels, then generates, and says
    up front what the labelling adds; the result is the --skills annotate one (the same folder key)."""
    out = tmp_path / "out"
    capsys.readouterr()
    assert run(recorded, out, "--backend", "template", "--json") == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    notice = next(n for n in result["notices"] if n.startswith("--skills auto:"))
    assert "no skill annotation" in notice and "3 episode(s), no model call (the template backend" in notice
    assert notice in captured.err  # said as it starts, not only in the summary
    assert result["skills"]["source"] == "annotate" and result["skills"]["requested"] == "auto"
    assert result["fingerprint"] == json.loads((template_annotated / "meta" / "hub_pgen.json").read_text())[
        "fingerprint"]
    assert skills_json(out) == skills_json(template_annotated)
    prov = json.loads((out / "meta" / "hub_pgen.json").read_text())
    assert prov["skills"]["requested"] == "auto" and prov["parameters"]["skills"] == "auto"
    card = (out / "README.md").read_text()
    assert "the dataset had none (--skills auto)" in card
    validate(out, source=recorded)
    # --dry-run prices it the same way: the labelling's calls, before any sample exists
    assert run(recorded, tmp_path / "dry", "--backend", "transformers", "--dry-run", "--json") == 0
    captured = capsys.readouterr()
    plan = json.loads(captured.out)["plan_report"]
    assert plan["skills"] == "annotate" and plan["labelling_model_calls"] == 3
    # the sheets' image tokens, by the default model's (Qwen3-VL) processor arithmetic, as the plan has them
    assert (f"3 episode(s), 3 extra model call(s) (3 contact sheet(s), about {plan['image_tokens']:,} image tokens)"
            in captured.err) and plan["cost"]["model_calls"] == 3


@pytest.fixture(scope="module")
def template_annotated(recorded, tmp_path_factory):
    out = tmp_path_factory.mktemp("annotated") / "out"
    assert run(recorded, out, "--backend", "template", "--skills", "annotate") == 0
    return out


def test_annotate_with_the_template_backend_makes_valid_skills_and_a_dataset_that_verifies(
        recorded, template_annotated):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = template_annotated
    validate(out, source=recorded)
    check_skills_cover_each_episode(out)
    data = skills_json(out)
    assert data["episodes"]["0"]["description"] == "pick up the cube and place it in the bowl"
    assert data["coarse_description"] is None  # two different tasks
    # named from each episode's task, in its order
    assert [s["name"] for s in data["episodes"]["0"]["skills"]] == ["pick up the cube", "place it in the bowl"]
    assert [s["name"] for s in data["episodes"]["1"]["skills"]] == ["open the drawer", "push it closed"]
    prov = json.loads((out / "meta" / "hub_pgen.json").read_text())
    assert prov["skills"]["source"] == "annotate" and prov["skills"]["labelled"] == 3 and prov["skills"]["failed"] == []
    assert prov["identity"]["skills"]["source"] == "annotate"
    records = [json.loads(line) for line in (out / "meta" / "hub_pgen_skills.jsonl").read_text().splitlines()]
    assert [r["episode_index"] for r in records] == [0, 1, 2] and all(r["status"] == "ok" for r in records)
    # the skills are what the language columns and the seed's column carry
    table = pa.concat_tables([pq.read_table(p) for p in sorted((out / "data").glob("chunk-*/file-*.parquet"))])
    subtasks = persistent_by_episode(table)
    for e, ep in data["episodes"].items():
        assert [(r["content"], r["timestamp"]) for r in subtasks[int(e)]] == [
            (s["name"], pytest.approx(s["start"], abs=1e-6)) for s in ep["skills"]]
    ds = LeRobotDataset("me/annotated", root=out, video_backend="pyav")
    assert len(ds) == 153 and ds.meta.has_language_columns


def test_annotate_with_a_tiny_constrained_model_labels_every_episode(recorded, tmp_path):
    """A random-weight model under the schema: every answer is JSON the schema allows (names, times
    from the tiles, at most the allowed number of skills), so every episode gets valid skills."""
    tiny = tiny_model_dir(tmp_path / "tiny", "qwen2_vl")
    out = tmp_path / "out"
    assert run(recorded, out, "--skills", "annotate", "--model", str(tiny), "--device", "cpu", "--batch-size", "3",
               "--max-new-tokens", "211") == 0
    validate(out, source=recorded)
    check_skills_cover_each_episode(out)
    records = [json.loads(line) for line in (out / "meta" / "hub_pgen_skills.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for r in records:
        assert r["status"] == "ok" and r["frames_shown"] >= 9
        raw = json.loads(r["raw_text"])  # constrained: the model's own text is the JSON object
        assert set(raw) == {"skills"} and 1 <= len(raw["skills"]) <= 12
        for item in raw["skills"]:
            assert set(item) == {"name", "start", "end"} and item["name"][0].isalpha()


def test_auto_picks_lerobots_own_subtask_rows(recorded, tmp_path, capsys):
    """lerobot-annotate's plan module leaves subtask rows and no skills.json: auto uses them."""
    from .test_language import annotate_with_lerobot

    src = tmp_path / "src"
    shutil.copytree(recorded, src)
    annotate_with_lerobot(src, {
        0: {"plan": [{"role": "assistant", "content": "reach for the cube", "style": "subtask", "timestamp": 0.0},
                     {"role": "assistant", "content": "lift the cube", "style": "subtask", "timestamp": 2.0}]},
        2: {"plan": [{"role": "assistant", "content": "open the drawer", "style": "subtask", "timestamp": 0.0}]},
    })
    out = tmp_path / "out"
    assert run(src, out, "--backend", "template") == 0
    validate(out, source=src)
    data = skills_json(out)
    ep0 = data["episodes"]["0"]["skills"]
    assert [(s["name"], s["start"], s["end"]) for s in ep0] == [("reach for the cube", 0.0, 2.0),
                                                                ("lift the cube", 2.0, 5.0)]
    assert set(data["episodes"]) == {"0", "2"}  # episode 1 has no subtask rows: no skills, no samples
    prov = json.loads((out / "meta" / "hub_pgen.json").read_text())
    assert prov["skills"]["source"] == "language" and prov["identity"]["skills"]["source"] == "language"
    recs = [json.loads(line) for line in (out / "meta" / "syn_annotations.jsonl").read_text().splitlines()]
    assert sorted(r["skill_current"] for r in recs) == ["lift the cube", "open the drawer", "reach for the cube"]
    # the subtask rows were the source's: kept, not added a second time
    assert prov["language"]["subtask_rows"] == 0 and prov["language"]["already_there"] == 3


def test_kill_during_labelling_then_rerun_is_byte_identical_and_asks_nothing_twice(recorded, tmp_path):
    args = ["--root", str(recorded), "--backend", "template", "--skills", "annotate", "-q"]
    ref = tmp_path / "ref"
    assert _cli([*args, "--output-dir", str(ref)]).returncode == 0
    out = tmp_path / "out"
    killed = _cli([*args, "--output-dir", str(out)], {"HUB_PGEN_KILL_AT": "skills.journal:2"})
    assert killed.returncode == -9
    journal = Path(f"{out}.partial") / "skills.jsonl"
    assert [json.loads(line)["episode_index"] for line in journal.read_text().splitlines()] == [0, 1]
    # the rerun passes "the backend answered a batch" once more only: episode 2 (a second ask kills it)
    done = _cli([*args, "--output-dir", str(out)], {"HUB_PGEN_KILL_AT": "skills.asked:2"})
    assert done.returncode == 0, done.stderr
    a, b = tree_hashes(ref), tree_hashes(out)
    for rel in ("meta/hub_pgen.json", "meta/hub_pgen_report.html"):  # created_at (the review page shows it)
        a.pop(rel), b.pop(rel)
    assert a == b


def _cli(args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "hub_pgen", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_dry_run_prices_the_labelling(recorded, tmp_path, capsys):
    assert main(["--root", str(recorded), "--backend", "template", "--skills", "annotate", "--dry-run", "--json",
                 "--output-dir", str(tmp_path / "out")]) == 0
    plan = json.loads(capsys.readouterr().out)["plan_report"]
    assert plan["skills"] == "annotate" and plan["episodes_to_label"] == 3
    assert plan["frames_shown_per_episode"] == "9-13" and plan["contact_sheets"] == 3
    # sheets as laid out, 28 px a token: 5 tiles of 224 px wide (40 tokens), 2, 2 and 3 rows of 168 px (6 each)
    assert plan["image_tokens"] == 40 * 6 * (2 + 2 + 3)
    assert plan["labelling_model_calls"] == 0  # the template backend asks no model
    assert not (tmp_path / "out").exists()


# --- answers: what is repaired, what is refused -----------------------------------------------------


REQ = EpisodeRequest(0, "pick the cube", times=(0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0), frames=(0, 5, 10, 15, 20, 25, 30),
                     end=3.1, min_seconds=1.0)


def test_the_schema_bounds_every_answer_and_the_budget_holds_the_longest():
    schema = REQ.schema()
    item = schema["properties"]["skills"]["items"]["properties"]
    assert item["start"]["enum"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0] and item["end"]["enum"][-1] == 3.1
    assert schema["properties"]["skills"]["maxItems"] == 3  # 3.1 s at 1 s a skill
    longest = {"skills": [{"name": "a" * 60, "start": 0.0, "end": 3.1}] * 3}
    assert len(json.dumps(longest, separators=(",", ":"))) + 1 <= REQ.max_new_tokens()
    assert "0.0 s to 3.1 s" in REQ.prompt() and "at most 3 skills" in REQ.prompt()


@pytest.mark.parametrize("answer, skills, repairs", [
    ('{"skills":[{"name":"reach","start":0.0,"end":1.5},{"name":"grasp","start":1.5,"end":3.1}]}',
     [("reach", 0.0, 1.5), ("grasp", 1.5, 3.1)], ()),
    # out of order, a gap, an unshown time: sorted, snapped and stitched
    ('{"skills":[{"name":"grasp","start":1.52,"end":2.4},{"name":"reach","start":0.2,"end":1.0}]}',
     [("reach", 0.0, 1.5), ("grasp", 1.5, 3.1)],
     ("time snapped to a shown frame", "skills sorted by start", "spans stitched end to start over the whole episode")),
    # an empty span among real ones is dropped, and said so
    ('{"skills":[{"name":"reach","start":0.0,"end":1.5},{"name":"x","start":2.0,"end":2.0},'
     '{"name":"grasp","start":1.5,"end":3.1}]}',
     [("reach", 0.0, 1.5), ("grasp", 1.5, 3.1)], ("a span that ends where it starts dropped",)),
    # a span under a second joins the one before it
    ('{"skills":[{"name":"reach","start":0,"end":1.5},{"name":"tap","start":1.5,"end":2.0},'
     '{"name":"lift","start":2.0,"end":3.1}]}',
     [("reach", 0.0, 2.0), ("lift", 2.0, 3.1)], ("a span under 1 s merged into its neighbour",)),
    # prose and a code fence around it (an unconstrained server)
    ('Sure!\n```json\n{"skills": [{"name": "pick the cube", "start": 0, "end": 3.1}]}\n```',
     [("pick the cube", 0.0, 3.1)], ()),
])
def test_answers_are_repaired_where_that_is_safe(answer, skills, repairs):
    got, made = parse_segmentation(answer, REQ)
    assert [(s.name, s.start, s.end) for s in got] == skills
    assert made == repairs


@pytest.mark.parametrize("answer, reason", [
    ("", "empty answer"),
    ("no json here", "no JSON object"),
    ('{"skills": []}', 'no "skills" list'),
    ('{"skills": [{"name": "", "start": 0, "end": 1}]}', "has no name"),
    ('{"skills": [{"name": "reach", "start": "soon", "end": 1}]}', "must be a number of seconds"),
    # a weak model's "answer": spans of no length say nothing about where the skills are
    ('{"skills": [{"name": "reach", "start": 1.0, "end": 1.0}, {"name": "x", "start": 2.5, "end": 2.0}]}',
     "every skill ends where it starts"),
])
def test_unusable_answers_are_refused_with_a_reason(answer, reason):
    with pytest.raises(SegmentationError, match=reason):
        parse_segmentation(answer, REQ)


def test_annotate_through_an_openai_compatible_server(recorded, tmp_path, monkeypatch):
    """The labelling goes to a server like the dialogues do: the contact sheets as images, the
    segmentation schema as response_format; the stand-in's minimal answer (one short skill) is
    repaired into one skill over the whole episode."""
    from .openai_server import OpenAIServer

    monkeypatch.setenv("HUB_PGEN_RETRY_SCALE", "0.01")
    out = tmp_path / "out"
    with OpenAIServer() as server:
        assert run(recorded, out, "--skills", "annotate", "--backend", "openai", "--base-url", server.url) == 0
        bodies = [r["body"] for r in server.requests]
    labelling = [b for b in bodies if b.get("response_format", {}).get("json_schema", {}).get("name") == "hub_pgen_skills"]
    assert len(labelling) == 3 and len(bodies) == 3 + 3  # one call per episode, then one dialogue per skill
    for body in labelling:
        content = body["messages"][0]["content"]
        assert [c["type"] for c in content] == ["image_url", "text"]  # one contact sheet (<= 20 frames)
        assert content[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert body["max_tokens"] < 2000
    validate(out, source=recorded)
    check_skills_cover_each_episode(out)
    records = [json.loads(line) for line in (out / "meta" / "hub_pgen_skills.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" and "spans stitched end to start over the whole episode" in r["repairs"]
               for r in records)


def test_min_skill_seconds_only_goes_with_skills_the_model_labels(recorded, tmp_path, capsys):
    for skills in (["--skills", "file"], ["--skills", "language"], ["--skills-file", str(tmp_path / "s.json")]):
        assert run(recorded, tmp_path / "out", "--backend", "template", "--min-skill-seconds", "2", *skills) == 2
        assert "--min-skill-seconds only applies to skills the model labels" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_annotate_ignores_a_skills_file_and_says_so(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--root", str(example_root), "--output-dir", str(out), "--backend", "template", "--skills",
                 "annotate", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert any("dataset's meta/skills.json is not used" in n for n in result["notices"])
    assert result["skills"]["source"] == "annotate" and result["skills"]["labelled_by"] == "template"


def test_when_labelling_fails_the_way_out_is_open(recorded, tmp_path, capsys):
    """Every answer refused: the run stops naming the labels' journal; --retry-failed asks again with new
    seeds (the attempts go on); another configuration in the same folder replaces the failed run."""
    tiny = tiny_model_dir(tmp_path / "tiny", "qwen2_vl")
    out = tmp_path / "out"
    args = ["--skills", "annotate", "--model", str(tiny), "--device", "cpu", "--batch-size", "3",
            "--no-constrained", "--max-new-tokens", "8", "--max-retries", "0"]
    assert run(recorded, out, *args) == 3
    err = capsys.readouterr().err
    journal = Path(f"{out}.partial") / "skills.jsonl"
    assert f"{journal}: the model labelled no usable skills for any of the 3 episode(s)" in err
    assert "--retry-failed" in err
    first = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["status"] for r in first] == ["failed"] * 3 and [r["attempts"] for r in first] == [1, 1, 1]
    assert run(recorded, out, *args, "--retry-failed") == 3
    capsys.readouterr()
    again = [json.loads(line) for line in journal.read_text().splitlines()][3:]
    assert [r["attempts"] for r in again] == [2, 2, 2]  # tries go on: new seeds, sampling
    assert run(recorded, out, "--skills", "annotate", "--backend", "template") == 0  # replaces the failed run
    validate(out, source=recorded)


def test_label_once_then_shard_on_the_labels(recorded, template_annotated, tmp_path, capsys):
    """--skills annotate cannot be sharded; its output's skills.json can (--skills-file), and gives the
    same samples and dialogues as the labelling run."""
    labels = template_annotated / "meta" / "skills.json"
    assert run(recorded, tmp_path / "x", "--backend", "template", "--skills", "annotate", "--num-shards", "2",
               "--shard-index", "0") == 2
    assert "hub-pgen label" in capsys.readouterr().err
    assert run(recorded, tmp_path / "x", "--backend", "template", "--num-shards", "2", "--shard-index", "0") == 3
    err = capsys.readouterr().err  # auto comes to labelling, which a shard cannot do
    assert "a shard cannot label" in err and "hub-pgen label --root" in err and not (tmp_path / "x").exists()
    for i in (0, 1):
        assert run(recorded, tmp_path / f"s{i}", "--backend", "template", "--skills-file", str(labels),
                   "--num-shards", "2", "--shard-index", str(i)) == 0
    assert main(["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--root", str(recorded), "--output-dir",
                 str(tmp_path / "merged"), "-q"]) == 0
    validate(tmp_path / "merged", source=recorded)

    def dialogues(out: Path) -> dict:
        lines = (out / "meta" / "syn_annotations.jsonl").read_text().splitlines()
        return {r["sample_id"]: (r["skill_current"], r["user_prompt"]) for r in map(json.loads, lines)}

    assert dialogues(tmp_path / "merged") == dialogues(template_annotated)
    assert skills_json(tmp_path / "merged") == skills_json(template_annotated)
    assert run(recorded, tmp_path / "y", "--backend", "template", "--skills", "language", "--skills-file",
               str(labels)) == 2
    assert "--skills-file gives the skills" in capsys.readouterr().err


def test_label_killed_midway_resumes_and_a_second_label_at_once_is_refused(recorded, tmp_path):
    """hub-pgen label as a user meets it: a kill while labelling, the same command again (nothing asked
    twice, the labels of an uninterrupted run), and a second label on the same folder while one runs."""
    from hub_pgen.write.lock import RunLock

    args = ["label", "--root", str(recorded), "--backend", "template", "-q"]
    ref = tmp_path / "ref"
    assert _cli([*args, "--output-dir", str(ref)]).returncode == 0
    out = tmp_path / "labels"
    assert _cli([*args, "--output-dir", str(out)], {"HUB_PGEN_KILL_AT": "skills.journal:2"}).returncode == -9
    assert not out.exists() and (Path(f"{out}.partial") / "skills.jsonl").is_file()
    done = _cli([*args, "--output-dir", str(out)], {"HUB_PGEN_KILL_AT": "skills.asked:2"})  # episode 2 only
    assert done.returncode == 0, done.stderr
    for rel in ("meta/skills.json", "meta/hub_pgen_skills.jsonl"):
        assert (out / rel).read_bytes() == (ref / rel).read_bytes()
    again = tmp_path / "again"
    lock = RunLock(Path(f"{again}.partial"))
    lock.acquire()
    try:
        busy = _cli([*args, "--output-dir", str(again)])
    finally:
        lock.release()
    assert busy.returncode == 4 and "--wait" in busy.stderr, busy.stderr
    assert not again.exists()
