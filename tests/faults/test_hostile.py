"""Issue 9: hostile input. Never copy what lies outside the dataset, never write the source, never say
"written" for a broken result, no internal errors, no hangs, messages that name the real cause.

Each refused kind asserts (a) the exit code and the message's subject, with a TIP; (b) the source
tree hashes the same before and after; (c) what is left behind (nothing, for everything refused at
load). The table of outcomes is docs/reliability.md ("Hostile input").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hub_pgen.cli import main
from hub_pgen.write.validate import problems

from ..contract import tree_hashes

SKILLS = "meta/skills.json"
INFO = "meta/info.json"
TASKS = "meta/tasks.parquet"
STATS = "meta/stats.json"
EPISODES_META = "meta/episodes/chunk-000/file-000.parquet"
DATA_0 = "data/chunk-000/file-000.parquet"  # episodes 0-3
DATA_1 = "data/chunk-000/file-001.parquet"  # episodes 4 and 5
VIDEO_UP_0 = "videos/observation.images.up/chunk-000/file-000.mp4"
INTERNAL_ERROR = 70


@pytest.fixture
def src(example_root, tmp_path) -> Path:
    return Path(shutil.copytree(example_root, tmp_path / "src"))


def partial(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def template(src: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    rc, _, err = run(capsys, "--root", str(src), "--output-dir", str(out), "--backend", "template", "-q", *extra)
    return rc, err


def assert_refused(rc: int, err: str, code: int, parts: tuple[str, ...]) -> None:
    assert rc == code != INTERNAL_ERROR, err
    assert err.count("hub-pgen: error:") == 1 and re.search(r"^TIP: \S", err, re.M), err
    assert "Traceback" not in err and "internal error" not in err, err
    for part in parts:
        assert part in err, (part, err)


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def edit_parquet(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    table = pq.read_table(path)
    pq.write_table(change(table), path)


def set_column(table: pa.Table, name: str, values: list) -> pa.Table:
    i = table.column_names.index(name)
    return table.set_column(i, table.schema.field(i), pa.array(values, type=table.schema.field(i).type))


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def replace_text(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# --- refused at load, before any output exists -----------------------------------------------------

OUTSIDE = Path("/tmp/hub-pgen-hostile-secret.txt")


def _link_outside(r: Path) -> None:
    OUTSIDE.write_text("secret\n")
    (r / "meta/passwd.json").symlink_to(OUTSIDE)


def _video_link_outside(r: Path) -> None:
    copy = r.parent / "elsewhere.mp4"
    shutil.copy(r / VIDEO_UP_0, copy)
    (r / VIDEO_UP_0).unlink()
    (r / VIDEO_UP_0).symlink_to(copy)


def _without_task_row(r: Path) -> None:
    edit_parquet(r / TASKS, lambda t: t.slice(0, 1))  # row of task_index 1 gone; episodes use it


def _frame_gap(r: Path) -> None:
    # episode 5 (not selected below) loses frame 3: its rows go 0,1,2,4,...
    def change(t: pa.Table) -> pa.Table:
        eps = t.column("episode_index").to_pylist()
        frames = t.column("frame_index").to_pylist()
        frames = [f + 1 if e == 5 and f >= 3 else f for e, f in zip(eps, frames)]
        return set_column(t, "frame_index", frames)

    edit_parquet(r / DATA_1, change)


def _duplicate_frame(r: Path) -> None:
    def change(t: pa.Table) -> pa.Table:
        eps = t.column("episode_index").to_pylist()
        frames = t.column("frame_index").to_pylist()
        first = eps.index(4)
        frames[first + 7] = 6  # episode 4: frame_index 6 twice, 7 missing
        return set_column(t, "frame_index", frames)

    edit_parquet(r / DATA_1, change)


def _timestamps(r: Path, bad: Callable[[float], float]) -> None:
    def change(t: pa.Table) -> pa.Table:
        eps = t.column("episode_index").to_pylist()
        ts = t.column("timestamp").to_pylist()
        i = eps.index(4) + 5
        ts[i] = bad(ts[i - 1])
        return set_column(t, "timestamp", ts)

    edit_parquet(r / DATA_1, change)


def _episode_not_in_meta(r: Path) -> None:
    import pyarrow.compute as pc

    meta = pq.read_table(r / EPISODES_META)
    length5 = meta.filter(pc.equal(meta.column("episode_index"), 5)).column("length")[0].as_py()
    edit_parquet(r / EPISODES_META, lambda t: t.filter(pc.not_equal(t.column("episode_index"), 5)))
    # info.json's totals kept in step, so only the stray data rows are wrong
    edit_json(r / INFO, lambda o: o.update(total_episodes=5, total_frames=o["total_frames"] - length5))


FATAL: dict[str, tuple[Callable[[Path], object], tuple[str, ...], int, tuple[str, ...]]] = {
    # kind: (damage, extra CLI args, exit code, message parts)
    # links and special files
    "a link to a file outside the dataset": (_link_outside, (), 3, ("meta/passwd.json", "outside the dataset")),
    "a video that links outside the dataset": (_video_link_outside, (), 3, (VIDEO_UP_0, "outside the dataset")),
    "a link to /dev/zero": (lambda r: (r / "meta/zero.bin").symlink_to("/dev/zero"), (), 3,
                            ("meta/zero.bin", "outside the dataset")),
    "a FIFO in the source": (lambda r: os.mkfifo(r / "meta/pipe"), (), 3, ("meta/pipe", "a FIFO")),
    "a dangling link": (lambda r: (r / "meta/gone.json").symlink_to(r / "meta/nothing-here.json"), (), 3,
                        ("meta/gone.json", "does not exist")),
    # metadata that silently corrupts
    "tasks.parquet without a row the frames use": (_without_task_row, (), 3, (TASKS, "task_index [1]")),
    "tasks.parquet empty": (lambda r: edit_parquet(r / TASKS, lambda t: t.slice(0, 0)), (), 3,
                            (TASKS, "task_index [0, 1]")),
    "total_episodes disagrees": (lambda r: edit_json(r / INFO, lambda o: o.update(total_episodes=7)), (), 3,
                                 (INFO, "total_episodes is 7", "has 6")),
    "total_frames disagrees": (lambda r: edit_json(r / INFO, lambda o: o.update(total_frames=1)), (), 3,
                               (INFO, "total_frames is 1")),
    "video features without video_path": (lambda r: edit_json(r / INFO, lambda o: o.pop("video_path")), (), 3,
                                          (INFO, "no 'video_path'")),
    "duplicate task strings": (lambda r: edit_parquet(r / TASKS, lambda t: set_column(
        t, "task", [t.column("task")[0].as_py()] * 2)), (), 3, (TASKS, "more than once")),
    "fps NaN": (lambda r: replace_text(r / INFO, '"fps": 30', '"fps": NaN'), (), 3, (INFO, "NaN is not a number")),
    "fps Infinity": (lambda r: replace_text(r / INFO, '"fps": 30', '"fps": Infinity'), (), 3,
                     (INFO, "Infinity is not a number")),
    "fps true": (lambda r: edit_json(r / INFO, lambda o: o.update(fps=True)), (), 3, (INFO, "fps must be a positive")),
    "a NaN timestamp": (lambda r: _timestamps(r, lambda prev: float("nan")), (), 3,
                        (DATA_1, "episode 4", "timestamp is not a number", "frame_index [5]")),
    "timestamps that go back": (lambda r: _timestamps(r, lambda prev: prev - 0.5), (), 3,
                                (DATA_1, "episode 4", "do not increase", "frame_index [5]")),
    "an episode listed twice in skills.json": (
        lambda r: replace_text(r / SKILLS, '"episodes": {', '"episodes": {"1": {"episode_index": 1, "skills": []}, '),
        (), 3, (SKILLS, "key '1' appears twice")),
    # late, after generation, before: now at load
    "data rows of an episode missing from meta/episodes": (_episode_not_in_meta, (), 3,
                                                           (DATA_1, "episode(s) [5]", "does not list them")),
    "a frame_index gap in an episode not selected": (_frame_gap, ("--episodes", "0"), 3,
                                                     (DATA_1, "episode 5", "frame_index [3] missing")),
    "a duplicated frame_index": (_duplicate_frame, (), 3,
                                 (DATA_1, "episode 4", "frame_index [6] appear(s) more than once",
                                  "frame_index [7] missing")),
    "stats without count": (lambda r: edit_json(r / STATS, lambda o: [v.pop("count", None) for v in o.values()]),
                            (), 3, (STATS, "lack 'count'")),
    # early: nulls, absurd numbers and nesting
    "a null task_index in tasks.parquet": (lambda r: edit_parquet(r / TASKS, lambda t: set_column(
        t, "task_index", [0, None])), (), 3, (TASKS, "'task_index'", "null")),
    "a null data/chunk_index in meta/episodes": (lambda r: edit_parquet(r / EPISODES_META, lambda t: set_column(
        t, "data/chunk_index", [0, 0, None, 0, 0, 0])), (), 3, (EPISODES_META, "episode 2", "data/chunk_index")),
    "a 400-digit integer in skills.json": (lambda r: replace_text(r / SKILLS, '"start": 0.0', '"start": ' + "9" * 400),
                                           (), 3, (SKILLS, "400 digits")),
    "a 400-digit integer in info.json": (lambda r: replace_text(r / INFO, '"fps": 30', '"fps": ' + "9" * 400), (), 3,
                                         (INFO, "400 digits")),
    "skills.json nested 100,000 deep": (lambda r: (r / SKILLS).write_text(nested(100_000)), (), 3,
                                        (SKILLS, "nested too deeply")),
    "info.json nested 100,000 deep": (lambda r: (r / INFO).write_text(nested(100_000)), (), 3,
                                      (INFO, "nested too deeply")),
    "codebase_version v3.1": (lambda r: edit_json(r / INFO, lambda o: o.update(codebase_version="v3.1")), (), 3,
                              (INFO, "v3.1", "newer than this hub-pgen")),
    # arguments
    "--episodes 0-999999999": (lambda r: None, ("--episodes", "0-999999999"), 2, ("--episodes", "1,000,000,000")),
    "--scenario-mix x=nan": (lambda r: None, ("--scenario-mix", "negative_task=nan"), 2, ("--scenario-mix", "finite")),
    "--scenario-mix a=inf": (lambda r: None, ("--scenario-mix", "negative_task=inf,direct_request=1"), 2,
                             ("--scenario-mix", "finite")),
    "--sample-interval 1e-300 (dry run too)": (lambda r: None, ("--sampling", "interval", "--sample-interval",
                                                                "1e-300", "--dry-run"), 2, ("--sample-interval",)),
}


@pytest.mark.parametrize("kind", FATAL)
def test_hostile_input_is_refused_at_load(kind, src, tmp_path, capsys):
    damage, extra, code, parts = FATAL[kind]
    damage(src)
    before = tree_hashes(src)
    out = tmp_path / "out"
    rc, err = template(src, out, capsys, *extra)
    assert_refused(rc, err, code, parts)
    assert not out.exists() and not partial(out).exists()
    assert tree_hashes(src) == before
    if "--episodes" in extra and "0-999999999" in extra:
        assert len(err) < 2000  # no 9-million-element list in the message


def test_a_link_inside_the_dataset_is_fine_and_becomes_a_regular_file(src, tmp_path, capsys):
    (src / "meta/notes.txt").write_text("calibration notes\n")
    (src / "meta/notes-link.txt").symlink_to("notes.txt")
    out = tmp_path / "out"
    rc, err = template(src, out, capsys)
    assert rc == 0, err
    copied = out / "meta/notes-link.txt"
    assert not copied.is_symlink() and copied.read_text() == "calibration notes\n"


# --- the output never overlaps the source, even through links ---------------------------------------


def test_a_root_that_links_to_the_source_with_the_output_inside_it(src, tmp_path, capsys):
    link = tmp_path / "srclink"
    link.symlink_to(src)
    before = tree_hashes(src)
    rc, err = template(link, src / "out", capsys)
    assert_refused(rc, err, 4, ("overlaps the source",))
    assert tree_hashes(src) == before and not (src / "out").exists() and not (src / "out.partial").exists()


def test_an_output_parent_that_links_into_the_source(src, tmp_path, capsys):
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "into-src").symlink_to(src / "meta")
    before = tree_hashes(src)
    rc, err = template(src, tmp_path / "outputs" / "into-src" / "out", capsys)
    assert_refused(rc, err, 4, ("overlaps the source", "through links"))
    assert tree_hashes(src) == before and not (src / "meta" / "out.partial").exists()


def test_an_output_dir_that_is_a_symlink(example_root, tmp_path, capsys):
    (tmp_path / "real").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "real")
    rc, err = template(example_root, tmp_path / "out", capsys)
    assert_refused(rc, err, 4, ("is a symbolic link", str(tmp_path / "real")))
    assert list((tmp_path / "real").iterdir()) == [] and not (tmp_path / "out.partial").exists()


def test_a_partial_folder_that_is_a_file(example_root, tmp_path, capsys):
    (tmp_path / "out.partial").write_text("not a folder")
    rc, err = template(example_root, tmp_path / "out", capsys)
    assert_refused(rc, err, 4, ("out.partial is a file",))


@pytest.mark.parametrize("too_long", ["name", "path"])
def test_an_output_path_too_long_is_refused_before_generation(example_root, tmp_path, capsys, too_long):
    out = tmp_path / ("o" * 250) if too_long == "name" else tmp_path.joinpath(*(["d" * 200] * 21), "out")
    rc, err = template(example_root, out, capsys)
    assert_refused(rc, err, 4, ("too long", "shorter --output-dir"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing made, not even a parent folder


# --- credentials in HF_ENDPOINT ----------------------------------------------------------------------


def test_credentials_in_hf_endpoint_are_never_printed(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://hubuser:s3cretpass@127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"),
           "HUB_PGEN_RETRY_SCALE": "0.01"}
    env.pop("HF_HUB_OFFLINE", None)
    p = subprocess.run([sys.executable, "-m", "hub_pgen", "--repo-id", "me/data", "--backend", "template",
                        "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 6, p.stderr
    assert "s3cretpass" not in p.stderr + p.stdout and "hubuser" not in p.stderr + p.stdout
    assert "***@127.0.0.1:9" in p.stderr


def test_hf_home_under_a_regular_file_is_a_hub_error(tmp_path):
    (tmp_path / "file").write_text("x")
    env = {**os.environ, "HF_HOME": str(tmp_path / "file" / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_OFFLINE", None)
    p = subprocess.run([sys.executable, "-m", "hub_pgen", "--repo-id", "me/data", "--backend", "template",
                        "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode in (6,), p.stderr
    assert "internal error" not in p.stderr and "TIP:" in p.stderr


# --- the push sends only the folder's own files -----------------------------------------------------


def test_the_push_list_refuses_links_out_of_the_folder(example_root, tmp_path, capsys):
    from hub_pgen.errors import OutputError
    from hub_pgen.push.hub import local_files

    out = tmp_path / "out"
    assert template(example_root, out, capsys)[0] == 0
    assert all(not p.is_symlink() for p in local_files(out).values())
    OUTSIDE.write_text("secret\n")
    (out / "meta" / "extra.json").symlink_to(OUTSIDE)
    with pytest.raises(OutputError, match="meta/extra.json"):
        local_files(out)


# --- never "written" for a broken result -------------------------------------------------------------


def test_validate_source_sees_original_labels_turned_into_dialogues(example_root, tmp_path, capsys):
    """What a source without the tasks row its frames use would have produced: validate --source says so."""
    out = tmp_path / "out"
    assert template(example_root, out, capsys)[0] == 0
    damaged = Path(shutil.copytree(example_root, tmp_path / "damaged"))
    _without_task_row(damaged)
    found = problems(out, source=damaged)
    assert any("task_index [1]" in p and "no longer names" in p for p in found), found
    assert problems(out, source=example_root) == []


@pytest.mark.parametrize("info", ["[]", '{"features": []}'])
def test_validate_of_an_info_json_that_is_not_an_object(example_root, tmp_path, capsys, info):
    out = tmp_path / "out"
    assert template(example_root, out, capsys)[0] == 0
    (out / INFO).write_text(info)
    rc, _, err = run(capsys, "validate", str(out))
    assert rc == 7 and "must hold a JSON object" in err and "internal error" not in err


def test_validate_with_a_source_that_does_not_exist(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert template(example_root, out, capsys)[0] == 0
    rc, _, err = run(capsys, "validate", str(out), "--source", str(tmp_path / "nope"))
    assert rc == 2 and "--source" in err


@pytest.mark.slow
def test_racing_runs_never_end_written_with_an_invalid_output(example_root, tmp_path):
    """Pairs of identical runs started together: each exits 0 (written / already complete) or 4 (in
    use), at least one writes, and the folder always validates."""
    for trial in range(6):
        out = tmp_path / f"out{trial}"
        args = [sys.executable, "-m", "hub_pgen", "--root", str(example_root), "--output-dir", str(out),
                "--backend", "template", "--json", "--batch-size", "5"]
        procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        codes = sorted(rc for rc, _, _ in results)
        assert codes in ([0, 0], [0, 4]), results
        states = [json.loads(o)["state"] for rc, o, _ in results if rc == 0]
        assert "written" in states, results
        assert problems(out, source=example_root) == [] and not partial(out).exists()


# --- JSONL input: one hostile line fails only itself -------------------------------------------------


@pytest.mark.slow
def test_jsonl_bomb_image_and_deep_line_fail_only_their_samples(tmp_path, capsys):
    from PIL import Image

    from hub_pgen.testing.tiny_qwen import tiny_model_dir

    tiny = tiny_model_dir(tmp_path / "models", "qwen2_vl")
    Image.new("RGB", (32, 24), (200, 10, 10)).save(tmp_path / "ok.png")
    bomb = Image.new("1", (20000, 10000))  # 200 MP, a few KB as a 1-bit PNG
    bomb.save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    lines = [
        {"episode_id": "0", "t": 0, "images": ["ok.png"], "skill_current": "pick up the cup"},
        {"episode_id": "0", "t": 5, "images": ["bomb.png"], "skill_current": "place the cup"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n"
    (tmp_path / "in.jsonl").write_text(text)
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "--input-jsonl", str(tmp_path / "in.jsonl"), "--output-dir", str(out), "--model",
                          str(tiny), "--device", "cpu", "--json")
    assert rc == 0, err
    result = json.loads(stdout)
    assert result["ok"] == 1 and result["failed"] == 2
    reasons = {f["sample_id"]: f["error"] for f in result["failures"]}
    assert "decompression bomb" in reasons["L000002"] or "more than any camera makes" in reasons["L000002"]
    assert "nested too deeply" in reasons["L000003"]


# --- messages that mislead ---------------------------------------------------------------------------


def test_a_skills_json_with_a_byte_order_mark_is_read(src, tmp_path, capsys):
    (src / SKILLS).write_bytes(b"\xef\xbb\xbf" + (src / SKILLS).read_bytes())
    rc, err = template(src, tmp_path / "out", capsys)
    assert rc == 0, err
