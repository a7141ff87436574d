"""Issue 20, files and text: what a crafted result folder, dataset, answer or name can do to the files
hub-pgen writes and the places its text is shown.

1. Links planted where hub-pgen writes (the old fixed ``FILE.tmp`` names, the destination itself, the
   journal, the lock, a server's log, the staging folder): the link's target is never written; the
   result is right, or the run stops with exit 4 naming the link (hub_pgen.fsio).
2. Lone UTF-16 surrogates (JSON ``"\\ud800"``): the journal and every writer take any string; a
   dataset's JSON holding one is refused (exit 3, the file and key).
3. Control characters (ESC sequences, CR, C1, bidi controls) in skill names, task strings and answers
   reach the terminal as visible escapes, with or without a terminal (hub_pgen.textsafe).
4. Model and dataset text in the card and the Actions job summary is literal Markdown: parsed with
   markdown-it, no image, link or HTML comes from it and every table keeps its rows.
5. A full disk while labelling: exit 4, the labels' journal kept, the same command resumes to the
   labels of a run that never failed.

The table of outcomes is in docs/reliability.md ("Hostile input, round 3").
"""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from hub_pgen import fsio, layout, textsafe
from hub_pgen import journal_writer as journal_mod
from hub_pgen import run as runner
from hub_pgen.cli import main
from hub_pgen.config import RunConfig
from hub_pgen.data import Dialogue, GenerationRequest, GenerationResult, JournalRecord
from hub_pgen.journal import load_journal
from hub_pgen.journal_writer import JournalWriter
from hub_pgen.report import write_step_summary
from hub_pgen.textsafe import for_markdown_cell, for_terminal, inline, json_text, well_formed
from hub_pgen.write.card import refresh_card, render_card
from hub_pgen.write.validate import validate

from ..contract import tree_hashes

REPO = Path(__file__).resolve().parents[2]
STAND_IN = REPO / "tests" / "openai_server.py"
VICTIM_TEXT = "precious: nothing of hub-pgen's may ever land here\n"
# raw, anywhere in what hub-pgen prints: C0 (not tab/newline), DEL, C1, bidi controls
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# what a crafted name would do on a terminal: set the title, clear the screen, a hyperlink, CSI, override
CRAFTED_SEQUENCES = ("\x1b]0;", "\x1b[2J", "\x1b[38;2;1;2;3m", "\x9b", "\u202e", "\u2066", "\r[hub-pgen", "\x07")
EVIL_SKILL = "pick \x1b]0;pwned\x07up\x1b[2J \u202eeulb\u202c\x9b31m\rX ![x](http://host/p.png) | col <b>b</b> `c`"
FORGED_LINE = "retract\n[hub-pgen 00:00:00] ERROR forged line\r::error::forged"
EVIL_TASK = "Pick \x1b[38;2;1;2;3mred\x1b[0m \u2066up\u2069 the brick \x07 [link=http://evil]click[/link] ![t](http://host/t.png)"
MARKDOWN_EVIL = ("![x](http://host/p.png) [l](http://evil/) <http://auto.link> <img src=x onerror=alert(1)> "
                 "<script>alert('x')</script> &amp; &#60;b&#62; **bold** _em_ `code` ~~gone~~ www.evil.com "
                 "me@evil.com https://bare.example | pipe \\| escaped \\\\| twice\r\n# heading\n- item\n1. one $x^2$")


