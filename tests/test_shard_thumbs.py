"""Issue 23, the merge's page: each shard makes the pictures of its samples that the merged review page
shows (meta/hub_pgen_thumbs.jsonl), so ``hub-pgen merge`` decodes no video and never loads PyAV; a
thumbnails file the merge cannot use (missing, damaged, edited out of bounds, a link) is said, and the
merge decodes those frames itself: the page is the same either way."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hub_pgen import layout
from hub_pgen.cli import main
from hub_pgen.faults import ENV as KILL_ENV

IMG = re.compile(r'<img class="thumb"[^>]*>')


def run(src: Path, out: Path, *extra: str) -> int:
    return main(["--root", str(src), "--output-dir", str(out), "--backend", "template", "-q", *extra])


def merge(src: Path, out: Path, *shards: Path, extra: tuple[str, ...] = ()) -> int:
    return main(["merge", *map(str, shards), "--root", str(src), "--output-dir", str(out), "-q", *extra])


def pictures(out: Path) -> list[str]:
    """The page's pictures, in page order (the rest of a page names its folder and time)."""
    return IMG.findall((out / layout.REPORT_PATH).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def job(example_root, tmp_path_factory):
    """The template job in one run, and as two shards."""
    base = tmp_path_factory.mktemp("thumbs")
    assert run(example_root, base / "one") == 0
    for i in (0, 1):
        assert run(example_root, base / f"shard{i}", "--num-shards", "2", "--shard-index", str(i)) == 0
    return base


def _lines(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / layout.SHARD_THUMBS_PATH).read_text().splitlines()]


