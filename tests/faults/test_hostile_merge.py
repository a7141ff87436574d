"""Issue 20: a shard's folder is input. ``hub-pgen merge`` bounds every number it reads from one, takes
from a shard's records only what the model wrote (checked as a run checks an answer), rebuilds the
rest from its own plan, and refuses a local source whose data or video files changed after the
shards ran. Every refusal is exit 3 (or 2 for the folders given), at once, with nothing left behind.
Table: docs/reliability.md ("Hostile input, round 3: shards and merge")."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hub_pgen.cli import main
from hub_pgen.run.shard_sources import VIDEO_BLOCK_BYTES, VIDEO_BLOCKS, _digest
from hub_pgen.write.validate import validate

from ..contract import tree_hashes

PROV = "meta/hub_pgen.json"
RECORDS = "syn_annotations.jsonl"


def run(src: Path, out: Path, *extra: str) -> int:
    return main(["--root", str(src), "--output-dir", str(out), "-q", "--backend", "template", *extra])


def merge(src: Path, out: Path, *shards: Path) -> int:
    return main(["merge", *map(str, shards), "--root", str(src), "--output-dir", str(out), "-q"])


@pytest.fixture(scope="module")
def job(example_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile-merge")
    for i in (0, 1):
        assert run(example_root, base / f"shard{i}", "--num-shards", "2", "--shard-index", str(i)) == 0
    assert run(example_root, base / "one") == 0
    return base


def tampered(job: Path, tmp_path: Path, change: Callable[[Path], None], index: int = 1) -> Path:
    shard = Path(shutil.copytree(job / f"shard{index}", tmp_path / f"tampered{index}"))
    change(shard)
    return shard


def edit_prov(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def change(shard: Path) -> None:
        prov = json.loads((shard / PROV).read_text())
        edit(prov)
        (shard / PROV).write_text(json.dumps(prov))
    return change


def edit_record(edit: Callable[[dict], None], line: int = 0) -> Callable[[Path], None]:
    def change(shard: Path) -> None:
        lines = (shard / RECORDS).read_text().splitlines()
        rec = json.loads(lines[line])
        edit(rec)
        lines[line] = json.dumps(rec)
        (shard / RECORDS).write_text("\n".join(lines) + "\n")
    return change


def refused(example_root: Path, job: Path, tmp_path: Path, shard: Path, capsys, *, code: int = 3,
            index: int = 1) -> str:
    out = tmp_path / "merged"
    capsys.readouterr()
    shards = [job / "shard0", shard] if index == 1 else [shard, job / "shard1"]
    assert merge(example_root, out, *shards) == code
    err = capsys.readouterr().err
    assert "hub-pgen: error:" in err and "TIP:" in err and "Traceback" not in err
    assert not out.exists() and not out.with_name("merged.partial").exists()
    return err


def setter(path: str, value):
    def edit(d: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value
    return edit


@pytest.mark.parametrize("path, value, expected", [
    ("shard.count", 10**12, "shard.count must be a whole number from 1 to 10,000, got 1000000000000"),
    ("shard.count", 0, "shard.count must be a whole number from 1 to 10,000, got 0"),
    ("shard.count", "2", "shard.count must be a whole number from 1 to 10,000, got '2'"),
    ("shard.index", -1, "shard.index must be a whole number from 0 to 1, got -1"),
    ("shard.index", 2, "shard.index must be a whole number from 0 to 1, got 2"),
    ("shard.index", True, "shard.index must be a whole number from 0 to 1, got True"),
    ("shard.index", 1.0, "shard.index must be a whole number from 0 to 1, got 1.0"),
    ("shard", [1, 2], "'shard' must be an object, got list"),
    ("plan_fingerprint", "../../etc", "'plan_fingerprint' must be a hex digest"),
    ("plan_fingerprint", 12345678, "'plan_fingerprint' must be a hex digest"),
    ("parameters", "seed=1", "'parameters' must be an object, got str"),
    ("parameters.seed", "x", "parameters.seed is 'x', which that option cannot be"),
    ("parameters.seed", 2**70, "has 22 digits"),
    ("parameters.seed", 2**63, "parameters.seed must be a whole number"),
    ("parameters.episodes", ["0", "1"], "parameters.episodes is ['0', '1']"),
    ("parameters.sample_interval", 1e-300, "the job's parameters do not make a run: --sample-interval"),
    ("parameters.scenario_mix", {"a": "b"}, "parameters.scenario_mix is {'a': 'b'}"),
    ("parameters.batch_size", None, "parameters.batch_size is None"),
])
def test_tampered_shard_provenance_is_refused(example_root, job, tmp_path, capsys, path, value, expected):
    index = 0 if path.startswith("parameters") else 1  # the merge runs the first shard's parameters
    shard = tampered(job, tmp_path, edit_prov(setter(path, value)), index=index)
    assert expected in refused(example_root, job, tmp_path, shard, capsys, index=index)


def test_a_huge_shard_count_is_refused_at_once_not_built(example_root, job, tmp_path):
    """Was: a set of 10^12 shard indices (killed for memory; SIGTERM did not stop it). A subprocess with
    a timeout: a regression hangs the test, not the suite."""
    shard = tampered(job, tmp_path, edit_prov(setter("shard.count", 10**12)))
    zero = tampered(job, tmp_path, edit_prov(setter("shard.count", 10**12)), index=0)
    p = subprocess.run([sys.executable, "-m", "hub_pgen", "merge", str(zero), str(shard), "--root", str(example_root),
                        "--output-dir", str(tmp_path / "m"), "-q"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stderr
    assert "shard.count must be a whole number from 1 to 10,000" in p.stderr


def test_many_missing_shards_are_counted_not_listed(example_root, job, tmp_path, capsys):
    zero = tampered(job, tmp_path, edit_prov(setter("shard.count", 10_000)), index=0)
    capsys.readouterr()
    assert merge(example_root, tmp_path / "m", zero) == 2
    err = capsys.readouterr().err
    assert "9999 shard(s) missing (1 of 10000, 2 of 10000, 3 of 10000, 4 of 10000, 5 of 10000, …)" in err
    assert len(err) < 600


def test_a_provenance_that_is_no_provenance_is_refused(example_root, job, tmp_path, capsys):
    cases = {
        "[1, 2]": "must hold a JSON object, got list",
        '{"shard": {"index": 1, "count": 2}, "shard": {}}': "appears twice",
        '{"plan_fingerprint": NaN}': "NaN is not a number",
        '{"shard": {"index": 1, "count": ' + "9" * 400 + "}}": "400 digits",
        "[" * 100_000: "nested too deeply",
    }
    for text, expected in cases.items():
        shard = tampered(job, tmp_path, lambda s, t=text: (s / PROV).write_text(t))
        assert expected in refused(example_root, job, tmp_path, shard, capsys), text
        shutil.rmtree(shard)
    shard = tampered(job, tmp_path, lambda s: (s / PROV).write_bytes(b'{"a": "\xff"}'))
    assert "not UTF-8 text" in refused(example_root, job, tmp_path, shard, capsys)


def test_a_shard_whose_identity_alone_was_edited_is_refused(example_root, job, tmp_path, capsys):
    shard = tampered(job, tmp_path, edit_prov(setter("identity.seed", 99)))
    err = refused(example_root, job, tmp_path, shard, capsys)
    assert "has the job fingerprint of shard" in err and "another identity" in err


@pytest.mark.parametrize("key, value", [
    ("frame_start", 0), ("frame_end", 10**6), ("episode_index", 0), ("skill_current", "wave at the camera"),
    ("skill_history", ["made up"]), ("task_description", "something else"), ("images", ["/etc/passwd"]),
    ("timestamp", 123.0), ("t", 7), ("episode_id", "episode_999"), ("scenario_type", "correction"),
])
def test_plan_fields_in_a_shard_record_must_be_the_merge_plans(example_root, job, tmp_path, capsys, key, value):
    """Was: changed values merged and validated. The plan is the merge's own; a record for another frame,
    skill or type is refused, naming the field."""
    rec = json.loads((job / "shard1" / RECORDS).read_text().splitlines()[0])
    if rec[key] == value:
        value = value + 1 if isinstance(value, int) else value
    shard = tampered(job, tmp_path, edit_record(setter(key, value)))
    err = refused(example_root, job, tmp_path, shard, capsys)
    assert "otherwise than this merge's plan does" in err and f"{key}: " in err


@pytest.mark.parametrize("edit, expected", [
    (setter("status", "filtered"), "status must be 'ok' or 'failed', got 'filtered'"),
    (setter("status", None), "not a record hub-pgen writes ('status' is NoneType)"),
    (setter("user_prompt", None), "its dialogue fails the checks a run makes of a model's answer: user_prompt"),
    (setter("user_prompt", 5), "not a record hub-pgen writes ('user_prompt' is int)"),
    (setter("user_prompt", "x" * 2_000_000), "user_prompt is 2,000,000 characters"),
    (setter("robot_utterance", "Sure.\n\n![x](http://host/p.png)"), "not as a run writes one"),
    (setter("robot_utterance", "ok \ud800 sure"), "lone UTF-16 surrogate"),
    (setter("raw_text", "y" * 100_000), "raw_text is 100,000 characters"),
    (setter("attempts", 10**9), "attempts must be a whole number from 1 to 1,000"),
    (setter("attempts", 0), "attempts must be a whole number from 1 to 1,000"),
    (setter("earlier", [{"error": 5}]), "earlier[0].error must be text, got int"),
    (setter("earlier", [{"error": "e", "attempts": 1}] * 101), "'earlier' lists 101 tries"),
    (setter("earlier", ["x"]), "'earlier' must list objects"),
])
def test_only_what_the_model_wrote_is_taken_and_it_is_checked(example_root, job, tmp_path, capsys, edit, expected):
    shard = tampered(job, tmp_path, edit_record(edit))
    assert expected in refused(example_root, job, tmp_path, shard, capsys)


def test_a_failed_record_with_a_dialogue_is_refused(example_root, job, tmp_path, capsys):
    shard = tampered(job, tmp_path, edit_record(lambda r: r.update(status="failed", error="boom")))
    assert "a failed sample with a dialogue" in refused(example_root, job, tmp_path, shard, capsys)


@pytest.mark.parametrize("lines, expected", [
    (lambda ls: ls + [ls[0]], "appears twice"),
    (lambda ls: ls[:1] + ["not json"] + ls[1:], ":2: not a record hub-pgen writes"),
    (lambda ls: ls[:1] + ["[1, 2]"] + ls[1:], ":2: not a record hub-pgen writes (expected a JSON object, got list)"),
    (lambda ls: [ls[0][:-1] + ', "sample_id": "x"}'] + ls[1:], ":1: not a record hub-pgen writes (key 'sample_id' "
                                                                "appears twice"),
])
def test_a_records_file_that_is_not_whole_is_refused(example_root, job, tmp_path, capsys, lines, expected):
    def change(shard: Path) -> None:
        old = (shard / RECORDS).read_text().splitlines()
        (shard / RECORDS).write_text("\n".join(lines(old)) + "\n")
    shard = tampered(job, tmp_path, change)
    assert expected in refused(example_root, job, tmp_path, shard, capsys)


def test_a_records_file_missing_or_a_line_too_long_is_refused(example_root, job, tmp_path, capsys):
    shard = tampered(job, tmp_path, lambda s: (s / RECORDS).unlink())
    assert f"{shard / RECORDS} is missing" in refused(example_root, job, tmp_path, shard, capsys)
    shutil.rmtree(shard)
    shard = tampered(job, tmp_path, lambda s: (s / RECORDS).write_text('{"a": "' + "z" * (5 << 20) + '"}\n'))
    assert "a record of 5,242,890 bytes" in refused(example_root, job, tmp_path, shard, capsys)


def test_untampered_shards_still_merge_to_the_one_machine_run(example_root, job, tmp_path):
    """The control: the same merge of the untouched shards is exit 0 and byte-identical (what the
    refusals above are measured against)."""
    out = tmp_path / "merged"
    assert merge(example_root, out, job / "shard0", job / "shard1") == 0
    validate(out, source=example_root)
    a, b = tree_hashes(out), tree_hashes(job / "one")
    for rel in (PROV, "meta/hub_pgen_report.html"):
        a.pop(rel), b.pop(rel)
    assert a == b


# --- the source changed after the shards ran --------------------------------------------------------


@pytest.fixture
def own_job(example_root, tmp_path):
    src = Path(shutil.copytree(example_root, tmp_path / "src"))
    for i in (0, 1):
        assert run(src, tmp_path / f"shard{i}", "--num-shards", "2", "--shard-index", str(i)) == 0
    return src


def merge_own(src: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = merge(src, tmp_path / "merged", tmp_path / "shard0", tmp_path / "shard1")
    return rc, capsys.readouterr().err


def test_a_data_file_changed_after_the_shards_ran_is_refused(own_job, tmp_path, capsys):
    """Was: only meta files were fingerprinted, so a changed data or video file merged silently. Here a
    value the plan does not read (the plan is the same; the rows written are not)."""
    path = own_job / "data/chunk-000/file-001.parquet"
    table = pq.read_table(path)
    col = next(n for n in table.column_names if n not in ("timestamp", "frame_index", "episode_index", "index",
                                                           "task_index"))
    values = table.column(col).to_pylist()
    values[0] = [v + 1 for v in values[0]] if isinstance(values[0], list) else values[0] + 1
    import pyarrow as pa

    table = table.set_column(table.column_names.index(col), col, pa.array(values, type=table.schema.field(col).type))
    pq.write_table(table, path)
    rc, err = merge_own(own_job, tmp_path, capsys)
    assert rc == 3, err
    assert "the source's data or video files are not those shard 0 of 2 ran on: 1 file(s) differ " \
           "('data/chunk-000/file-001.parquet')" in err
    assert not (tmp_path / "merged").exists() and not (tmp_path / "merged.partial").exists()


def test_a_video_changed_or_added_after_the_shards_ran_is_refused(own_job, tmp_path, capsys):
    video = next((own_job / "videos").rglob("*.mp4"))
    data = bytearray(video.read_bytes())
    data[len(data) // 2] ^= 0xFF
    video.write_bytes(bytes(data))
    rc, err = merge_own(own_job, tmp_path, capsys)
    assert rc == 3 and video.relative_to(own_job).as_posix() in err
    data[len(data) // 2] ^= 0xFF  # restored: the merge goes through
    video.write_bytes(bytes(data))
    (video.parent / "file-999.mp4").write_bytes(b"extra")
    rc, err = merge_own(own_job, tmp_path, capsys)
    assert rc == 3 and "file-999.mp4" in err
    (video.parent / "file-999.mp4").unlink()
    rc, err = merge_own(own_job, tmp_path, capsys)
    assert rc == 0, err


def test_a_shard_without_the_source_files_record_is_refused(own_job, tmp_path, capsys):
    prov = json.loads((tmp_path / "shard1" / PROV).read_text())
    del prov["source_files"]
    (tmp_path / "shard1" / PROV).write_text(json.dumps(prov))
    rc, err = merge_own(own_job, tmp_path, capsys)
    assert rc == 3 and "does not record its source's data and video files" in err


def test_a_large_video_is_fingerprinted_by_blocks_that_cover_it(tmp_path):
    """Over VIDEO_BLOCKS blocks a video is not read whole: its size and 16 blocks spread from its first to
    its last byte. A change in any block, or of the size, changes the digest."""
    path = tmp_path / "v.mp4"
    size = VIDEO_BLOCKS * VIDEO_BLOCK_BYTES * 8 + 123
    base = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    path.write_bytes(base)
    before = _digest(path, whole=False)
    step = (size - VIDEO_BLOCK_BYTES) // (VIDEO_BLOCKS - 1)
    for offset in (0, step * 7 + 5, size - 1):
        changed = bytearray(base)
        changed[offset] ^= 1
        path.write_bytes(bytes(changed))
        assert _digest(path, whole=False) != before, offset
    path.write_bytes(base + b"y")
    assert _digest(path, whole=False) != before
    path.write_bytes(base)
    assert _digest(path, whole=False) == before
