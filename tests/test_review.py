"""Issue 14 part 1: the review page every run writes (meta/hub_pgen_report.html), rendered in a real
browser (Debian's Chromium driven by Playwright), ``hub-pgen report`` and its Rerun export.

The browser tests skip where no Chromium is installed, unless HUB_PGEN_REQUIRE_BROWSER=1 (which
.ci/run sets, after scripts/test installed Debian's chromium): on CI they cannot silently not run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from hub_pgen import layout
from hub_pgen.cli import main
from hub_pgen.data import GenerationResult
from hub_pgen.generate.template import TemplateBackend

HOSTILE_PROMPT = '<img src=x onerror="document.title=\'pwned\'">Grab it & "go" </p></article>'
HOSTILE_RAW = "<script>document.title='pwned'</script>{not json"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


class Hostile(TemplateBackend):
    """Template dialogues from decoded frames, except: the 4th sample fails with hostile raw text, the
    6th gets a hostile prompt, the 8th a reply too short for --min-chars (so it is filtered)."""

    needs_images = True

    def generate(self, requests):
        out = []
        for req, res in zip(requests, super().generate(requests)):
            order = self.order.index(req.sample.sample_id)
            if order == 3:
                res = GenerationResult(res.sample_id, None, raw_text=HOSTILE_RAW,
                                       error="invalid output: not a JSON object", attempts=3)
            elif order == 5:
                d = res.dialogue
                res = GenerationResult(res.sample_id, type(d)(d.scenario_type, d.response_type, HOSTILE_PROMPT,
                                                              d.robot_utterance))
            elif order == 7:
                d = res.dialogue
                res = GenerationResult(res.sample_id, type(d)(d.scenario_type, d.response_type, d.user_prompt, "Ok."))
            out.append(res)
        return out

    order: list[str] = []  # the plan's sample ids


def hostile_run(root: Path, out: Path, **config):
    from hub_pgen import run as runner
    from hub_pgen.config import RunConfig
    from hub_pgen.progress import NullReporter
    from hub_pgen.run.prepare import prepare

    cfg = RunConfig(root=root, output_dir=out, backend="template", min_chars=5, **config)
    prep = prepare(cfg, NullReporter())
    Hostile.order = [s.sample_id for s in prep.samples]
    return runner.run(cfg, backend=Hostile())


@pytest.fixture(scope="module")
def hostile_output(example_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("review") / "out"
    result = hostile_run(example_root, out)
    assert (result.samples, result.ok, result.failed) == (25, 24, 1)
    assert result.filtered == {"count": 1, "by_reason": {"robot reply shorter than --min-chars 5": 1}}
    return out, result


@pytest.fixture(scope="module")
def browser():
    # Debian's chromium (what scripts/test installs), else the Chrome of GitHub's ubuntu runners
    exe = next(filter(None, map(shutil.which, ("chromium", "google-chrome", "google-chrome-stable",
                                               "chromium-browser"))), "/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not Path(exe).is_file():
        why = ("playwright is not installed (pip install playwright)" if sync_playwright is None
               else "no Chromium or Chrome (apt-get install chromium)")
        if os.environ.get("HUB_PGEN_REQUIRE_BROWSER"):
            pytest.fail(f"HUB_PGEN_REQUIRE_BROWSER is set but {why}")
        pytest.skip(why)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    blocked: list[str] = []
    page.on("request", lambda req: blocked.append(req.url) if not req.url.startswith(("file:", "data:")) else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, blocked


def test_every_run_writes_a_review_page_that_a_browser_renders(hostile_output, browser, tmp_path):
    out, result = hostile_output
    report = out / layout.REPORT_PATH
    assert result.report == report and report.is_file()
    from hub_pgen.write.validate import validate

    validate(out)  # the page is part of the dataset (pushed with it) and breaks nothing
    page, requests = open_page(browser, report)
    try:
        counts = page.evaluate("""() => ({
            cards: document.querySelectorAll('article.card').length,
            ok: document.querySelectorAll('article.card.ok').length,
            failed: document.querySelectorAll('article.card.failed').length,
            filtered: document.querySelectorAll('article.card.filtered').length,
            images: document.images.length,
            decoded: [...document.images].filter(i => i.complete && i.naturalWidth > 0).length,
            markers: document.querySelectorAll('.timeline a.mk').length,
            nodialogue: document.querySelectorAll('.timeline .nodlg').length,
            episodes: document.querySelectorAll('section.episode').length,
            scripts: document.scripts.length,
            title: document.title,
        })""")
        assert counts["cards"] == counts["markers"] == 25
        assert (counts["ok"], counts["failed"], counts["filtered"]) == (23, 1, 1)
        assert counts["images"] == counts["decoded"] == 50  # two cameras per sample, every one decoded
        assert counts["episodes"] == 6 and counts["nodialogue"] >= 2  # the failed and the filtered sample's frames
        # model text is text: nothing ran, nothing was fetched, and it reads as written
        assert counts["scripts"] == 0 and counts["title"].startswith("hub-pgen review")
        assert requests == []
        text = page.inner_text("body")
        assert HOSTILE_PROMPT.strip() in text
        page.click("article.card.failed summary")
        assert HOSTILE_RAW in page.inner_text("article.card.failed")
        assert "invalid output: not a JSON object" in page.inner_text("article.card.failed")
        assert "filtered: robot reply shorter than --min-chars 5" in page.inner_text("article.card.filtered")
        shot = tmp_path / "review.png"
        page.screenshot(path=str(shot))
        card = tmp_path / "card.png"
        page.locator("article.card").first.screenshot(path=str(card))
    finally:
        page.close()
    from PIL import Image, ImageStat

    for png in (shot, card):
        with Image.open(png) as im:
            stat = ImageStat.Stat(im.convert("RGB"))
            assert sum(stat.stddev) > 30, f"{png} looks blank"
            assert len(im.convert("RGB").getcolors(1 << 20) or ()) > 50, f"{png} has almost no colours"
    if os.environ.get("HUB_PGEN_KEEP_SCREENSHOTS"):  # to look at it: pytest -k review with this set
        shutil.copy(shot, os.environ["HUB_PGEN_KEEP_SCREENSHOTS"])


def test_the_page_is_self_contained_and_escapes_every_model_string(hostile_output):
    out, _ = hostile_output
    page = (out / layout.REPORT_PATH).read_text(encoding="utf-8")
    assert "<script" not in page.lower().replace("&lt;script", "")
    assert "http://" not in page and "https://" not in page  # no CDN, no remote anything
    assert "default-src 'none'" in page
    assert '<img src=x onerror' not in page and "&lt;img src=x onerror=&quot;" in page
    assert page.count('<article class="card') == 25


def test_the_report_command_writes_it_again_with_its_own_limits(hostile_output, tmp_path, capsys):
    out, _ = hostile_output
    dest = tmp_path / "r.html"
    assert main(["report", str(out), "--output", str(dest), "--max-cards", "3"]) == 0
    said = capsys.readouterr().out
    assert f"{dest}: 3 sample card(s), 6 image(s)" in said
    page = dest.read_text(encoding="utf-8")
    # the failed and the filtered one come first, then one ok sample
    assert page.count('<article class="card failed"') == 1 and page.count('<article class="card filtered"') == 1
    assert page.count('<article class="card ok"') == 1
    assert "Showing 3 of 25 samples as cards: every failed and filtered one (2) first" in page
    assert main(["report", str(out), "--output", str(dest), "--max-cards", "1", "-q"]) == 0
    assert "Showing 1 of 25 samples as cards: 1 of the 2 failed and filtered ones first" in dest.read_text()
    # a page of one episode: every figure is that episode's (the dataset's own page is left as it was)
    own = (out / layout.REPORT_PATH).read_bytes()
    assert main(["report", str(out), "--output", str(dest), "--episodes", "1", "-q"]) == 0
    page = dest.read_text(encoding="utf-8")
    assert (out / layout.REPORT_PATH).read_bytes() == own
    assert page.count('<section class="episode"') == 1 and "Episode(s) 1 only, 1 of 6" in page
    records = [json.loads(x) for x in (out / layout.SYN_ANNOTATIONS_PATH).read_text().splitlines()]
    ep1 = [r for r in records if r["episode_index"] == 1]
    assert f'<td>samples</td><td class="n">{len(ep1)}</td>' in page
    assert page.count('<article class="card') == len(ep1)
    asked = re.findall(r'<tr><td>\w+</td><td class="n">(\d+)</td><td>\d+%</td>', page.split("Mix: scenario_type")[1]
                       .split("</table>")[0])
    assert sum(map(int, asked)) == len(ep1)


def test_report_errors_say_what_to_do(hostile_output, example_root, tmp_path, capsys):
    out, _ = hostile_output
    cases = [
        (["report", str(tmp_path / "nope")], 2, "does not exist"),
        (["report", str(example_root)], 3, "is not a dataset hub-pgen wrote"),
        (["report", str(out), "--episodes", "42", "--output", str(tmp_path / "p.html")], 2, "has no episode(s) [42]"),
        (["report", str(out), "--episodes", "1", "--output", str(out / layout.REPORT_PATH)], 2, "stays the full one"),
        (["report", str(out), "--rrd", str(tmp_path)], 2, "is a folder"),
        (["report", str(out), "--rrd", str(tmp_path / "r.txt")], 2, "name ends in .rrd"),
        (["report", str(out), "--episodes", "1"], 2, "--episodes makes a partial page"),
        (["report", str(out), "--max-cards", "3"], 2, "dataset's own (pushed with it), which stays the full one"),
        (["report", str(out / "meta")], 3, "is the meta folder of a dataset"),
        (["report", str(out), "--max-card", "3"], 2, "did you mean --max-cards"),
    ]
    for argv, code, message in cases:
        capsys.readouterr()
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert message in err and "TIP:" in err, (argv, err)


def test_frames_that_cannot_be_decoded_show_as_unavailable(hostile_output, tmp_path, capsys):
    out, _ = hostile_output
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    video = sorted((copy / "videos").rglob("*.mp4"))[0]
    video.write_bytes(b"not a video")
    assert main(["report", str(copy)]) == 0
    said = capsys.readouterr().out
    assert "frame(s) unreadable" in said
    page = (copy / layout.REPORT_PATH).read_text(encoding="utf-8")
    assert "frame unavailable:" in page and page.count('<article class="card') == 25


def test_a_lerobot_language_result_gets_its_page_too(example_root, tmp_path):
    result = hostile_run(example_root, tmp_path / "o", output_format="lerobot-language")
    page = (tmp_path / "o" / layout.REPORT_PATH).read_text(encoding="utf-8")
    assert result.report is not None and page.count('<article class="card') == 25
    assert "frames without a dialogue, -1 (records)" in page  # no task_index_high_level column: from the records
    assert 'class="nodlg"' in page


def test_the_quality_alarms_show_when_they_fire_and_only_then(hostile_output, tmp_path):
    out, _ = hostile_output
    # the hostile prompt is not words: the degenerate-string alarm fires, at the top of the page
    page = (out / layout.REPORT_PATH).read_text(encoding="utf-8")
    assert page.count('class="alarm"') == 1 and "1 of 24 dialogues hold a degenerate string" in page
    # the page measures the records it shows: with that prompt in plain words, the alarm is gone
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    syn = copy / layout.SYN_ANNOTATIONS_PATH
    syn.write_text(syn.read_text().replace(json.dumps(HOSTILE_PROMPT, ensure_ascii=False)[1:-1], "Grab it and go."))
    assert main(["report", str(copy), "-q"]) == 0
    page = (copy / layout.REPORT_PATH).read_text(encoding="utf-8")
    assert not re.search(r'<div class="alarm">⚠ \d+ of \d+ dialogues hold a degenerate', page)


# --- Rerun --------------------------------------------------------------------------------------------


def rrd_rows(path: Path) -> dict[str, list[dict]]:
    """entity path → rows (timeline values and component values) of a .rrd file, read with rerun-sdk."""
    from rerun.chunk import RrdReader

    rows: dict[str, list[dict]] = {}
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        for row in batch.to_pylist():
            rows.setdefault(str(chunk.entity_path), []).append(row)
    return rows


def _value(row: dict, suffix: str):
    key = next(k for k in row if k.endswith(suffix))
    v = row[key]
    return v[0] if isinstance(v, list) and v else v


def test_rrd_export_logs_every_frame_with_the_dialogues_on_the_timelines(hostile_output, tmp_path, capsys):
    pytest.importorskip("rerun")
    out, _ = hostile_output
    rrd = tmp_path / "review.rrd"
    page = (out / layout.REPORT_PATH).read_bytes()
    assert main(["report", str(out), "--rrd", str(rrd), "--episodes", "0,1"]) == 0
    assert (out / layout.REPORT_PATH).read_bytes() == page  # the recording alone: the dataset's page is untouched
    assert f"{rrd}: 2 episode(s), 210 image(s)" in capsys.readouterr().out  # (45 + 60) frames x 2 cameras
    assert not (tmp_path / "review.rrd.tmp").exists()
    rows = rrd_rows(rrd)
    cams = json.loads((out / layout.INFO_PATH).read_text())["features"]
    cameras = [k for k, v in cams.items() if v["dtype"] == "video"]
    for ep, length in ((0, 45), (1, 60)):
        for cam in cameras:
            frames = sorted(r["frame_index"] for r in rows[f"/episode_{ep:04d}/{cam}"] if r.get("frame_index") is not None)
            assert frames == list(range(length))
    records = [json.loads(line) for line in (out / layout.SYN_ANNOTATIONS_PATH).read_text().splitlines()]
    ep0 = [r for r in records if r["episode_index"] == 0]
    logs = {r["frame_index"]: str(_value(r, "TextLog:text")) for r in rows["/episode_0000/samples"]}
    assert sorted(logs) == sorted(r["frame_index"] for r in ep0)
    for r in ep0:
        assert logs[r["frame_index"]].startswith(f"[{r['status']}]")
        if r["status"] == "ok":
            assert r["user_prompt"] in logs[r["frame_index"]]
    dialogue = {r["frame_index"]: str(_value(r, "TextDocument:text")) for r in rows["/episode_0000/dialogue"]}
    for r in ep0:
        if r["status"] == "ok":
            assert dialogue[r["frame_start"]] == f"User: {r['user_prompt']}\nRobot: {r['robot_utterance']}"
    times = {r["frame_index"]: r["timestamp"] for r in rows["/episode_0000/dialogue"]}
    assert all(abs(_seconds(times[f]) - f / 30) < 1e-6 for f in times)
    assert "/episode_0002/samples" not in rows  # --episodes 0,1
    capsys.readouterr()
    assert main(["report", str(out), "--rrd", "/proc/nope/review.rrd"]) == 4  # cannot write: said, not a crash
    assert "cannot write the recording /proc/nope/review.rrd" in capsys.readouterr().err


def _seconds(value) -> float:
    import datetime as dt

    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value) / 1e9  # nanoseconds


def test_rrd_without_rerun_names_the_extra(hostile_output, tmp_path, capsys, monkeypatch):
    import sys

    out, _ = hostile_output
    monkeypatch.setitem(sys.modules, "rerun", None)
    before = (out / layout.REPORT_PATH).stat().st_mtime_ns
    assert main(["report", str(out), "--rrd", str(tmp_path / "x.rrd"), "--output", str(tmp_path / "p.html")]) == 5
    err = capsys.readouterr().err
    assert not (tmp_path / "p.html").exists()  # said before any work
    assert (out / layout.REPORT_PATH).stat().st_mtime_ns == before
    assert "rerun-sdk" in err and '[rerun]"' in err and "pip install" in err
    assert not (tmp_path / "x.rrd").exists()


def test_the_page_is_a_function_of_the_output_folder(hostile_output, tmp_path):
    """What the run wrote, ``hub-pgen report`` writes again byte for byte: the page depends on the
    dataset and its provenance only (so outputs that are equal but for created_at differ there only)."""
    out, _ = hostile_output
    assert main(["report", str(out), "--output", str(tmp_path / "again.html"), "-q"]) == 0
    assert (tmp_path / "again.html").read_bytes() == (out / layout.REPORT_PATH).read_bytes()


def test_a_damaged_output_is_named_not_a_crash(hostile_output, tmp_path, capsys, monkeypatch):
    out, _ = hostile_output
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    data = sorted((copy / "data").rglob("*.parquet"))[0]
    data.write_bytes(data.read_bytes()[:100])  # truncated
    assert main(["report", str(copy)]) == 3
    err = capsys.readouterr().err
    assert f"{data} is not a readable data file" in err and "hub-pgen validate" in err
    assert main(["report", "user/pushed_pgen"]) == 2
    assert "hf download user/pushed_pgen --repo-type dataset" in capsys.readouterr().err
    # a typo under a local folder is a typo, not a Hub id
    monkeypatch.chdir(tmp_path)
    assert main(["report", "copy/meta_typo"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "hf download" not in err


def test_the_summary_names_the_page_and_says_how_many_dialogues_were_kept(hostile_output, capsys):
    from hub_pgen.report import print_summary, result_json

    out, result = hostile_output
    print_summary(result)
    said = capsys.readouterr().out
    assert "24  (1 filtered out, 23 kept)" in said  # the page's "kept in the dataset" is the same 23
    assert f"{out / layout.REPORT_PATH}  (open it in a browser)" in said
    assert result_json(result)["report"] == str(out / layout.REPORT_PATH)


def test_past_max_markers_the_timelines_mark_the_shown_samples_only(hostile_output, tmp_path, monkeypatch):
    from hub_pgen.review import tally

    out, _ = hostile_output
    monkeypatch.setattr(tally, "MAX_MARKERS", 10)
    assert main(["report", str(out), "--output", str(tmp_path / "p.html"), "--max-cards", "4", "-q"]) == 0
    page = (tmp_path / "p.html").read_text(encoding="utf-8")
    assert page.count('class="mk ') == 4 and "the timelines mark those 4 only" in page


def test_the_card_filter_shows_only_what_was_asked_for(hostile_output, browser):
    out, _ = hostile_output
    page, _ = open_page(browser, out / layout.REPORT_PATH)
    visible = """() => ({
        cards: [...document.querySelectorAll('article.card')].filter(c => c.offsetParent !== null)
                   .map(c => c.className),
        episodes: [...document.querySelectorAll('section.episode')].filter(s => s.offsetParent !== null).length})"""
    try:
        assert len(page.evaluate(visible)["cards"]) == 25
        for link, want in (("failed (1)", "failed"), ("filtered out (1)", "filtered"),
                           ("flagged by the quality measures (1)", "flagged")):
            page.click(f"nav >> text={link}")  # a link, no script: the stylesheet filters on :target
            shown = page.evaluate(visible)
            assert len(shown["cards"]) == 1 and want in shown["cards"][0].split(), (link, shown)
            assert shown["episodes"] == 1
        page.click("nav >> text=all (25)")
        assert len(page.evaluate(visible)["cards"]) == 25
    finally:
        page.close()


def test_image_features_stored_in_the_parquet_get_thumbnails_and_frames_too(tmp_path, capsys):
    """A camera stored as images in the data parquet (dtype image), beside a video one."""
    from hub_pgen.example import ExampleSpec, build_example_dataset

    src = build_example_dataset(tmp_path / "src", ExampleSpec(cameras=("observation.images.up",),
                                                               image_features=("observation.images.wrist",)))
    assert main(["--root", str(src), "--output-dir", str(tmp_path / "o"), "--backend", "template", "-q"]) == 0
    page = (tmp_path / "o" / layout.REPORT_PATH).read_text(encoding="utf-8")
    assert page.count('<img class="thumb"') == 50 and "frame unavailable" not in page
    assert page.count('alt="observation.images.wrist#row') == 25
    if importlib.util.find_spec("rerun") is not None:
        capsys.readouterr()
        assert main(["report", str(tmp_path / "o"), "--rrd", str(tmp_path / "r.rrd"), "--episodes", "0"]) == 0
        assert "1 episode(s), 90 image(s)" in capsys.readouterr().out  # 45 frames x (video + parquet image)


def test_a_page_that_cannot_be_drawn_does_not_cost_the_dataset(example_root, tmp_path, monkeypatch, capsys):
    from hub_pgen.review import html as page_mod
    from hub_pgen.write.validate import validate

    def broken(*args, **kwargs):  # fails once a piece of the page is written (it is written as it is drawn)
        yield "<!DOCTYPE html>"
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(page_mod, "render_parts", broken)
    out = tmp_path / "o"
    assert main(["--root", str(example_root), "--output-dir", str(out), "--backend", "template", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["state"] == "written" and result["ok"] == 25 and result["report"] is None
    assert any("the review page could not be written (RuntimeError: drawing failed)" in n for n in result["notices"])
    validate(out, source=example_root)
    assert not (out / layout.REPORT_PATH).exists() and not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    assert main(["report", str(out), "-q"]) == 0 and (out / layout.REPORT_PATH).is_file()


def test_no_dialogue_runs_are_maximal_runs_of_consecutive_flagged_frames():
    import numpy as np

    from hub_pgen.review.model import _runs

    frames = np.array([0, 1, 2, 3, 5, 6, 7, 9])  # 4 and 8 are not in the file
    flag = np.array([1, 1, 0, 1, 1, 1, 0, 1], dtype=bool)
    assert _runs(frames, flag) == [(0, 2), (3, 4), (5, 7), (9, 10)]
    assert _runs(np.arange(5), np.zeros(5, dtype=bool)) == [] and _runs(np.arange(3), np.ones(3, dtype=bool)) == [(0, 3)]


def test_a_folder_that_does_not_validate_gets_its_page_with_the_problems_on_top(hostile_output, tmp_path, capsys):
    out, _ = hostile_output
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    info = json.loads((copy / layout.INFO_PATH).read_text())
    info["total_frames"] += 1  # what a loader would trip on; the page can still be drawn
    (copy / layout.INFO_PATH).write_text(json.dumps(info))
    assert main(["report", str(copy)]) == 0
    err = capsys.readouterr().err
    assert "does not pass hub-pgen validate" in err and f"hub-pgen validate {copy} lists them" in err
    page = (copy / layout.REPORT_PATH).read_text(encoding="utf-8")
    assert "This folder does not pass <code>hub-pgen validate</code>" in page and "total_frames" in page
    assert "does not pass" not in (out / layout.REPORT_PATH).read_text(encoding="utf-8")  # a valid one: no such note
