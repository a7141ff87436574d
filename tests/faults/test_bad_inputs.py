"""Issue 5, part 2: every kind of bad input gets a clear answer, one test per kind.

Each test asserts:

(a) a clear message — what is wrong and where (file, episode, skill position, input line, flag) —
    and, when the run cannot go on, a ``TIP:`` line and a specific exit code (2 arguments, 3 input
    data, 4 output location; never 70, the internal error); or, when only some samples are hurt, a
    recorded per-sample failure in ``meta/syn_annotations.jsonl`` with a useful ``error``;
(b) the source (dataset folder or JSONL file and its images) hashes the same before and after;
(c) nothing half-written is left. Which state each test expects is said in it:
    - ``NOTHING``: stopped before any output existed: neither ``OUT`` nor ``OUT.partial``;
    - ``JOURNAL``: stopped while writing: no ``OUT``, and ``OUT.partial`` holds only ``run.json``
      and the journal (no half-written staging folder), and the same command, rerun, finishes;
    - ``DONE``: the run finished (failures recorded): ``OUT`` is complete and ``OUT.partial`` gone.

The table of outcomes is docs/reliability.md.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from hub_pgen import journal_writer as journal_mod
from hub_pgen import layout
from hub_pgen import run as runner
from hub_pgen.cli import main
from hub_pgen.config import RunConfig
from hub_pgen.generate.qwen import TransformersBackend
from hub_pgen.testing.tiny_qwen import tiny_model_dir
from hub_pgen.write.validate import validate

from ..contract import tree_hashes

SKILLS = "meta/skills.json"
INFO = "meta/info.json"
TASKS = "meta/tasks.parquet"
STATS = "meta/stats.json"
VIDEO_SIDE_1 = "videos/observation.images.side/chunk-000/file-001.mp4"
DATA_1 = "data/chunk-000/file-001.parquet"  # episodes 4 and 5
EPISODES_META = "meta/episodes/chunk-000/file-000.parquet"
INTERNAL_ERROR = 70


@pytest.fixture
def src(example_root, tmp_path) -> Path:
    """A private copy of the example to damage (the shared fixture is read-only)."""
    return Path(shutil.copytree(example_root, tmp_path / "src"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"), "qwen2_vl")


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def skill(obj: dict, episode: str, i: int) -> dict:
    return obj["episodes"][episode]["skills"][i]


def truncate(path: Path, n: int) -> None:
    path.write_bytes(path.read_bytes()[:n])


def drop_column(path: Path, column: str) -> None:
    pq.write_table(pq.read_table(path).drop([column]), path)


def run_cli(src: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["--root", str(src), "--output-dir", str(out), "--backend", "template", "-q", *extra])
    return rc, capsys.readouterr().err


def partial(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def assert_fatal_message(err: str, parts: tuple[str, ...]) -> None:
    assert err.count("hub-pgen: error:") == 1, err
    assert re.search(r"^TIP: \S", err, re.M), err
    assert "Traceback" not in err and "internal error" not in err, err
    for part in parts:
        assert part in err, (part, err)


def assert_nothing(out: Path) -> None:
    """NOTHING: stopped before any output existed."""
    assert not out.exists() and not partial(out).exists()


def assert_journal_only(out: Path) -> None:
    """JOURNAL: no OUT; OUT.partial holds the run's configuration and its journal, and the pass that went
    alongside generation while generation goes on (hub_pgen.run.running_pass: its D_syn lines and, once
    saved, its state), nothing half-written."""
    assert not out.exists()
    names = {p.name for p in partial(out).iterdir()}
    assert names - {layout.PASS_NAME} == {"journal.jsonl", "run.json"}
    if layout.PASS_NAME in names:
        assert {p.name for p in (partial(out) / layout.PASS_NAME).iterdir()} <= {"state.pickle",
                                                                                 "syn_annotations.jsonl"}


def assert_done(out: Path) -> None:
    """DONE: a complete OUT, no work folder."""
    assert (out / "meta/hub_pgen.json").is_file() and not partial(out).exists()


def syn_rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "meta/syn_annotations.jsonl").read_text().splitlines()]


# --- fatal: stopped before any output exists (NOTHING) -------------------------------------------

FATAL: dict[str, tuple[Callable[[Path], object], tuple[str, ...], int, tuple[str, ...]]] = {
    # kind: (damage, extra CLI args, exit code, message parts: what and where)
    # skills.json
    "skills.json not JSON": (lambda r: (r / SKILLS).write_text("skills: yes"), (), 3,
                             (SKILLS, "not valid JSON", "line 1")),
    "skills.json truncated": (lambda r: truncate(r / SKILLS, 120), (), 3, (SKILLS, "not valid JSON", "line")),
    # (without --skills file, auto labels the skills instead: tests/test_skills_sources.py)
    "skills.json missing": (lambda r: (r / SKILLS).unlink(), ("--skills", "file"), 3,
                            (SKILLS, "--skills file: dataset", "--skills annotate")),
    "skills.json not an object": (lambda r: (r / SKILLS).write_text("[]"), (), 3, (SKILLS, "must be a JSON object")),
    "skill end <= start": (lambda r: edit_json(r / SKILLS, lambda o: skill(o, "0", 1).update(end=skill(o, "0", 1)["start"])),
                           (), 3, (SKILLS, "episode 0", "skills[1]", "not after its start")),
    "negative skill time": (lambda r: edit_json(r / SKILLS, lambda o: skill(o, "1", 0).update(start=-0.5)), (), 3,
                            (SKILLS, "episode 1", "skills[0]", "negative time")),
    "skill time not a number": (lambda r: edit_json(r / SKILLS, lambda o: skill(o, "2", 0).update(end="1.5")), (), 3,
                                (SKILLS, "episode 2", "skills[0]", "'end' must be a finite number", "'1.5'")),
    "unknown episode in skills.json": (lambda r: edit_json(r / SKILLS, lambda o: o["episodes"].update(
        {"42": {"episode_index": 42, "description": "x", "skills": [{"name": "a", "start": 0, "end": 1}]}})), (), 3,
        (SKILLS, "episode 42", "unknown episode", "0-5")),
    # info.json
    "info.json missing": (lambda r: (r / INFO).unlink(), (), 3, (INFO, "not found", "not a LeRobot dataset folder")),
    "info.json not JSON": (lambda r: (r / INFO).write_text("{"), (), 3, (INFO, "not valid JSON")),
    "another codebase_version": (lambda r: edit_json(r / INFO, lambda o: o.update(codebase_version="v2.1")), (), 3,
                                 (INFO, "v2.1", "v3.0", "convert")),
    "info.json without features": (lambda r: edit_json(r / INFO, lambda o: o.pop("features")), (), 3,
                                   (INFO, "lacks required key(s) ['features']")),
    "info.json features lack timestamp": (lambda r: edit_json(r / INFO, lambda o: o["features"].pop("timestamp")),
                                          (), 3, (INFO, "features lack ['timestamp']")),
    "a feature that is not an object": (lambda r: edit_json(r / INFO, lambda o: o["features"].update(
        {"observation.images.up": "video"})), (), 3, (INFO, "['observation.images.up']", "'dtype'")),
    "a video feature without its episodes-metadata columns": (
        lambda r: edit_json(r / INFO, lambda o: o["features"].update(
            {"observation.images.wrist": {**o["features"]["observation.images.up"]}})), (), 3,
        (EPISODES_META, "lacks column(s)", "videos/observation.images.wrist/chunk_index")),
    "data_path template escaping the folder": (lambda r: edit_json(r / INFO, lambda o: o.update(
        data_path="../escape/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet")), (), 3,
        ("../escape/chunk-000", "not a path inside the dataset folder")),
    "video_path template escaping the folder": (lambda r: edit_json(r / INFO, lambda o: o.update(
        video_path="../escape/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4")), (), 3,
        ("../escape/observation.images.up", "not a path inside the dataset folder")),
    "absolute data_path template": (lambda r: edit_json(r / INFO, lambda o: o.update(
        data_path="/tmp/hub-pgen-escape/file-{file_index:03d}.parquet")), (), 3,
        ("/tmp/hub-pgen-escape/file-000.parquet", "not a path inside the dataset folder")),
    # other metadata
    "tasks.parquet missing": (lambda r: (r / TASKS).unlink(), (), 3, (TASKS, "not found")),
    "tasks.parquet truncated": (lambda r: truncate(r / TASKS, 100), (), 3, (TASKS, "not a readable parquet")),
    "stats.json missing": (lambda r: (r / STATS).unlink(), (), 3, (STATS, "not found")),
    "stats.json not JSON": (lambda r: (r / STATS).write_text('{"action": '), (), 3, (STATS, "not valid JSON")),
    "episodes metadata missing": (lambda r: shutil.rmtree(r / "meta/episodes"), (), 3,
                                  ("meta/episodes", "no episodes metadata")),
    # data and videos
    "truncated data parquet": (lambda r: truncate(r / DATA_1, 200), (), 3,
                               (DATA_1, "episode(s) 4, 5", "not a readable data parquet")),
    "truncated data parquet of an episode not selected": (
        lambda r: truncate(r / DATA_1, 200), ("--episodes", "0"), 3,
        (DATA_1, "episode(s) 4, 5", "not a readable data parquet")),  # was exit 70 after generating, with a staging folder
    "data parquet without its timestamp column": (lambda r: drop_column(r / DATA_1, "timestamp"), (), 3,
                                                  (DATA_1, "lacks column(s) ['timestamp']")),
    "data parquet missing": (lambda r: (r / DATA_1).unlink(), (), 3, (DATA_1, "episode(s) 4, 5", "missing")),
    "missing video file": (lambda r: (r / VIDEO_SIDE_1).unlink(), (), 3, (VIDEO_SIDE_1, "episodes 4, 5", "missing")),
    # arguments that do not fit the dataset
    "camera key that does not exist": (lambda r: None, ("--image-keys", "observation.images.wrist"), 2,
                                       ("--image-keys", "observation.images.wrist", "available", "observation.images.up")),
    "episode that does not exist": (lambda r: None, ("--episodes", "0,9"), 2, ("--episodes", ": 9 not in the dataset", "0..5")),
    "bad --episodes syntax": (lambda r: None, ("--episodes", "3-1"), 2, ("--episodes", "'3-1'")),
}


@pytest.mark.parametrize("kind", FATAL)
def test_bad_input_stops_before_any_output_with_a_clear_message(kind, src, tmp_path, capsys):
    damage, extra, code, parts = FATAL[kind]
    damage(src)
    before = tree_hashes(src)
    out = tmp_path / "out"
    rc, err = run_cli(src, out, capsys, *extra)
    assert rc == code != INTERNAL_ERROR, err
    assert_fatal_message(err, parts)
    assert_nothing(out)
    assert not (tmp_path / "escape").exists() and not Path("/tmp/hub-pgen-escape").exists()
    assert tree_hashes(src) == before


def test_a_dataset_folder_that_does_not_exist(tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = run_cli(tmp_path / "nowhere", out, capsys)
    assert rc == 3
    assert_fatal_message(err, (str(tmp_path / "nowhere"), "does not exist", "--root"))
    assert_nothing(out)


def test_a_skill_past_the_episode_end_is_clipped_with_a_warning(src, tmp_path, capsys, caplog):
    """SPEC leaves it to us: the skill's frames stop at the episode's last frame, and a warning says so."""
    edit_json(src / SKILLS, lambda o: skill(o, "1", -1).update(end=30.0))
    name = json.loads((src / SKILLS).read_text())["episodes"]["1"]["skills"][-1]["name"]
    before = tree_hashes(src)
    out = tmp_path / "out"
    rc, err = run_cli(src, out, capsys)
    assert rc == 0 and "error" not in err
    assert any("episode 1" in r.message and repr(name) in r.message and "ends at 30.000 s" in r.message
               and "past its episode's end" in r.message and "clipped" in r.message for r in caplog.records)
    data = pq.read_table(out / "data/chunk-000/file-000.parquet").to_pandas()
    last = data[data.episode_index == 1].sort_values("frame_index").iloc[-1]
    tasks = pq.read_table(out / TASKS).to_pandas()
    row = tasks[tasks.task_index == last.task_index_high_level]
    assert last.task_index_high_level >= 0 and row.skill.tolist() == [name]  # the last frame keeps the skill
    validate(out, source=src)
    assert_done(out)
    assert tree_hashes(src) == before


# --- the output location -----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["/proc/hub-pgen-test/out", "/sys/hub-pgen-test-out", "chmod 0o555"])
def test_a_read_only_output_location_is_refused(where, example_root, tmp_path, capsys):
    """/proc and /sys are read-only even for root; chmod only stops a non-root user."""
    if where.startswith("chmod"):
        if os.geteuid() == 0:
            pytest.skip("root writes through chmod 0o555; the /proc and /sys cases cover read-only places")
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o555)
        where = str(parent / "out")
    before = tree_hashes(example_root)
    out = Path(where)
    rc, err = run_cli(example_root, out, capsys)
    assert rc == 4
    assert_fatal_message(err, ("cannot create", str(out.parent), "TIP: choose a writable --output-dir"))
    assert_nothing(out)
    assert tree_hashes(example_root) == before


def test_an_output_path_that_is_a_file_is_refused(example_root, tmp_path, capsys):
    f = tmp_path / "out"
    f.write_text("keep me")
    before = tree_hashes(example_root)
    rc, err = run_cli(example_root, f, capsys)
    assert rc == 4
    assert_fatal_message(err, (str(f), "exists and is not a folder", "never overwrites a file"))
    assert f.read_text() == "keep me" and not partial(f).exists()  # NOTHING (the file is untouched)
    assert tree_hashes(example_root) == before


def test_a_full_disk_while_writing_the_dataset_keeps_the_journal_and_the_rerun_finishes(src, tmp_path, capsys,
                                                                                      monkeypatch):
    real = pq.write_table
    calls = [0]

    def full(*args, **kwargs):  # the first data file is written, the second meets a full disk
        calls[0] += 1
        if calls[0] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", full)
    out = tmp_path / "out"
    before = tree_hashes(src)
    rc, err = run_cli(src, out, capsys)
    assert rc == 4
    assert_fatal_message(err, ("cannot write the new dataset", "No space left on device", "TIP: free disk space"))
    assert_journal_only(out)  # JOURNAL: the half-written staging folder is gone
    assert len((partial(out) / "journal.jsonl").read_text().splitlines()) == 25  # every generated sample survived
    monkeypatch.setattr(pq, "write_table", real)
    capsys.readouterr()
    assert main(["--root", str(src), "--output-dir", str(out), "--backend", "template", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["resumed"] == 25 and result["generated"] == 0
    validate(out, source=src)
    assert_done(out)
    assert tree_hashes(src) == before


class _FillsUp:
    """A journal file on a disk that fills up: the second append writes half its bytes, then ENOSPC."""

    def __init__(self, fh):
        self._fh, self._writes = fh, 0

    def write(self, blob: bytes) -> int:
        self._writes += 1
        if self._writes == 2:
            self._fh.write(blob[: len(blob) // 2])
            self._fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._fh.write(blob)

    def __getattr__(self, name):
        return getattr(self._fh, name)


def test_a_full_disk_while_journaling_keeps_whole_records_and_the_rerun_finishes(src, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(journal_mod, "open", lambda *a, **k: _FillsUp(open(*a, **k)), raising=False)
    out = tmp_path / "out"
    before = tree_hashes(src)
    rc, err = run_cli(src, out, capsys, "--batch-size", "4")
    assert rc == 4
    assert_fatal_message(err, ("cannot append to the journal", str(partial(out) / "journal.jsonl"),
                               "No space left on device", "TIP: free disk space"))
    assert_journal_only(out)  # JOURNAL: the first batch and half the second, ending in a torn line the rerun cuts
    text = (partial(out) / "journal.jsonl").read_text()
    whole = text.count("\n")
    assert 4 < whole < 8 and not text.endswith("\n")
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["--root", str(src), "--output-dir", str(out), "--backend", "template", "--batch-size", "4",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["resumed"] == whole and result["generated"] == 25 - whole and result["ok"] == 25
    validate(out, source=src)
    assert_done(out)
    assert tree_hashes(src) == before


# --- per-sample failures: recorded, the run goes on (DONE) ----------------------------------------


def test_a_truncated_mp4_fails_the_samples_that_need_it(src, tiny, tmp_path, capsys):
    bad = src / VIDEO_SIDE_1
    truncate(bad, 400)
    before = tree_hashes(src)
    out = tmp_path / "out"
    capsys.readouterr()
    rc = main(["--root", str(src), "--output-dir", str(out), "--model", str(tiny), "--device", "cpu",
               "--batch-size", "4", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    failed = {f["sample_id"]: f["error"] for f in result["failures"]}
    assert failed and all(sid.startswith(("ep000004", "ep000005")) for sid in failed)  # the damaged file's episodes
    assert all("frames:" in e and VIDEO_SIDE_1 in e for e in failed.values())
    assert result["ok"] == result["samples"] - len(failed) > 0
    rows = {r["sample_id"]: r for r in syn_rows(out) if r["status"] == "failed"}
    assert rows.keys() == failed.keys() and all(r["task_index_high_level"] == -1 for r in rows.values())
    assert_done(out)
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
    before = tree_hashes(example_root)
    base = TransformersBackend.load(str(tiny), device="cpu", constrained=False, max_retries=1)
    backend = TransformersBackend(base.loaded, base.options, generate_fn=_writes(base, text))
    out = tmp_path / "out"
    config = RunConfig(root=example_root, output_dir=out, model=str(tiny), constrained=False, max_retries=1,
                       episodes=(0, 1), batch_size=4)
    result = runner.run(config, backend=backend)
    assert result.state == "written" and result.ok == 0 and result.failed == result.samples > 0
    rows = syn_rows(out)
    assert all(r["status"] == "failed" and r["attempts"] == 2 and r["raw_text"] == text for r in rows)
    assert all(reason in r["error"] for r in rows), rows[0]["error"]
    assert all(r["task_index_high_level"] == -1 for r in rows)
    validate(out, source=example_root)  # a valid dataset whose frames all keep -1
    assert_done(out)
    assert tree_hashes(example_root) == before


def test_a_cuda_oom_at_batch_size_one_fails_that_sample_only(example_root, tiny, tmp_path):
    before = tree_hashes(example_root)
    base = TransformersBackend.load(str(tiny), device="cpu")
    calls = [0]

    def oom_every_third_call(**kw):
        calls[0] += 1
        if calls[0] % 3 == 0:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return base.model.generate(**kw)

    backend = TransformersBackend(base.loaded, base.options, generate_fn=oom_every_third_call)
    out = tmp_path / "out"
    result = runner.run(RunConfig(root=example_root, output_dir=out, model=str(tiny), episodes=(0,),
                                    batch_size=1), backend=backend)
    assert result.failed and result.ok and result.failed + result.ok == result.samples
    failed = [r for r in syn_rows(out) if r["status"] == "failed"]
    assert len(failed) == result.failed and all("out of memory" in r["error"] for r in failed), failed
    assert_done(out)
    assert tree_hashes(example_root) == before


def test_jsonl_with_bad_lines_records_each_and_keeps_the_good_ones(tmp_path, capsys):
    good = {"episode_id": "e0", "t": 0, "images": [], "skill_current": "pick up the cup", "skill_history": [],
            "task_description": "tidy the table"}
    lines = [json.dumps(good),
             "{not json",                                                # line 2: not JSON
             json.dumps({**good, "episode_id": "e2", "skill_current": ""}),  # line 3: empty skill
             json.dumps({"episode_id": "e3"}),                           # line 4: missing fields
             json.dumps([1, 2]),                                         # line 5: not an object
             json.dumps({**good, "episode_id": "e6", "t": "soon"}),      # line 6: wrong type
             json.dumps({**good, "episode_id": "e7", "t": 4})]
    src = tmp_path / "labeled.jsonl"
    src.write_text("\n".join(lines) + "\n")
    before = src.read_bytes()
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["--input-jsonl", str(src), "--output-dir", str(out), "--backend", "template", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] == 2 and result["failed"] == 5
    errors = dict(sorted((f["error"].split(":")[0], f["error"]) for f in result["failures"]))
    assert list(errors) == [f"input line {n}" for n in range(2, 7)]
    assert "not JSON" in errors["input line 2"] and "skill_current" in errors["input line 3"]
    assert "missing key(s)" in errors["input line 4"] and "expected a JSON object" in errors["input line 5"]
    assert "'t' must be an integer" in errors["input line 6"]
    rows = [json.loads(x) for x in (out / "syn_annotations.jsonl").read_text().splitlines()]
    assert sum(r["status"] == "failed" for r in rows) == 5
    assert_done(out)
    assert src.read_bytes() == before


def test_jsonl_with_a_missing_image_file_fails_that_sample_only(tiny, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(images / "a.png")
    lines = [{"episode_id": "e0", "t": 0, "images": ["images/a.png"], "skill_current": "pick up the cup",
              "skill_history": [], "task_description": "tidy the table"},
             {"episode_id": "e1", "t": 3, "images": ["images/gone.png"], "skill_current": "open the drawer",
              "skill_history": ["pick up the cup"], "task_description": "tidy the table"}]
    src = tmp_path / "labeled.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    before = {**tree_hashes(images), "labeled.jsonl": src.read_bytes()}
    out = tmp_path / "out"
    capsys.readouterr()
    rc = main(["--input-jsonl", str(src), "--output-dir", str(out), "--model", str(tiny), "--device", "cpu",
               "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] == 1 and result["failed"] == 1
    rows = {r["episode_id"]: r for r in map(json.loads, (out / "syn_annotations.jsonl").read_text().splitlines())}
    assert rows["e0"]["status"] == "ok"
    assert rows["e1"]["status"] == "failed" and "frames:" in rows["e1"]["error"] and "gone.png" in rows["e1"]["error"]
    assert "does not exist" in rows["e1"]["error"]
    assert_done(out)
    assert {**tree_hashes(images), "labeled.jsonl": src.read_bytes()} == before


JSONL_FATAL = {
    # kind: (file content, or None for no file; message parts)
    "JSONL missing": (None, ("file not found", "--input-jsonl")),
    "JSONL empty": (b"", ("holds no samples",)),
    "JSONL not UTF-8": (b'{"episode_id": "\xff"}\n', ("not UTF-8",)),
}


@pytest.mark.parametrize("kind", JSONL_FATAL)
def test_a_jsonl_that_cannot_be_read_at_all_is_refused(kind, tmp_path, capsys):
    content, parts = JSONL_FATAL[kind]
    path = tmp_path / "labeled.jsonl"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    capsys.readouterr()
    rc = main(["--input-jsonl", str(path), "--output-dir", str(out), "--backend", "template", "-q"])
    err = capsys.readouterr().err
    assert rc == 3
    assert_fatal_message(err, (str(path), *parts))
    assert_nothing(out)
    assert (path.read_bytes() if content is not None else not path.exists()) == (content if content is not None else True)