def test_each_shard_makes_the_pictures_of_its_cards_and_the_merge_decodes_none(example_root, job, tmp_path):
    one = pictures(job / "one")
    assert len(one) == 50  # 25 samples (every one a card), two cameras
    ids = []
    for i in (0, 1):
        own = [json.loads(x)["sample_id"] for x in (job / f"shard{i}" / "syn_annotations.jsonl").read_text().splitlines()]
        lines = _lines(job / f"shard{i}")
        assert [x["sample_id"] for x in lines] == own  # every one, in plan order: a template shard decodes them at its end
        assert all(len(x["thumbs"]) == 2 and x["thumbs"][0]["mime"] == "image/webp" for x in lines)
        ids += own
    assert len(ids) == 25
    # the merge in a process of its own: PyAV is never imported there (its libraries alone are ~19 MiB)
    probe = ("import json, sys; from hub_pgen.cli import main; rc = main(sys.argv[1:]); "
             "print(json.dumps({'rc': rc, 'av': 'av' in sys.modules}))")
    out = tmp_path / "merged"
    p = subprocess.run([sys.executable, "-c", probe, "merge", str(job / "shard0"), str(job / "shard1"), "--root",
                        str(example_root), "--output-dir", str(out), "-q"],
                       capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert json.loads(p.stdout.splitlines()[-1]) == {"rc": 0, "av": False}, p.stderr[-2000:]
    assert pictures(out) == one  # the one-machine run's page decodes them from its own videos: the same bytes


def test_a_thumbnails_file_the_merge_cannot_use_is_said_and_the_page_is_the_same(example_root, job, tmp_path,
                                                                                  caplog):
    good = _lines(job / "shard0")
    webp = base64.b64decode(good[0]["thumbs"][0]["data"])
    damages = {
        "not whole": lambda t: t[:-1],
        "garbage": lambda t: b"{not json\n" + t,
        "a field more": lambda t: _with(good, 0, extra=1),
        "an svg": lambda t: _with(good, 0, mime="image/svg+xml"),
        "not base64": lambda t: _with(good, 0, data="!!!" + good[0]["thumbs"][0]["data"]),
        "not a webp": lambda t: _with(good, 0, data=base64.b64encode(b"<script>" + webp).decode()),
        "too large": lambda t: _with(good, 0, data=base64.b64encode(webp[:12] + bytes(2 << 20)).decode()),
        "a sample twice": lambda t: t + json.dumps(good[0]).encode() + b"\n",
        "over 64 MiB": None,  # a sparse file: refused by its size, before a byte is read
        "nested 100,000 deep": lambda t: b"[" * 100_000 + b"\n" + t,  # (was: RecursionError, exit 70)
        "a list for a mime": lambda t: _with(good, 0, mime=[]),  # (was: TypeError, exit 70)
        "a line of 7 MB": lambda t: json.dumps({"sample_id": "x", "thumbs": [{"label": "a" * (7 << 20)}]}).encode()
        + b"\n",
    }
    want = pictures(job / "one")
    for i, (name, damage) in enumerate(damages.items()):
        shard = tmp_path / f"s{i}"
        shutil.copytree(job / "shard0", shard)
        path = shard / layout.SHARD_THUMBS_PATH
        if damage is None:
            os.truncate(path, (64 << 20) + 1)
        else:
            path.write_bytes(damage(path.read_bytes()))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert merge(example_root, tmp_path / f"m{i}", shard, job / "shard1") == 0, name
        said = [r.getMessage() for r in caplog.records if "thumbnails file" in r.getMessage()]
        assert len(said) == 1 and str(path) in said[0] and "decodes that shard's cards' frames" in said[0], name
        assert pictures(tmp_path / f"m{i}") == want, name


def _with(lines: list[dict], at: int, *, extra: int | None = None, **thumb: object) -> bytes:
    edited = json.loads(json.dumps(lines))
    edited[at]["thumbs"][0].update(thumb)
    if extra is not None:
        edited[at]["extra"] = extra
    return b"".join(json.dumps(x).encode() + b"\n" for x in edited)


def test_a_link_a_missing_file_and_a_no_review_shard_cost_the_merge_a_decode_only(example_root, job, tmp_path,
                                                                                 caplog):
    want = pictures(job / "one")
    linked = tmp_path / "linked"
    shutil.copytree(job / "shard0", linked)
    target = linked / layout.SHARD_THUMBS_PATH
    target.rename(tmp_path / "elsewhere.jsonl")
    target.symlink_to(tmp_path / "elsewhere.jsonl")
    with caplog.at_level(logging.WARNING):
        assert merge(example_root, tmp_path / "m-link", linked, job / "shard1") == 0
    assert any("symbolic link" in r.getMessage() and str(target) in r.getMessage() for r in caplog.records)
    assert pictures(tmp_path / "m-link") == want
    bare = tmp_path / "bare"
    assert run(example_root, bare, "--num-shards", "2", "--shard-index", "0", "--no-review") == 0
    assert not (bare / layout.SHARD_THUMBS_PATH).exists()  # --no-review: no page, so no part of one
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert merge(example_root, tmp_path / "m-bare", bare, job / "shard1") == 0
    assert any(f"shard {bare} has no {layout.SHARD_THUMBS_PATH}" in r.getMessage() for r in caplog.records)
    assert pictures(tmp_path / "m-bare") == want


def test_a_shard_killed_and_resumed_makes_the_same_pictures(example_root, job, tmp_path):
    out = tmp_path / "s0"
    cmd = [sys.executable, "-m", "hub_pgen", "--root", str(example_root), "--output-dir", str(out), "--backend",
           "template", "--num-shards", "2", "--shard-index", "0", "-q"]
    killed = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1", KILL_ENV: "journal:5"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert run(example_root, out, "--num-shards", "2", "--shard-index", "0") == 0
    assert (out / layout.SHARD_THUMBS_PATH).read_bytes() == (job / "shard0" / layout.SHARD_THUMBS_PATH).read_bytes()


def test_pictures_that_cannot_be_made_cost_the_shard_nothing(example_root, job, tmp_path, monkeypatch, caplog):
    from hub_pgen.review import shard_thumbs

    def broken(*args, **kwargs):
        raise RuntimeError("decoding failed")

    monkeypatch.setattr(shard_thumbs, "decode_thumbs", broken)
    out = tmp_path / "s0"
    with caplog.at_level(logging.WARNING):
        assert run(example_root, out, "--num-shards", "2", "--shard-index", "0") == 0
    assert any("could not be made (RuntimeError: decoding failed)" in r.getMessage() for r in caplog.records)
    assert not (out / layout.SHARD_THUMBS_PATH).exists() and not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    assert merge(example_root, tmp_path / "m", out, job / "shard1") == 0
    assert pictures(tmp_path / "m") == pictures(job / "one")


def _decodes(monkeypatch) -> list[int]:
    """How many samples each decode of the page's pictures got (the page decodes the cards no shard made)."""
    from hub_pgen.review import thumbs

    counts: list[int] = []
    real = thumbs.decode_thumbs

    def counted(samples, **kw):
        counts.append(len(samples))
        return real(samples, **kw)

    monkeypatch.setattr(thumbs, "decode_thumbs", counted)
    return counts


def test_the_shards_make_the_cards_spread_over_the_whole_plan(example_root, tmp_path, monkeypatch):
    """More samples than cards: each shard keeps its share of the cards spread over the job's plan, which
    together are the merged page's, and the merge decodes none."""
    from hub_pgen.review import model

    monkeypatch.setattr(model, "DEFAULT_MAX_CARDS", 7)
    assert run(example_root, tmp_path / "one") == 0
    for i in (0, 1):
        assert run(example_root, tmp_path / f"s{i}", "--num-shards", "2", "--shard-index", str(i)) == 0
    made = [x["sample_id"] for i in (0, 1) for x in _lines(tmp_path / f"s{i}")]
    assert len(made) == 7 and all(_lines(tmp_path / f"s{i}") for i in (0, 1))  # both hold some of the spread
    decoded = _decodes(monkeypatch)
    assert merge(example_root, tmp_path / "m", tmp_path / "s0", tmp_path / "s1") == 0
    assert sum(decoded) == 0
    page = (tmp_path / "m" / layout.REPORT_PATH).read_text(encoding="utf-8")
    assert page.count('<article class="card ') == 7 and len(pictures(tmp_path / "m")) == 14
    assert pictures(tmp_path / "m") == pictures(tmp_path / "one")


def test_a_shard_without_cameras_writes_no_picture_its_merge_refuses(example_root, tmp_path, caplog):
    views = ("--num-image-views-per-sample", "0")
    for i in (0, 1):
        assert run(example_root, tmp_path / f"s{i}", "--num-shards", "2", "--shard-index", str(i), *views) == 0
        assert (tmp_path / f"s{i}" / layout.SHARD_THUMBS_PATH).read_bytes() == b""
    with caplog.at_level(logging.INFO):
        assert merge(example_root, tmp_path / "m", tmp_path / "s0", tmp_path / "s1") == 0
    assert not [r for r in caplog.records if "thumbnails" in r.getMessage() or "hub_pgen_thumbs" in r.getMessage()]


def test_the_shards_files_together_are_bounded_by_the_page(example_root, job, tmp_path, monkeypatch, caplog):
    """Each file within its bounds, together more than the page's cards: the shard that went over is said and
    its cards decoded (what a merge holds of the shards' pictures is the page's, whatever they hold)."""
    from hub_pgen.review import model

    monkeypatch.setattr(model, "DEFAULT_MAX_CARDS", 20)  # 12 + 13 pictures made for a page of 1,000
    bare = [tmp_path / "b0", tmp_path / "b1"]
    for i, b in enumerate(bare):
        shutil.copytree(job / f"shard{i}", b)
        (b / layout.SHARD_THUMBS_PATH).unlink()
    assert merge(example_root, tmp_path / "want", *bare) == 0  # every picture decoded by the merge
    with caplog.at_level(logging.WARNING):
        assert merge(example_root, tmp_path / "m", job / "shard0", job / "shard1") == 0
    said = [r.getMessage() for r in caplog.records if "thumbnails file" in r.getMessage()]
    assert len(said) == 1 and str(job / "shard1") in said[0] and "more than the page's 20 cards" in said[0]
    assert len(pictures(tmp_path / "m")) == 40 and pictures(tmp_path / "m") == pictures(tmp_path / "want")
