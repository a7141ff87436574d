"""Issue 5.2/5.3: every kind of bad input gets a clear answer — a message saying what is wrong and
where, a ``TIP:`` and a specific exit code, or a recorded per-sample failure — nothing half-written
is left behind, and the source tree is byte-identical afterwards. One test per kind; the table of
outcomes is docs/reliability.md.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from hub_pgen import pipeline
from hub_pgen.cli import main
from hub_pgen.config import RunConfig
from hub_pgen.generate.qwen import TransformersBackend
from hub_pgen.testing.tiny_qwen import tiny_model_dir
from hub_pgen.validate import validate

from ..contract import tree_hashes

SKILLS = "meta/skills.json"
INFO = "meta/info.json"
VIDEO_SIDE_1 = "videos/observation.images.side/chunk-000/file-001.mp4"
DATA_1 = "data/chunk-000/file-001.parquet"


@pytest.fixture
def src(example_root, tmp_path) -> Path:
    """A private copy of the example to damage."""
    return Path(shutil.copytree(example_root, tmp_path / "src"))


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def skill(obj: dict, episode: str, i: int) -> dict:
    return obj["episodes"][episode]["skills"][i]


def run_cli(src: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["--root", str(src), "--output-dir", str(out), "--backend", "template", "-q", *extra])
    return rc, capsys.readouterr().err


# --- fatal: stopped before any output exists -----------------------------------------------------

FATAL: dict[str, tuple[Callable[[Path], object], tuple[str, ...], int, tuple[str, ...]]] = {
    # kind: (damage, extra CLI args, exit code, message parts)
    "skills.json not JSON": (lambda r: (r / SKILLS).write_text("skills: yes"), (), 3,
                             (SKILLS, "not valid JSON", "line 1")),
    "skills.json truncated": (lambda r: (r / SKILLS).write_text((r / SKILLS).read_text()[:120]), (), 3,
                              (SKILLS, "not valid JSON")),
    "skills.json missing": (lambda r: (r / SKILLS).unlink(), (), 3, (SKILLS, "not found")),
    "skill end <= start": (lambda r: edit_json(r / SKILLS, lambda o: skill(o, "0", 1).update(end=skill(o, "0", 1)["start"])),
                           (), 3, ("episode 0", "skills[1]", "not after its start")),
    "negative skill time": (lambda r: edit_json(r / SKILLS, lambda o: skill(o, "1", 0).update(start=-0.5)), (), 3,
                            ("episode 1", "skills[0]", "negative time")),
    "unknown episode in skills.json": (lambda r: edit_json(r / SKILLS, lambda o: o["episodes"].update(
        {"42": {"episode_index": 42, "description": "x", "skills": [{"name": "a", "start": 0, "end": 1}]}})), (), 3,
        ("episode 42", "unknown episode", "0-5")),
    "missing video file": (lambda r: (r / VIDEO_SIDE_1).unlink(), (), 3, (VIDEO_SIDE_1, "episodes 4, 5", "missing")),
    "truncated data parquet": (lambda r: (r / DATA_1).write_bytes((r / DATA_1).read_bytes()[:200]), (), 3,
                               (DATA_1, "not a readable")),
    "another codebase_version": (lambda r: edit_json(r / INFO, lambda o: o.update(codebase_version="v2.1")), (), 3,
                                 ("v2.1", "v3.0", "convert")),
    "info.json without features": (lambda r: edit_json(r / INFO, lambda o: o.pop("features")), (), 3,
                                   (INFO, "features")),
    "info.json not JSON": (lambda r: (r / INFO).write_text("{"), (), 3, (INFO, "not valid JSON")),
    "episodes metadata lacks a camera's columns": (
        lambda r: edit_json(r / INFO, lambda o: o["features"].update(
            {"observation.images.wrist": {**o["features"]["observation.images.up"]}})), (), 3,
        ("videos/observation.images.wrist",)),
    "tasks.parquet missing": (lambda r: (r / "meta/tasks.parquet").unlink(), (), 3, ("meta/tasks.parquet", "not found")),
    "path template escaping the folder": (lambda r: edit_json(r / INFO, lambda o: o.update(
        data_path="../escape/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet")), (), 3,
        ("../escape", "not a path inside the dataset folder")),
    "camera key that does not exist": (lambda r: None, ("--image-keys", "observation.images.wrist"), 2,
                                       ("--image-keys", "observation.images.wrist", "available")),
    "episode that does not exist": (lambda r: None, ("--episodes", "0,9"), 2, ("--episodes", "[9]", "0..5")),
    "bad --episodes syntax": (lambda r: None, ("--episodes", "3-1"), 2, ("--episodes",)),
}


@pytest.mark.parametrize("kind", FATAL)
def test_bad_input_stops_before_any_output_with_a_clear_message(kind, src, tmp_path, capsys):
    damage, extra, code, parts = FATAL[kind]
    damage(src)
    before = tree_hashes(src)
    out = tmp_path / "out"
    rc, err = run_cli(src, out, capsys, *extra)
    assert rc == code, err
    assert "hub-pgen: error:" in err and "TIP:" in err and "Traceback" not in err and "internal error" not in err
    for part in parts:
        assert part in err, (part, err)
    assert not out.exists() and not out.with_name("out.partial").exists()  # nothing half-written
    assert tree_hashes(src) == before


def test_a_skill_past_the_episode_end_is_clipped_with_a_warning(src, tmp_path, capsys, caplog):
    edit_json(src / SKILLS, lambda o: skill(o, "1", -1).update(end=30.0))
    before = tree_hashes(src)
    rc, _ = run_cli(src, tmp_path / "out", capsys)
    assert rc == 0
    assert any("episode 1" in r.message and "past the episode's end" in r.message and "clipped" in r.message
               for r in caplog.records)
    validate(tmp_path / "out", source=src)
    assert tree_hashes(src) == before


# --- the output location -----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["/proc/hub-pgen-test/out", "/sys/hub-pgen-test-out", "chmod"])
def test_a_read_only_output_location_is_refused(where, example_root, tmp_path, capsys):
    if where == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root writes through chmod 0o555; the /proc and /sys cases cover read-only places")
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o555)
        where = str(parent / "out")
    rc, err = run_cli(example_root, Path(where), capsys)
    assert rc == 4 and "cannot create" in err and "TIP: choose a writable --output-dir" in err
    assert not Path(where).exists()


def test_an_output_path_that_is_a_file_is_refused(example_root, tmp_path, capsys):
    f = tmp_path / "out"
    f.write_text("keep me")
    rc, err = run_cli(example_root, f, capsys)
    assert rc == 4 and "exists and is not a folder" in err and "TIP:" in err
    assert f.read_text() == "keep me"


def test_a_full_disk_while_writing_keeps_the_journal_and_the_rerun_finishes(src, tmp_path, capsys, monkeypatch):
    import pyarrow.parquet as pq

    real = pq.write_table

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    out = tmp_path / "out"
    before = tree_hashes(src)
    rc, err = run_cli(src, out, capsys)
    assert rc == 4 and "No space left on device" in err and "TIP: free disk space" in err
    assert not out.exists()
    journal = out.with_name("out.partial") / "journal.jsonl"
    kept = journal.read_text().splitlines()
    assert len(kept) == 25  # every generated sample survived
    monkeypatch.setattr(pq, "write_table", real)
    capsys.readouterr()
    assert main(["--root", str(src), "--output-dir", str(out), "--backend", "template", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["resumed"] == 25 and result["generated"] == 0
    validate(out, source=src)
    assert tree_hashes(src) == before


# --- per-sample failures: recorded, the run goes on ----------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"), "qwen2_vl")


def test_a_truncated_mp4_fails_the_samples_that_need_it(src, tiny, tmp_path, capsys):
    bad = src / VIDEO_SIDE_1
    bad.write_bytes(bad.read_bytes()[:400])
    before = tree_hashes(src)
    out = tmp_path / "out"
    capsys.readouterr()
    rc = main(["--root", str(src), "--output-dir", str(out), "--model", str(tiny), "--device", "cpu",
               "--batch-size", "4", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    failed = {f["sample_id"]: f["error"] for f in result["failures"]}
    assert failed and all(sid.startswith("ep000004") for sid in failed)  # episode 4: the damaged file
    assert all("frames:" in e and VIDEO_SIDE_1 in e for e in failed.values())
    assert result["ok"] == result["samples"] - len(failed) > 0
    assert tree_hashes(src) == before


def _writes(base: TransformersBackend, text: str):
    """A generate function whose every row 'writes' ``text`` (then EOS), as token ids after the prompt."""
    tok = base.tokenizer

    def generate(**kwargs):
        ids = kwargs["input_ids"]
        row = [*tok.encode(text, add_special_tokens=False), base._stop_ids()[0]]
        new = torch.tensor([row] * ids.shape[0], dtype=ids.dtype)
        return torch.cat([ids, new], dim=1)

    return generate


MODEL_OUTPUT = {
    "never JSON": ("Sure! I would ask the robot to pick up the brick.", "no JSON object"),
    "truncated JSON": ('{"scenario_type": "direct_request", "response_type": "confirm', "cut off"),
    "JSON with wrong types": ('{"scenario_type": 3, "response_type": ["x"], "user_prompt": 1, "robot_utterance": null}',
                              "must be a string, got int"),
    "JSON with an unknown scenario type": ('{"scenario_type": "small_talk", "response_type": "confirmation", '
                                           '"user_prompt": "hi", "robot_utterance": "hello"}', "is not a known type"),
}


@pytest.mark.parametrize("kind", MODEL_OUTPUT)
def test_bad_model_output_is_retried_then_recorded_with_the_raw_text(kind, example_root, tiny, tmp_path):
    text, reason = MODEL_OUTPUT[kind]
    base = TransformersBackend.load(str(tiny), device="cpu", constrained=False, max_retries=1)
    backend = TransformersBackend(base.loaded, base.options, generate_fn=_writes(base, text))
    out = tmp_path / "out"
    config = RunConfig(root=example_root, output_dir=out, model=str(tiny), constrained=False, max_retries=1,
                       episodes=(0, 1), batch_size=4)
    result = pipeline.run(config, backend=backend)
    assert result.state == "written" and result.ok == 0 and result.failed == result.samples > 0
    rows = [json.loads(x) for x in (out / "meta/syn_annotations.jsonl").read_text().splitlines()]
    assert all(r["status"] == "failed" and r["attempts"] == 2 and r["raw_text"] == text for r in rows)
    assert all(reason in r["error"] for r in rows), rows[0]["error"]
    validate(out, source=example_root)  # a valid dataset whose frames all keep -1


def test_a_cuda_oom_at_batch_size_one_fails_that_sample_only(example_root, tiny, tmp_path):
    base = TransformersBackend.load(str(tiny), device="cpu")
    calls = [0]

    def oom_every_third_row(**kw):
        calls[0] += 1
        if calls[0] % 3 == 0:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return base.model.generate(**kw)

    backend = TransformersBackend(base.loaded, base.options, generate_fn=oom_every_third_row)
    result = pipeline.run(RunConfig(root=example_root, output_dir=tmp_path / "out", model=str(tiny),
                                    episodes=(0,), batch_size=1), backend=backend)
    assert result.failed and result.ok and result.failed + result.ok == result.samples
    assert all("out of memory" in f.error for f in result.failures)


def test_jsonl_with_bad_lines_records_each_and_keeps_the_good_ones(tmp_path, capsys):
    good = {"episode_id": "e0", "t": 0, "images": [], "skill_current": "pick up the cup", "skill_history": [],
            "task_description": "tidy the table"}
    lines = [json.dumps(good), "{not json", json.dumps({**good, "episode_id": "e2", "skill_current": ""}),
             json.dumps({"episode_id": "e3"}), json.dumps([1, 2]), json.dumps({**good, "episode_id": "e5", "t": 4})]
    src = tmp_path / "labeled.jsonl"
    src.write_text("\n".join(lines) + "\n")
    before = src.read_bytes()
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["--input-jsonl", str(src), "--output-dir", str(out), "--backend", "template", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] == 2 and result["failed"] == 4
    errors = sorted(f["error"] for f in result["failures"])
    assert [e.split(":")[0] for e in errors] == ["input line 2", "input line 3", "input line 4", "input line 5"]
    assert src.read_bytes() == before


def test_a_jsonl_that_is_not_there_or_empty_is_refused(tmp_path, capsys):
    for path, text in ((tmp_path / "absent.jsonl", None), (tmp_path / "empty.jsonl", "")):
        if text is not None:
            path.write_text(text)
        capsys.readouterr()
        rc = main(["--input-jsonl", str(path), "--output-dir", str(tmp_path / "out"), "--backend", "template", "-q"])
        err = capsys.readouterr().err
        assert rc == 3 and str(path) in err and "TIP:" in err, err
        assert not (tmp_path / "out").exists()