def partial(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def victim(tmp_path: Path) -> Path:
    """A file the user can write, which a planted link points at: it must never change."""
    path = tmp_path / "victim.txt"
    path.write_text(VICTIM_TEXT)
    return path


def assert_untouched(path: Path) -> None:
    assert path.read_text() == VICTIM_TEXT and not path.is_symlink()


def run_template(src: Path, out: Path, *extra: str) -> int:
    return main(["--root", str(src), "--output-dir", str(out), "--backend", "template", "-q", *extra])


def cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub_pgen", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=REPO)


def assert_exit_4_naming_the_link(rc: int, err: str, link: Path) -> None:
    assert rc == 4, err
    assert err.count("hub-pgen: error:") == 1 and "Traceback" not in err, err
    assert f"{link} is a symbolic link" in err and "never writes through a link" in err, err
    assert re.search(r"^TIP: remove ", err, re.M), err


@pytest.fixture
def src(example_root, tmp_path) -> Path:
    return Path(shutil.copytree(example_root, tmp_path / "src"))


@pytest.fixture(scope="module")
def result(example_root, tmp_path_factory) -> Path:
    """A finished result of the example (read-only: tests that plant links copy it)."""
    out = tmp_path_factory.mktemp("result") / "out"
    assert run_template(example_root, out) == 0
    return out


@pytest.fixture
def own_result(result, tmp_path) -> Path:
    return Path(shutil.copytree(result, tmp_path / "mine" / "out", symlinks=True))


# --- 1. no write through a planted link ---------------------------------------------------------


@pytest.mark.parametrize("at", ["old tmp name", "destination"])
def test_report_again_never_writes_through_a_planted_link(own_result, tmp_path, capsys, at):
    page = own_result / layout.REPORT_PATH
    target = victim(tmp_path)
    link = page.with_name(page.name + ".tmp") if at == "old tmp name" else page
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    assert main(["report", str(own_result), "-q"]) == 0, capsys.readouterr().err
    assert_untouched(target)
    assert page.is_file() and not page.is_symlink() and b"<html" in page.read_bytes()[:500].lower()
    assert not [p.name for p in page.parent.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]
    # --output FILE: a link at FILE.tmp, then at FILE itself
    dest = tmp_path / "page.html"
    dest.with_name("page.html.tmp").symlink_to(target)
    assert main(["report", str(own_result), "--output", str(dest), "--episodes", "0", "-q"]) == 0
    dest.unlink()
    dest.symlink_to(target)
    assert main(["report", str(own_result), "--output", str(dest), "--episodes", "0", "-q"]) == 0
    assert_untouched(target)
    assert dest.is_file() and not dest.is_symlink() and b"<html" in dest.read_bytes()[:500].lower()


def test_report_refuses_a_result_folder_whose_meta_links_out_of_it(own_result, tmp_path, capsys):
    """A crafted result folder: ``OUT/meta`` is a link to another folder; the page would land there."""
    elsewhere = tmp_path / "elsewhere"
    shutil.move(own_result / "meta", elsewhere)
    (own_result / "meta").symlink_to(elsewhere)
    (elsewhere / layout.REPORT_PATH.split("/")[-1]).write_text(VICTIM_TEXT)
    capsys.readouterr()
    assert main(["report", str(own_result), "-q"]) == 4
    err = capsys.readouterr().err
    assert "a link out of the dataset folder" in err and str(elsewhere) in err, err
    assert (elsewhere / layout.REPORT_PATH.split("/")[-1]).read_text() == VICTIM_TEXT


def test_rerun_recording_never_writes_through_a_planted_tmp_link(result, tmp_path):
    pytest.importorskip("rerun")
    target = victim(tmp_path)
    rrd = tmp_path / "review.rrd"
    rrd.with_name("review.rrd.tmp").symlink_to(target)
    assert main(["report", str(result), "--rrd", str(rrd), "--episodes", "0", "-q"]) == 0
    assert_untouched(target)
    assert rrd.is_file() and rrd.stat().st_size > 0


@pytest.mark.parametrize("at", ["old tmp name", "destination"])
def test_card_rewrite_never_writes_through_a_planted_link(own_result, tmp_path, at):
    """The push renders the card again for where it goes (refresh_card)."""
    card = own_result / layout.CARD_PATH
    target = victim(tmp_path)
    link = card.with_name(card.name + ".tmp") if at == "old tmp name" else card
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    text = refresh_card(own_result, repo_id="me/pushed", branch=None)
    assert_untouched(target)
    assert card.is_file() and not card.is_symlink() and card.read_text() == text and "me/pushed" in text


def _killed_run(src: Path, out: Path, point: str = "journal:2") -> None:
    """A run SIGKILLed after two batches: OUT.partial holds run.json and a journal of this configuration."""
    proc = cli(["--root", str(src), "--output-dir", str(out), "--backend", "template", "-q", "--batch-size", "4"],
               {"HUB_PGEN_KILL_AT": point})
    assert proc.returncode == -9, proc.stderr
    assert (partial(out) / "run.json").is_file() and (partial(out) / "journal.jsonl").is_file()


def test_a_link_planted_at_the_journal_is_refused_and_its_target_kept(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    _killed_run(example_root, out)
    journal = partial(out) / "journal.jsonl"
    kept = journal.read_bytes()
    journal.unlink()
    target = tmp_path / "victim.txt"
    target.write_text(VICTIM_TEXT + "a torn last line without its newline")  # opening would have cut it
    journal.symlink_to(target)
    capsys.readouterr()
    rc = run_template(example_root, out, "--batch-size", "4")
    assert_exit_4_naming_the_link(rc, capsys.readouterr().err, journal)
    assert target.read_text() == VICTIM_TEXT + "a torn last line without its newline"
    assert not out.exists()
    journal.unlink()
    journal.write_bytes(kept)  # the real journal back: the same command resumes and finishes
    capsys.readouterr()
    assert main(["--root", str(example_root), "--output-dir", str(out), "--backend", "template", "--batch-size", "4",
                 "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["resumed"] == 8 and done["ok"] == 25
    validate(out, source=example_root)


def test_a_link_or_a_folder_at_the_lock_is_refused(example_root, tmp_path, capsys):
    """The lock file is truncated and rewritten with the holder's pid: through a link, that was the target."""
    out = tmp_path / "out"
    target = victim(tmp_path)
    partial(out).mkdir(parents=True)
    lock = partial(out) / "lock"
    lock.symlink_to(target)
    capsys.readouterr()
    assert_exit_4_naming_the_link(run_template(example_root, out), capsys.readouterr().err, lock)
    assert_untouched(target)
    assert not out.exists()
    lock.unlink()
    lock.mkdir()
    assert run_template(example_root, out) == 4
    assert f"{lock} is a folder" in capsys.readouterr().err


def test_a_folder_where_the_journal_goes_is_refused_clearly(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    _killed_run(example_root, out)
    journal = partial(out) / "journal.jsonl"
    journal.unlink()
    journal.mkdir()
    capsys.readouterr()
    assert run_template(example_root, out) == 4
    err = capsys.readouterr().err
    assert f"{journal} is a folder" in err and "Traceback" not in err, err


def test_a_link_planted_at_staging_is_removed_not_followed(example_root, tmp_path, capsys):
    """``OUT.partial/staging`` is discarded before writing: a link there is removed, its target kept."""
    out = tmp_path / "out"
    _killed_run(example_root, out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text(VICTIM_TEXT)
    (partial(out) / "staging").symlink_to(elsewhere)
    assert run_template(example_root, out) == 0, capsys.readouterr().err
    assert (elsewhere / "keep.txt").read_text() == VICTIM_TEXT and sorted(os.listdir(elsewhere)) == ["keep.txt"]
    validate(out, source=example_root)


@pytest.mark.parametrize("at", ["the log", "the logs folder"])
def test_a_link_planted_at_a_server_log_is_refused(example_root, tmp_path, capsys, at):
    out = tmp_path / "out"
    servers = partial(out) / layout.SERVERS_NAME
    target = victim(tmp_path)
    if at == "the log":
        servers.mkdir(parents=True)
        link = servers / "server-0.log"
        link.symlink_to(target)
    else:
        partial(out).mkdir(parents=True)
        link = servers
        servers.symlink_to(tmp_path)  # a folder elsewhere: the log would be created in it
    pid_file = tmp_path / "pids"
    command = " ".join([sys.executable, str(STAND_IN), "--port", "{port}", "--model", "{model}", "--pid-file",
                        str(pid_file)])
    capsys.readouterr()
    rc = main(["--root", str(example_root), "--output-dir", str(out), "--serve-command", command, "--model",
               "tiny-pgen", "-q"])
    assert_exit_4_naming_the_link(rc, capsys.readouterr().err, link)
    assert_untouched(target)
    assert not (tmp_path / "server-0.log").exists()
    assert not pid_file.exists()  # refused before any server started
    assert not out.exists() and not (partial(out) / "run.json").exists()


def test_fsio_primitives_never_follow_a_link(tmp_path):
    target = victim(tmp_path)
    (tmp_path / "new").symlink_to(target)
    with pytest.raises(FileExistsError):
        fsio.write_new(tmp_path / "new", "x")
    with pytest.raises(FileExistsError):
        fsio.copy_new(target, tmp_path / "new")
    fsio.write_atomic(tmp_path / "new", "replaced")
    assert (tmp_path / "new").read_text() == "replaced" and not (tmp_path / "new").is_symlink()
    (tmp_path / "log").symlink_to(target)
    with pytest.raises(OSError) as e:
        fsio.open_append(tmp_path / "log")
    assert getattr(e.value, "exit_code", None) == 4
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="is a FIFO"):
        fsio.open_append(tmp_path / "fifo")  # and it did not hang waiting for a reader
    assert_untouched(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "log", "new", "victim.txt"]  # no temp left


# --- 2. lone surrogates -----------------------------------------------------------------------


LONE = "\ud800"


class SurrogateBackend:
    """Answers whose text holds lone surrogates (as JSON "\\ud800" decodes), built as a plugin backend
    may build them (no parser in between): every fourth sample a dialogue holding one, every other
    even one a clean dialogue, odd ones a failure whose raw text and reason hold one."""

    name = "surrogates"
    needs_images = False

    def describe(self) -> dict:
        return {"backend": self.name, "identity": {"backend": self.name}}

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        out = []
        for r in requests:
            s = r.sample
            if s.frame_index % 4 == 0:
                out.append(GenerationResult(s.sample_id, Dialogue(s.scenario_type, s.response_type,
                                                                  f"take it {LONE} now", f"ok \udfff {s.sample_id}")))
            elif s.frame_index % 2 == 0:
                out.append(GenerationResult(s.sample_id, Dialogue(s.scenario_type, s.response_type,
                                                                  "take it now", f"ok {s.sample_id}")))
            else:
                out.append(GenerationResult(s.sample_id, None, raw_text=f'{{"user_prompt": "{LONE}', error=f"bad {LONE}"))
        return out


def test_lone_surrogates_in_answers_become_failures_and_every_file_is_text(example_root, tmp_path):
    """Whichever backend made it, a dialogue holding a lone surrogate is a failure naming it; a raw
    answer's or a reason's one is kept as the text ``\\ud800``: every file of the result is UTF-8
    that strict readers (report, merge, --retry-failed) take back."""
    before = tree_hashes(example_root)
    out = tmp_path / "out"
    config = RunConfig(root=example_root, output_dir=out, backend="template")
    result = runner.run(config, backend=SurrogateBackend())
    assert result.state == "written" and result.ok and result.failed
    text = (out / layout.SYN_ANNOTATIONS_PATH).read_bytes().decode("utf-8")
    assert "\\ud800" not in text.replace("\\\\ud800", "")  # no JSON escape of a surrogate, only its text
    rows = [json.loads(line) for line in text.splitlines()]
    by_frame = {r["frame_index"] % 4: r for r in rows}
    assert by_frame[2]["status"] == "ok" and by_frame[2]["user_prompt"] == "take it now"
    assert by_frame[0]["status"] == "failed" and by_frame[0]["user_prompt"] is None
    assert by_frame[0]["error"] == "user_prompt holds a lone UTF-16 surrogate U+D800 at character 8"
    assert all(r["raw_text"].endswith("\\ud800") and r["error"] == "bad \\ud800"
               for r in rows if r["frame_index"] % 2 == 1)
    assert not any(textsafe.has_surrogate(json.dumps(r, ensure_ascii=False)) for r in rows)
    tasks = pd.read_parquet(out / layout.TASKS_PATH)
    assert "take it now" in set(tasks["user_prompt"].dropna()) and len(set(tasks.index)) == len(tasks)
    (out / layout.REPORT_PATH).read_bytes().decode("utf-8")
    (out / layout.CARD_PATH).read_bytes().decode("utf-8")
    validate(out, source=example_root)
    assert main(["report", str(out), "--output", str(tmp_path / "again.html")]) == 0
    assert tree_hashes(example_root) == before


def test_the_journal_keeps_a_lone_surrogate_losslessly_and_resumes(tmp_path):
    """Defence in depth: the journal writer encodes any string (a lone surrogate as its escape) and
    reads back the same records."""
    rec = JournalRecord(sample_id="s1", status="ok", episode_id="0", t=0, images=(), skill_current=f"pick {LONE}",
                        skill_history=(), task_description="t", user_prompt=f"take it {LONE} now",
                        robot_utterance="ok \udfff", scenario_type="direct_request", response_type="confirmation",
                        fingerprint="f")
    records = [rec, replace(rec, sample_id="s2", raw_text=f"raw {LONE}"), replace(rec, sample_id="s3")]
    journal = tmp_path / "j.jsonl"
    with JournalWriter(journal) as w:
        w.append(records[:2])
    with JournalWriter(journal) as w:
        w.append(records[2:])
    journal.read_bytes().decode("utf-8")  # valid UTF-8, whatever the strings held
    assert list(load_journal(journal).values()) == records


def _edit_json(path: Path, change) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))  # ensure_ascii: the surrogate is written as "\ud800"


@pytest.mark.parametrize("file,change,key", [
    ("meta/skills.json", lambda o: o["episodes"]["0"]["skills"][1].update(name=f"pick {LONE}up"),
     "episodes.0.skills[1].name"),
    ("meta/skills.json", lambda o: o["episodes"]["2"].update(description=f"\udc00{LONE}"), "episodes.2.description"),
    ("meta/info.json", lambda o: o.update(robot_type=f"so{LONE}"), "robot_type"),
    ("meta/info.json", lambda o: o["features"]["observation.state"].update(names=["a", f"b{LONE}"]),
     "features.observation.state.names[1]"),
])
def test_lone_surrogates_in_the_datasets_json_are_refused_naming_the_file_and_key(src, tmp_path, capsys, file,
                                                                                  change, key):
    _edit_json(src / file, change)
    before = tree_hashes(src)
    capsys.readouterr()
    rc = run_template(src, tmp_path / "out")
    err = capsys.readouterr().err
    assert rc == 3, err
    assert file in err and repr(key) in err and "holds a lone UTF-16 surrogate" in err, err
    assert "TIP: write the text as UTF-8" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not partial(tmp_path / "out").exists()
    assert tree_hashes(src) == before


def test_a_jsonl_line_with_a_lone_surrogate_is_that_lines_failure(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    good = {"episode_id": "e", "t": 0, "images": [str(tmp_path / "a.png")], "skill_current": "pick up",
            "skill_history": [], "task_description": "tidy"}
    lines = [json.dumps(good), json.dumps({**good, "skill_current": f"pick {LONE}"}),
             json.dumps({**good, "skill_history": ["x", "\udfffy"]})]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["--input-jsonl", str(tmp_path / "in.jsonl"), "--output-dir", str(tmp_path / "out"), "--backend",
                 "template", "--json"]) == 0
    failed = {f["sample_id"]: f["error"] for f in json.loads(capsys.readouterr().out)["failures"]}
    assert sorted(failed) == ["L000002", "L000003"]
    assert "'skill_current' holds a lone UTF-16 surrogate" in failed["L000002"]
    assert "'skill_history[1]' holds" in failed["L000003"]


# --- 3. the terminal ---------------------------------------------------------------------------


def crafted_dataset(root: Path) -> Path:
    """The example with control characters, bidi controls, a forged log line and markup in skill names,
    episode descriptions and task strings."""
    def skills(o: dict) -> None:
        s2t = o["skill_to_task_index"]
        s2t[EVIL_SKILL] = s2t.pop("pick up brick")
        s2t[FORGED_LINE] = s2t.pop("retract")
        for ep in o["episodes"].values():
            ep["description"] = EVIL_TASK
            for s in ep["skills"]:
                s["name"] = {"pick up brick": EVIL_SKILL, "retract": FORGED_LINE}.get(s["name"], s["name"])

    _edit_json(root / "meta/skills.json", skills)
    tasks = pd.read_parquet(root / layout.TASKS_PATH)
    tasks.index = pd.Index([f"{EVIL_TASK} #{i}" for i in range(len(tasks))], name=tasks.index.name)
    tasks.to_parquet(root / layout.TASKS_PATH)
    return root


ANSWER_REFUSED = "user_prompt holds the control character U+001B"  # an answer echoing a crafted name


def assert_shown_escaped(text: str, *, terminal: bool = False) -> None:
    """No crafted sequence acts; each is shown as its escape (with rich on a terminal, rich's own SGR
    colour codes are the only raw ESC). Where a run's answers echoed a crafted name, the answer itself
    is refused (the dataset would hold the ESC) and only the refusal is shown."""
    for seq in CRAFTED_SEQUENCES:
        assert seq not in text, (seq, text[-3000:])
    if not terminal:
        found = RAW_CONTROL.findall(text)
        assert not found, (found, text[-3000:])
    assert ("\\x1b]0;pwned\\x07" in text or "\\x1b[2J" in text or "\\u202e" in text
            or ANSWER_REFUSED in text or "ERROR forged line\\r::error::forged" in text), text[-3000:]
    assert not re.search(r"^\[hub-pgen 00:00:00\] ERROR forged", text, re.M)
    assert not re.search(r"^::error::", text, re.M)
    assert not re.search(r"\x1b]8;[^;]*;http://evil", text)  # rich markup in a name made no hyperlink


def test_crafted_names_reach_the_terminal_escaped(src, tmp_path):
    crafted_dataset(src)
    out = tmp_path / "out"
    plan = cli(["--root", str(src), "--output-dir", str(out), "--backend", "template", "--dry-run", "--show-prompt"])
    assert plan.returncode == 0, plan.stderr
    assert_shown_escaped(plan.stdout + plan.stderr)
    run = cli(["--root", str(src), "--output-dir", str(out), "--backend", "template", "-v"])
    assert run.returncode == 0, run.stderr
    assert_shown_escaped(run.stdout + run.stderr)
    assert "A few generated dialogues" in run.stdout and "WARNING" in run.stderr
    assert ANSWER_REFUSED in run.stdout and "ERROR forged line\\r::error::forged" in run.stdout + run.stderr
    as_json = cli(["--root", str(src), "--output-dir", str(out), "--backend", "template", "--json"])
    assert as_json.returncode == 0 and not RAW_CONTROL.search(as_json.stdout) and as_json.stdout.isascii()
    assert json.loads(as_json.stdout)["state"] == "already-complete"
    # a folder name (the output's, echoed everywhere) holding an ESC sequence and a line break
    odd = tmp_path / "odd\x1b[2J\nname"
    named = cli(["--root", str(src), "--output-dir", str(odd), "--backend", "template", "--json"])
    assert named.returncode == 0, named.stderr
    summary = json.loads(named.stdout)  # --json: the data as it is, escaped only by JSON
    assert summary["failures"] and all(ANSWER_REFUSED in f["error"] for f in summary["failures"]), summary["failures"]
    assert EVIL_SKILL not in {e["skill"] for e in summary["examples"]}, summary["examples"]
    named = cli(["--root", str(src), "--output-dir", str(odd), "--backend", "template"])
    assert named.returncode == 0, named.stderr
    assert "\x1b[2J" not in named.stdout + named.stderr and "odd\\x1b[2J\\nname" in named.stdout
    # an error whose message quotes the data: a skill with bad times
    _edit_json(src / "meta/skills.json", lambda o: o["episodes"]["0"]["skills"][1].update(end=-1))
    bad = cli(["--root", str(src), "--output-dir", str(tmp_path / "bad"), "--backend", "template"])
    assert bad.returncode == 3 and "hub-pgen: error:" in bad.stderr
    assert_shown_escaped(bad.stderr)


def _run_in_a_terminal(args: list[str], timeout: float = 240) -> tuple[int, str]:
    """hub-pgen with stdout and stderr on a pseudo-terminal (so the rich path runs), and all it wrote."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "LINES": "50", "TERM": "xterm-256color"}
    env.pop("GITHUB_ACTIONS", None)
    proc = subprocess.Popen([sys.executable, "-m", "hub_pgen", *args], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env=env, cwd=REPO)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def test_crafted_names_reach_a_real_terminal_escaped(src, tmp_path):
    """On a terminal rich draws the progress, the log and the summary table: nothing crafted acts there
    either, and console markup in a name (``[link=…]``) is shown, not obeyed."""
    crafted_dataset(src)
    rc, screen = _run_in_a_terminal(["--root", str(src), "--output-dir", str(tmp_path / "out"), "--backend",
                                     "template"])
    assert rc == 0, screen[-3000:]
    assert_shown_escaped(screen, terminal=True)
    assert "hub-pgen summary" in screen


def test_for_terminal_and_inline():
    assert for_terminal("a\x1b[2Jb\tc\nd\re\x7f\x85\u202e\u2066\ud800") == \
        "a\\x1b[2Jb\tc\nd\\re\\x7f\\x85\\u202e\\u2066\\ud800"
    assert inline("x\ny\tz") == "x\\ny\\tz"
    text = json_text({"k": "\x1b\x7f\u202e\ud800é"})
    assert text.isascii() and not RAW_CONTROL.search(text) and json.loads(text) == {"k": "\x1b\x7f\u202e\ud800é"}
    assert well_formed("a\ud800b\ud83d\ude00") == "a\ufffdb\U0001f600"


# --- 4. Markdown: the card and the job summary -------------------------------------------------


def _markdown(text: str):
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(text)


def _nodes(tokens) -> list:
    out = []
    for t in tokens:
        out.append(t)
        out += list(t.children or [])
    return out


def _table_rows(tokens) -> list[int]:
    """Body rows of each table, in order."""
    rows, counts, in_body = 0, [], False
    for t in tokens:
        if t.type == "tbody_open":
            in_body, rows = True, 0
        elif t.type == "tr_open" and in_body:
            rows += 1
        elif t.type == "tbody_close":
            in_body = False
            counts.append(rows)
        elif t.type == "table_close" and not counts[-1:] and not in_body:
            counts.append(0)
    return counts


def _record(i: int, text: str) -> JournalRecord:
    return JournalRecord(sample_id=f"s{i}", status="ok", episode_id="0", t=i, images=(), skill_current=text,
                         skill_history=(), task_description=text, user_prompt=text, robot_utterance=text + " reply",
                         scenario_type=text, response_type="confirmation", episode_index=0, frame_index=i)


def test_the_card_renders_model_and_dataset_text_as_text(tmp_path):
    prov = {"source": {"repo_id": "me/source", "sha": MARKDOWN_EVIL}, "tool": {"version": MARKDOWN_EVIL},
            "generation": {"backend": "template", "model": MARKDOWN_EVIL, "sampling": MARKDOWN_EVIL},
            "fingerprint": "abc", "counts": {"samples": 3, "ok": 3, "failed": 0, "new_tasks": 3},
            "mix": {"scenario_type": {MARKDOWN_EVIL: 2}, "response_type": {"confirmation": 3}},
            "quality": {"samples": 3, "distinct_dialogues": MARKDOWN_EVIL},
            "parameters": {"push_to": "me/new", "branch": "b`![x](http://host/b.png)`"}}
    card = render_card(prov, [_record(i, MARKDOWN_EVIL) for i in range(3)])
    tokens = _markdown(card.split("---", 2)[2])
    nodes = _nodes(tokens)
    assert not [n for n in nodes if n.type == "image"]
    links = [n.attrGet("href") for n in nodes if n.type == "link_open"]
    assert links == ["https://huggingface.co/datasets/me/source"]
    html = [n.content.strip() for n in nodes if n.type in ("html_inline", "html_block")]
    assert all(h.startswith(("<details>", "</details>")) for h in html), html  # the card's own, only
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["Synthetic user prompts and robot replies (Hi Robot `pgen`)", "Provenance", "Quality measures",
                        "Scenario and response mix (paper, appendix A.1)", "Examples", "Load it", "Review"], headings
    styled = [n.type for n in nodes if n.type in ("s_open", "em_open", "strong_open", "bullet_list_open",
                                                   "ordered_list_open", "code_block", "blockquote_open")]
    assert styled == ["bullet_list_open", "strong_open", "strong_open"], styled  # the mix list's own two
    rows = _table_rows(tokens)
    assert rows[0] == 13 and rows[-1] == 3, rows  # provenance: 13 rows; examples: one per ok record
    texts = "".join(n.content for n in nodes if n.type in ("text", "code_inline"))
    assert "![x](http://host/p.png)" in texts and "<script>alert('x')</script>" in texts  # shown, as text
    # a crafted result folder's provenance: a source repo id that is not one gets no link
    crafted = {**prov, "source": {"repo_id": "x/y](http://evil/) ![i](http://host/i.png"}}
    nodes = _nodes(_markdown(render_card(crafted, []).split("---", 2)[2]))
    assert not [n for n in nodes if n.type in ("image", "link_open")]


def test_the_front_matter_is_huggingface_hubs(result):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(result / layout.CARD_PATH)
    assert card.data.license == "other" and "hub-pgen" in card.data.tags
    assert card.data.configs == [{"config_name": "default", "data_files": "data/*/*.parquet"}]


def test_a_crafted_dataset_run_gives_a_card_whose_tables_hold(src, tmp_path):
    crafted_dataset(src)
    _edit_json(src / "meta/skills.json", lambda o: o["episodes"]["0"]["skills"][0].update(name=MARKDOWN_EVIL))
    _edit_json(src / "meta/skills.json", lambda o: o["skill_to_task_index"].update(
        {MARKDOWN_EVIL: o["skill_to_task_index"].pop("move towards brick")}))
    out = tmp_path / "out"
    assert run_template(src, out) == 0
    card = (out / layout.CARD_PATH).read_text()
    tokens = _markdown(card.split("---", 2)[2])
    nodes = _nodes(tokens)
    assert not [n for n in nodes if n.type == "image"] and not [n for n in nodes if n.type == "link_open"]
    examples = sum(1 for r in map(json.loads, (out / layout.SYN_ANNOTATIONS_PATH).read_text().splitlines())
                   if r["status"] == "ok")
    assert _table_rows(tokens)[-1] == min(8, examples)
    assert not RAW_CONTROL.search(card)  # controls shown as their escapes, as on a terminal (cat README.md)
    validate(out, source=src)


def test_the_job_summary_renders_model_and_server_text_as_text(tmp_path, monkeypatch):
    from dataclasses import replace

    rec = _record(0, MARKDOWN_EVIL)
    failed = replace(rec, status="failed", sample_id="`s1` ![i](http://host/i.png)", error=MARKDOWN_EVIL)
    result = runner.RunResult("written", tmp_path, "fp", samples=2, ok=1, failed=1, failures=(failed,),
                                mix={"scenario_type": {MARKDOWN_EVIL: 1}},
                                push=type("Push", (), {"url": "javascript:alert(1)//) ![i](http://h/i.png"})())
    config = RunConfig(root=tmp_path / MARKDOWN_EVIL.replace("/", "_").replace("\n", " "), push_to="me/new")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_step_summary(result, config)
    tokens = _markdown(summary.read_text())
    nodes = _nodes(tokens)
    assert not [n for n in nodes if n.type in ("image", "link_open", "html_inline", "html_block")]
    assert _table_rows(tokens)[0] == 10  # source … fingerprint, and pushed
    items = sum(1 for t in tokens if t.type == "list_item_open")
    assert items == 1  # the one failure, one line


def test_markdown_cell_round_trips_every_character():
    tokens = _markdown(f"| a |\n|---|\n| {for_markdown_cell(MARKDOWN_EVIL)} |\n")
    cell = next(t for t in tokens if t.type == "inline" and t.content != "a")
    shown = "".join(c.content for c in cell.children)
    assert shown == re.sub(r"[\r\n]+", " ", MARKDOWN_EVIL)
    assert {c.type for c in cell.children} <= {"text", "softbreak"}


# --- 5. a full disk while labelling -----------------------------------------------------------


class _FillsUp:
    """A journal on a disk that fills up: the second append writes half its bytes, then ENOSPC."""

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


@pytest.fixture
def unlabelled(example_root, tmp_path) -> Path:
    """The example without meta/skills.json (nor language columns): --skills auto labels it first."""
    root = Path(shutil.copytree(example_root, tmp_path / "unlabelled"))
    (root / layout.SKILLS_PATH).unlink()
    return root


@pytest.fixture
def labels_ref(unlabelled, tmp_path) -> Path:
    out = tmp_path / "labels-ref"
    assert main(["label", "--root", str(unlabelled), "--output-dir", str(out), "--backend", "template", "-q"]) == 0
    return out


def _same_labels(out: Path, ref: Path) -> None:
    for rel in (layout.SKILLS_PATH, layout.SKILL_ANNOTATIONS_PATH):
        assert (out / rel).read_bytes() == (ref / rel).read_bytes(), rel


def test_a_full_disk_while_labelling_keeps_the_labels_journal_and_the_rerun_resumes(unlabelled, labels_ref, tmp_path,
                                                                                     capsys, monkeypatch):
    out = tmp_path / "labels"
    args = ["label", "--root", str(unlabelled), "--output-dir", str(out), "--backend", "template", "--batch-size", "2"]
    monkeypatch.setattr(journal_mod, "open", lambda *a, **k: _FillsUp(open(*a, **k)), raising=False)
    capsys.readouterr()
    assert main([*args, "-q"]) == 4
    err = capsys.readouterr().err
    journal = partial(out) / layout.SKILLS_JOURNAL_NAME
    assert f"cannot append to the journal {journal}: No space left on device" in err and "TIP: free disk space" in err
    assert "Traceback" not in err and not out.exists()
    assert sorted(p.name for p in partial(out).iterdir()) == ["run.json", layout.SKILLS_JOURNAL_NAME]
    whole = journal.read_text().count("\n")
    assert 2 <= whole < 4  # the first batch whole, the second torn (or cut at a line's end)
    monkeypatch.undo()
    capsys.readouterr()
    assert main(args) == 0
    assert f"{whole} episode(s) labelled already, {6 - whole} to label" in capsys.readouterr().err
    _same_labels(out, labels_ref)
    assert not partial(out).exists()


def test_a_full_disk_while_writing_the_labels_keeps_the_journal(unlabelled, labels_ref, tmp_path, capsys,
                                                                 monkeypatch):
    from hub_pgen.run import label as label_mod

    real = fsio.write_new

    def full(path, data):
        if Path(path).name == "hub_pgen.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(label_mod.fsio, "write_new", full)
    out = tmp_path / "labels"
    args = ["label", "--root", str(unlabelled), "--output-dir", str(out), "--backend", "template"]
    capsys.readouterr()
    assert main([*args, "-q"]) == 4
    err = capsys.readouterr().err
    assert "cannot write the labels under" in err and "No space left on device" in err and "kept in its journal" in err
    assert sorted(p.name for p in partial(out).iterdir()) == ["run.json", layout.SKILLS_JOURNAL_NAME]  # no staging
    monkeypatch.undo()
    capsys.readouterr()
    assert main(args) == 0
    assert "6 episode(s) labelled already, 0 to label" in capsys.readouterr().err
    _same_labels(out, labels_ref)


def test_a_full_disk_while_auto_labels_a_dataset_without_skills(unlabelled, labels_ref, tmp_path, capsys,
                                                                monkeypatch):
    out = tmp_path / "out"
    args = ["--root", str(unlabelled), "--output-dir", str(out), "--backend", "template", "--batch-size", "2"]
    monkeypatch.setattr(journal_mod, "open", lambda *a, **k: _FillsUp(open(*a, **k)), raising=False)
    capsys.readouterr()
    assert main([*args, "-q"]) == 4
    err = capsys.readouterr().err
    assert "skills.jsonl: No space left on device" in err and "TIP: free disk space" in err, err
    assert sorted(p.name for p in partial(out).iterdir()) == ["run.json", layout.SKILLS_JOURNAL_NAME]
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["state"] == "written" and done["skills"]["source"] == "annotate"
    assert json.loads((out / layout.SKILLS_PATH).read_text()) == json.loads((labels_ref / layout.SKILLS_PATH).read_text())
    validate(out, source=unlabelled)


# --- beyond: names in the source ---------------------------------------------------------------


def test_a_source_file_named_with_a_line_break_and_an_escape_is_copied_and_shown_escaped(src, tmp_path):
    odd = src / "notes" / "a\nb\x1b[2Jc\u202e.txt"
    odd.parent.mkdir()
    odd.write_text("data")
    proc = cli(["--root", str(src), "--output-dir", str(tmp_path / "out"), "--backend", "template", "-v"])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "notes" / odd.name).read_text() == "data"
    assert not RAW_CONTROL.search(proc.stdout + proc.stderr)
