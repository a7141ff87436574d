"""Issue 13 part 1: one job split into shards (--num-shards/--shard-index) and `hub-pgen merge`, equal to
the one-machine run; every way the shards can fail to add up is refused, saying which shard and why."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from hub_pgen.cli import main
from hub_pgen.testing.tiny_qwen import tiny_model_dir
from hub_pgen.write.validate import validate

from .contract import tree_hashes


def run(src: Path, out: Path, *extra: str) -> int:
    return main(["--root", str(src), "--output-dir", str(out), "-q", *extra])


def merge(src: Path, out: Path, *shards: Path, extra: tuple[str, ...] = ()) -> int:
    return main(["merge", *map(str, shards), "--root", str(src), "--output-dir", str(out), "-q", *extra])


def same_dataset(a: Path, b: Path) -> None:
    ha, hb = tree_hashes(a), tree_hashes(b)
    for rel in ("meta/hub_pgen.json", "meta/hub_pgen_report.html"):  # its created_at (the review page shows it)
        ha.pop(rel), hb.pop(rel)
    assert ha == hb


@pytest.fixture(scope="module")
def job(example_root, tmp_path_factory):
    """The template job in one run, and as two shards."""
    base = tmp_path_factory.mktemp("shards")
    assert run(example_root, base / "one", "--backend", "template") == 0
    for i in (0, 1):
        assert run(example_root, base / f"shard{i}", "--backend", "template", "--num-shards", "2",
                   "--shard-index", str(i)) == 0
    return base


def test_two_shards_merged_equal_the_one_machine_run(example_root, job, tmp_path):
    out = tmp_path / "merged"
    assert merge(example_root, out, job / "shard1", job / "shard0") == 0  # any order
    validate(out, source=example_root)
    same_dataset(out, job / "one")
    prov = json.loads((out / "meta" / "hub_pgen.json").read_text())
    one = json.loads((job / "one" / "meta" / "hub_pgen.json").read_text())
    assert prov["fingerprint"] == one["fingerprint"] and "shard" not in prov
    assert prov["merged_from"] == {"shards": 2} and "merged_from" not in one


def test_a_shard_is_whole_episodes_with_the_one_machine_types_and_no_dataset(job):
    one = {json.loads(x)["sample_id"]: json.loads(x)
           for x in (job / "one" / "meta" / "syn_annotations.jsonl").read_text().splitlines()}
    seen: dict[int, int] = {}
    total = 0
    for i in (0, 1):
        folder = job / f"shard{i}"
        assert sorted(p.name for p in folder.iterdir()) == ["meta", "syn_annotations.jsonl"]  # not a dataset
        prov = json.loads((folder / "meta" / "hub_pgen.json").read_text())
        assert prov["shard"]["index"] == i and prov["shard"]["count"] == 2
        assert prov["plan_fingerprint"] == json.loads((job / "one" / "meta" / "hub_pgen.json").read_text())["fingerprint"]
        for line in (folder / "syn_annotations.jsonl").read_text().splitlines():
            rec = json.loads(line)
            assert seen.setdefault(rec["episode_index"], i) == i  # an episode lives in one shard
            mine = one[rec["sample_id"]]
            for key in ("scenario_type", "response_type", "user_prompt", "robot_utterance", "frame_start"):
                assert rec[key] == mine[key]
            total += 1
        assert set(prov["shard"]["episodes"]) == {e for e, k in seen.items() if k == i}
    assert total == len(one) and set(seen.values()) == {0, 1}


def test_two_shards_of_a_tiny_model_merged_equal_the_one_machine_run(example_root, tmp_path):
    tiny = tiny_model_dir(tmp_path / "tiny", "qwen2_vl")
    args = ("--model", str(tiny), "--device", "cpu", "--batch-size", "4")
    assert run(example_root, tmp_path / "one", *args) == 0
    for i in (0, 1):
        assert run(example_root, tmp_path / f"s{i}", *args, "--num-shards", "2", "--shard-index", str(i),
                   "--batch-size", "2") == 0  # another batch size on another machine: the same samples
    from hub_pgen.review import thumbs

    decoded: list[int] = []
    real = thumbs.decode_thumbs
    with pytest.MonkeyPatch.context() as m:  # the page's pictures: the frames the shards' model saw
        m.setattr(thumbs, "decode_thumbs", lambda samples, **kw: decoded.append(len(samples)) or real(samples, **kw))
        assert merge(example_root, tmp_path / "merged", tmp_path / "s0", tmp_path / "s1") == 0
    assert sum(decoded) == 0
    img = re.compile(r'<img class="thumb"[^>]*>')
    shown = img.findall((tmp_path / "merged" / "meta" / "hub_pgen_report.html").read_text(encoding="utf-8"))
    assert len(shown) == 50 and shown == img.findall((tmp_path / "one" / "meta" / "hub_pgen_report.html").read_text(
        encoding="utf-8"))
    validate(tmp_path / "merged", source=example_root)
    a, b = tree_hashes(tmp_path / "merged"), tree_hashes(tmp_path / "one")
    # the card and the review page list the parameters: the shards' batch size
    for rel in ("meta/hub_pgen.json", "README.md", "meta/hub_pgen_report.html"):
        a.pop(rel), b.pop(rel)
    assert a == b
    card = [line for line in (tmp_path / "merged" / "README.md").read_text().splitlines()
            if line not in (tmp_path / "one" / "README.md").read_text().splitlines()]
    assert card == ['  "batch_size": 2,']


def test_shards_that_do_not_add_up_are_refused(example_root, job, tmp_path, capsys):
    out = tmp_path / "merged"
    cases = []
    # a shard missing
    assert merge(example_root, out, job / "shard0") == 2
    cases.append("1 shard(s) missing (1 of 2)")
    # the same shard twice
    assert merge(example_root, out, job / "shard0", job / "shard0", job / "shard1") == 2
    cases.append("shard 0 of 2 is given twice")
    # a shard of another configuration
    other = tmp_path / "other1"
    assert run(example_root, other, "--backend", "template", "--num-shards", "2", "--shard-index", "1",
               "--seed", "7") == 0
    assert merge(example_root, out, job / "shard0", other) == 2
    cases.append("belongs to another configuration than shard")
    # a shard that lost samples
    lossy = tmp_path / "lossy"
    shutil.copytree(job / "shard1", lossy)
    lines = (lossy / "syn_annotations.jsonl").read_text().splitlines()
    (lossy / "syn_annotations.jsonl").write_text("\n".join(lines[1:]) + "\n")
    assert merge(example_root, out, job / "shard0", lossy) == 2
    cases.append(f"shard 1 of 2 ({lossy}) lacks 1 of its {len(lines)} sample(s)")
    # not a shard at all, and an unfinished one
    assert merge(example_root, out, job / "one", job / "shard1") == 2
    cases.append("is a hub-pgen result but not a shard")
    assert merge(example_root, out, tmp_path / "nowhere", job / "shard1") == 2
    cases.append("is not a folder (it does not exist)")
    (tmp_path / "killed.partial").mkdir()  # a shard run interrupted before it finished: only its state is there
    assert merge(example_root, out, tmp_path / "killed", job / "shard1") == 2
    cases.append(f"shard {tmp_path / 'killed'} has not finished: its run's state is in {tmp_path / 'killed'}.partial")
    # another source than the shards ran on
    src2 = tmp_path / "src2"
    shutil.copytree(example_root, src2)
    skills = json.loads((src2 / "meta" / "skills.json").read_text())
    skills["coarse_description"] = "something else"
    (src2 / "meta" / "skills.json").write_text(json.dumps(skills))
    assert merge(src2, out, job / "shard0", job / "shard1") == 2
    cases.append("the shards were made from another source or configuration than this merge's")
    err = capsys.readouterr().err
    for expected in cases:
        assert expected in err, expected
    assert err.count("TIP:") >= len(cases)
    assert not out.exists()


def test_shard_options_are_checked_before_anything_happens(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    for extra, message in (
        (("--num-shards", "2", "--shard-index", "2"), "--shard-index must be in 0..1"),
        (("--num-shards", "0"), "--num-shards must be >= 1"),
        (("--num-shards", "2", "--shard-index", "0", "--push-to", "me/x"),
         "a shard writes no dataset, so it has nothing to push"),
        (("--num-shards", "2", "--shard-index", "1", "--skills", "annotate"), "--skills annotate cannot be sharded"),
        (("--num-shards", "2"), "--num-shards 2 needs --shard-index"),  # not silently shard 0 on every machine
    ):
        assert run(example_root, out, "--backend", "template", *extra) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()
    assert main(["merge", str(tmp_path)]) == 2
    assert "give the source the shards ran on" in capsys.readouterr().err


def test_validate_and_report_on_a_shard_say_to_merge_first(job, capsys):
    assert main(["validate", str(job / "shard0")]) == 2
    assert "is a shard or --input-jsonl result" in capsys.readouterr().err
    assert main(["report", str(job / "shard0")]) == 3
    assert "hub-pgen merge SHARD... first" in capsys.readouterr().err


def test_one_folder_holds_one_shard(example_root, job, tmp_path, capsys):
    out = tmp_path / "s"
    shutil.copytree(job / "shard0", out)
    assert run(example_root, out, "--backend", "template", "--num-shards", "2", "--shard-index", "0") == 0
    assert run(example_root, out, "--backend", "template", "--num-shards", "2", "--shard-index", "1") == 4
    assert "shard: '0 of 2' -> '1 of 2'" in capsys.readouterr().err


def test_dry_run_shows_the_shard(example_root, tmp_path, capsys):
    assert main(["--root", str(example_root), "--backend", "template", "--num-shards", "3", "--shard-index", "2",
                 "--dry-run", "--json", "--output-dir", str(tmp_path / "o")]) == 0
    plan = json.loads(capsys.readouterr().out)["plan_report"]
    assert plan["shard"] == "2 of 3" and plan["shard_episodes"] >= 1 and 0 < plan["samples"] < 25


def test_a_shard_says_what_comes_next_and_an_empty_one_says_so(example_root, tmp_path, capsys, caplog):
    assert main(["--root", str(example_root), "--output-dir", str(tmp_path / "s0"), "--backend", "template",
                 "--num-shards", "2", "--shard-index", "0"]) == 0
    out = capsys.readouterr().out
    assert "0 of 2 (3 episode(s)): when every shard is done, hub-pgen merge their folders" in out
    assert "new tasks rows" not in out and "frames with a dialogue" not in out  # a shard writes no dataset
    assert main(["--root", str(example_root), "--output-dir", str(tmp_path / "s7"), "--backend", "template",
                 "--num-shards", "9", "--shard-index", "7", "-q"]) == 0
    assert "shard 7 of 9 has no samples: the plan's 5 episode(s) with samples fill fewer than 9 shards" in caplog.text


def test_shards_are_contiguous_runs_of_episodes_balanced_by_samples():
    """Contiguous, so a shard's episodes share files (it downloads its own files, not every file);
    balanced by samples; every shard holds an episode while there are enough of them."""
    import random
    from types import SimpleNamespace

    from hub_pgen.run.shards import assign

    rng = random.Random(0)
    for _ in range(500):
        m, n = rng.randint(1, 40), rng.randint(1, 12)
        counts = {e: rng.randint(1, 9) for e in range(0, 2 * m, 2)}  # episode indices need not be dense
        samples = [SimpleNamespace(episode_index=e) for e, c in counts.items() for _ in range(c)]
        owner = assign(samples, n)
        order = [owner[e] for e in sorted(owner)]
        assert order == sorted(order) and order[0] == 0 and max(order) < n
        assert all(b - a <= 1 for a, b in zip(order, order[1:]))  # no shard skipped between two others
        if m >= n:
            assert set(order) == set(range(n))
    even = [SimpleNamespace(episode_index=e) for e in range(24) for _ in range(3)]
    assert [assign(even, 4)[e] for e in range(24)] == [k for k in range(4) for _ in range(6)]


def test_the_merged_journal_is_written_whole_or_not_at_all(tmp_path):
    """merge writes its journal beside it (stage_journal) and renames it on once the shards are checked:
    a merge that fails half-way (a shard's file refused late) leaves neither the journal a rerun would
    take for the merged one nor the file beside it."""
    import os

    from hub_pgen.errors import ShardError
    from hub_pgen.journal import has_records, load_journal
    from hub_pgen.run.merging import stage_journal

    from .test_journal import rec

    path = tmp_path / "journal.jsonl"

    def refused_late():
        yield from (rec(i) for i in range(5))
        raise ShardError("shard 1 of 2: refused once read")

    with pytest.raises(ShardError):
        stage_journal(path, refused_late(), batch=2)
    assert not path.exists() and not has_records(path) and not list(tmp_path.iterdir())
    staged = stage_journal(path, (rec(i) for i in range(5)), batch=2)  # the rerun: from nothing
    assert staged == tmp_path / "journal.jsonl.merging" and not path.exists()
    os.replace(staged, path)
    assert sorted(load_journal(path)) == [f"s{i}" for i in range(5)] and has_records(path, fingerprint="fp1")


def test_a_merge_reads_each_shard_once_and_a_kill_while_it_checks_leaves_a_folder_the_rerun_takes(
        example_root, job, tmp_path, monkeypatch):
    """The shards' records are checked as they are written beside the merged journal (one read of each
    shard's file, not a check and then a second read: issue 23, the merge's longest steps); a merge
    killed there leaves the lock's folder with that file in it, which the same command takes over."""
    import os
    import subprocess
    import sys

    from hub_pgen.run import merging

    out = tmp_path / "merged"
    cmd = [sys.executable, "-m", "hub_pgen", "merge", str(job / "shard0"), str(job / "shard1"), "--root",
           str(example_root), "--output-dir", str(out), "-q"]
    killed = subprocess.run(cmd, env={**os.environ, "HUB_PGEN_KILL_AT": "merge.journal"}, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    partial = out.with_name("merged.partial")
    assert not out.exists() and {p.name for p in partial.iterdir()} == {"lock", "journal.jsonl.merging"}
    reads: list[str] = []
    real = merging.iter_records

    def counted(path, **kw):
        reads.append(Path(path).parent.name)
        return real(path, **kw)

    monkeypatch.setattr(merging, "iter_records", counted)
    assert merge(example_root, out, job / "shard0", job / "shard1") == 0
    assert sorted(reads) == ["shard0", "shard1"]  # each shard's records once
    assert not partial.exists()
    validate(out, source=example_root)
    same_dataset(out, job / "one")
    reads.clear()
    assert merge(example_root, out, job / "shard0", job / "shard1") == 0  # done: the shards are still checked
    assert sorted(reads) == ["shard0", "shard1"]
