"""Issue 14 parts 2 and 4: quality measures that fire on a degenerate run and stay quiet on a sound
one, and your own prompt (--prompt-file): checked at start, part of the fingerprint, sent to the model."""

from __future__ import annotations

import json

import pytest

from hub_pgen.cli import main
from hub_pgen.data import JournalRecord
from hub_pgen.quality import is_degenerate, measure
from hub_pgen.testing.tiny_qwen import tiny_model_dir


def record(i: int, prompt: str, reply: str, skill: str = "pick up brick", episode: str = "0") -> JournalRecord:
    return JournalRecord(sample_id=f"s{i}", status="ok", episode_id=episode, t=i, images=(), skill_current=skill,
                         skill_history=(), task_description="", user_prompt=prompt, robot_utterance=reply,
                         scenario_type="direct_request", response_type="confirmation")


def cli_json(capsys, *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main([*argv, "--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out) if out.strip() else {}


def test_a_sound_template_run_raises_no_quality_alarm(example_root, tmp_path, capsys):
    rc, result = cli_json(capsys, "--root", str(example_root), "--output-dir", str(tmp_path / "o"),
                          "--backend", "template")
    assert rc == 0
    q = result["quality"]
    assert q["samples"] == 25 and q["degenerate"] == q["refusals"] == q["skill_copied"] == 0
    assert q["distinct_dialogues"] >= 20
    alarms = [n for n in result["notices"] if "distinct dialogues" in n or "degenerate" in n or "phrasing" in n]
    assert alarms == []
    card = (tmp_path / "o" / "README.md").read_text()
    assert "## Quality measures" in card and "| degenerate strings | 0 |" in card
    page = (tmp_path / "o" / "meta" / "hub_pgen_report.html").read_text(encoding="utf-8")
    assert 'class="alarm"' not in page and 'class="flag"' not in page
    assert json.loads((tmp_path / "o" / "meta" / "hub_pgen.json").read_text())["quality"] == q


def test_a_degenerate_tiny_model_run_is_called_out(example_root, tmp_path, capsys):
    """Random weights under the schema: valid JSON, garbage text — counted ok, and flagged."""
    tiny = tiny_model_dir(tmp_path / "tiny", "qwen2_vl")
    rc, result = cli_json(capsys, "--root", str(example_root), "--output-dir", str(tmp_path / "o"),
                          "--model", str(tiny), "--device", "cpu", "--batch-size", "8")
    assert rc == 0 and result["ok"] == 25
    assert result["quality"]["degenerate"] >= 20
    assert any("hold a degenerate string" in n for n in result["notices"])
    # the review page raises the same alarm and flags each degenerate dialogue on its card
    page = (tmp_path / "o" / "meta" / "hub_pgen_report.html").read_text(encoding="utf-8")
    assert page.count('class="alarm"') >= 1 and "dialogues hold a degenerate string" in page
    assert page.count('<span class="flag">degenerate text</span>') == result["quality"]["degenerate"]


def test_each_measure_fires_on_what_it_is_for():
    same = [record(i, "Please get it.", "Okay.") for i in range(12)]
    assert any("12 samples, 1 distinct dialogues" in a for a in measure(same).alarms())
    # the advice fits the sampling: segment sampling is not advised to a run that samples by segment
    assert any("or segment sampling" in a for a in measure(same).alarms("frame"))
    assert not any("segment sampling" in a for a in measure(same).alarms("segment"))
    refusing = [record(0, "Grab the brick.", "I'm sorry, but as an AI I cannot do that.")]
    assert measure(refusing).refusals == 1 and any("refusals" in a for a in measure(refusing).alarms())
    label = "robot arm picks up pink lego brick"
    parrot = [record(i, f"Now {label} please {i}", f"Sure {i}", skill=label) for i in range(4)]
    assert measure(parrot).skill_copied == 4 and any("copy the skill" in a for a in measure(parrot).alarms())
    short = [record(i, f"pick up brick now {i}", f"Sure {i}") for i in range(4)]  # a 3-word skill is plain English
    assert measure(short).skill_copied == 0
    near = [record(i, "could you please pick up the red brick from the table now", f"ok {i}") for i in range(4)]
    assert measure(near).near_duplicates == 3
    assert measure([record(i, f"r{i} x", f"y{i}", episode=str(i)) for i in range(3)]).near_duplicates == 0


@pytest.mark.parametrize("text, bad", [
    ("", True), (",", True), ("12 34", True), ("the the the the", True), ("k#R) 9x!@ z%Q&", True),
    ("Please pick up the brick.", False), ("Don't stop yet: move to the box!", False),
])
def test_degenerate_strings(text, bad):
    assert is_degenerate(text) is bad


def test_the_fast_measures_say_what_the_plain_formulas_say():
    """is_degenerate and the near-duplicate count made cheaper for a model's texts (each its own: 91 ->
    40 us a record at 60k records; issue 23) answer as the plain formulas do: every word matched by the
    regex, every Jaccard of the window computed — on random texts built to sit at the bars (9 of 10 words
    shared is 0.9 exactly; glued tokens; runs of a word in other cases; non-ASCII whitespace and case)."""
    import random
    import re

    from hub_pgen import quality

    word = re.compile(r"^[\"'(]*[A-Za-z][A-Za-z'-]*[.,!?;:\"')]*$")

    def plain_degenerate(text):
        words = text.split()
        if not words or not any(c.isalpha() for c in text):
            return True
        if sum(1 for w in words if word.match(w)) < 0.6 * len(words):
            return True
        if sum(len(w) for w in words) / len(words) > quality.MAX_MEAN_WORD_CHARS:
            return True
        run = 1
        for a, b in zip(words, words[1:]):
            run = run + 1 if a.lower() == b.lower() else 1
            if run >= 4:
                return True
        return False

    def plain_near(words, recent):
        return any(len(words & w) / len(words | w) >= quality.NEAR_DUPLICATE_JACCARD
                   for w in recent[-quality.NEAR_DUPLICATE_WINDOW:])

    rng = random.Random(23)
    vocab = ["the", "The", "THE", "brick", "cup,", "(red", "it's", "x9", "12", "!!", "İstanbul", "ǅ", "gluedtokenstogether",
             "a-b", "\"hi\"", "ß", "straße", "STRASSE"]
    spaces = [" ", "  ", "\t", "\u00a0", "\u2003", "\n"]
    for _ in range(3000):
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 9))]
        if words and rng.random() < 0.3:
            words[rng.randrange(len(words)):] = [rng.choice(["the", "The", "THE"])] * rng.randint(3, 5)
        text = "".join(w + rng.choice(spaces) for w in words)
        assert quality.is_degenerate(text) is plain_degenerate(text), text
    pool = [f"w{i}" for i in range(24)]
    for _ in range(3000):
        base = rng.sample(pool, rng.randint(1, 12))
        recent = []
        for _ in range(rng.randint(0, 60)):
            other = set(rng.sample(base, max(1, len(base) - rng.randint(0, 2))))
            other |= set(rng.sample(pool, rng.randint(0, 2)))
            recent.append(frozenset(other))
        words = frozenset(base)
        assert quality._near(words, recent) is plain_near(words, recent)


# --- --prompt-file and --show-prompt -----------------------------------------------------------------


def test_a_custom_prompt_changes_the_fingerprint_and_reaches_the_model(example_root, tmp_path, capsys, monkeypatch):
    from .openai_server import OpenAIServer

    monkeypatch.setenv("HUB_PGEN_RETRY_SCALE", "0.01")
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("MARKER-7: a user asks for {skill_current} while doing {task_description}. "
                      "Answer as JSON with scenario_type {scenario_type} and response_type {response_type}.")
    with OpenAIServer() as server:
        base = ["--root", str(example_root), "--backend", "openai", "--base-url", server.url, "--episodes", "0"]
        _, plain = cli_json(capsys, *base, "--dry-run")
        _, mine = cli_json(capsys, *base, "--dry-run", "--prompt-file", str(prompt))
        assert plain["fingerprint"] != mine["fingerprint"]
        rc, result = cli_json(capsys, *base, "--prompt-file", str(prompt), "--output-dir", str(tmp_path / "o"))
        assert rc == 0 and result["ok"] >= 1
        texts = [c["text"] for r in server.requests for c in r["body"]["messages"][0]["content"] if c["type"] == "text"]
    assert texts and all(t.startswith("MARKER-7: a user asks for ") for t in texts)
    prov = json.loads((tmp_path / "o" / "meta" / "hub_pgen.json").read_text())
    assert prov["parameters"]["prompt_file"] == "prompt.txt" and "prompt_template" not in prov["parameters"]


@pytest.mark.parametrize("text, message", [
    ("Skill {skill_current} and {oops}", "line 1, column 27: unknown placeholder {oops}"),
    ("Just {task_description}", "never names {skill_current}"),
    ("A literal { brace {skill_current}", "a '{' that opens no placeholder"),
    ('Answer {skill_current} as {"user_prompt": "..."}', "a literal brace (as in JSON) is written {{ or }}"),
])
def test_a_bad_prompt_file_stops_at_start(example_root, tmp_path, capsys, text, message):
    prompt = tmp_path / "p.txt"
    prompt.write_text(text)
    out = tmp_path / "o"
    assert main(["--root", str(example_root), "--output-dir", str(out), "--backend", "template", "--prompt-file",
                 str(prompt), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and "TIP:" in err and not out.exists()
    assert main(["--root", str(example_root), "--prompt-file", str(tmp_path / "missing.txt"), "-q"]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_show_prompt_prints_one_rendered_prompt_per_scenario_type(example_root, capsys):
    rc, result = cli_json(capsys, "--root", str(example_root), "--backend", "template", "--dry-run", "--show-prompt")
    prompts = result["plan_report"]["prompts"]
    assert rc == 0 and set(prompts) == set(result["plan_report"]["mix"]["scenario_type"])
    for scenario, shown in prompts.items():
        assert f'scenario_type "{scenario}"' in shown["prompt"] and shown["images"]
    assert main(["--root", str(example_root), "--backend", "template", "--show-prompt", "-q"]) == 2
    assert "--show-prompt goes with --dry-run" in capsys.readouterr().err


def test_filtered_samples_are_recorded_with_their_reason_and_keep_minus_one(example_root, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hub_pgen.write.validate import validate

    out = tmp_path / "o"
    rc, result = cli_json(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "template",
                          "--sampling", "frame", "--min-chars", "40", "--dedupe")
    assert rc == 0
    validate(out, source=example_root)
    records = [json.loads(x) for x in (out / "meta" / "syn_annotations.jsonl").read_text().splitlines()]
    filtered = [r for r in records if r["status"] == "filtered"]
    by_reason = result["filtered"]["by_reason"]
    assert len(filtered) == result["filtered"]["count"] > 0
    assert "repeats an earlier dialogue of its episode (--dedupe)" in by_reason
    assert set(by_reason) - {"repeats an earlier dialogue of its episode (--dedupe)"} <= {
        "user prompt shorter than --min-chars 40", "robot reply shorter than --min-chars 40",
        "user prompt and robot reply shorter than --min-chars 40"}
    for r in filtered:
        assert r["error"].startswith("filtered: ") and r["user_prompt"]  # the model's answer is kept
        if "min-chars" in r["error"]:  # the reason names the field that is short, and only it
            assert ("user prompt" in r["error"]) == (len(r["user_prompt"]) < 40)
            assert ("robot reply" in r["error"]) == (len(r["robot_utterance"]) < 40)
    table = pa.concat_tables([pq.read_table(p) for p in sorted((out / "data").glob("chunk-*/file-*.parquet"))])
    high = dict(zip(zip(table.column("episode_index").to_pylist(), table.column("frame_index").to_pylist()),
                    table.column("task_index_high_level").to_pylist()))
    events = dict(zip(zip(table.column("episode_index").to_pylist(), table.column("frame_index").to_pylist()),
                      table.column("language_events").to_pylist()))
    for r in filtered:
        assert high[(r["episode_index"], r["frame_index"])] == -1 and not events[(r["episode_index"], r["frame_index"])]
    assert result["frames_labelled"] == sum(1 for v in high.values() if v >= 0)
    assert json.loads((out / "meta" / "hub_pgen.json").read_text())["identity"]["filters"] == {
        "min_chars": 40, "dedupe": True, "drop_degenerate": False}


# --- --verify -------------------------------------------------------------------------------------------


def test_verify_reports_agreement_and_filters_what_the_verifier_reads_otherwise(example_root, tmp_path, capsys,
                                                                               monkeypatch):
    """A stand-in model that always answers the episode's first skill: right for the first segment of each
    episode, wrong for the others — the agreement and the filtered samples are exactly those."""
    from .openai_server import OpenAIServer

    monkeypatch.setenv("HUB_PGEN_RETRY_SCALE", "0.01")
    out = tmp_path / "o"
    with OpenAIServer() as server:
        rc, result = cli_json(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "openai",
                              "--base-url", server.url, "--verify", "filter")
        asked = [r["body"] for r in server.requests
                 if r["body"].get("response_format", {}).get("json_schema", {}).get("name") == "hub_pgen_verify"]
    assert rc == 0
    records = [json.loads(x) for x in (out / "meta" / "syn_annotations.jsonl").read_text().splitlines()]
    first = {}
    for r in sorted(records, key=lambda r: (r["episode_index"], r["frame_start"])):
        first.setdefault(r["episode_index"], r["skill_current"])
    right = [r for r in records if r["skill_current"] == first[r["episode_index"]]]
    v = result["verify"]
    assert len(asked) == v["checked"] == len(records) == 25
    assert all(not b["messages"][0]["content"][:-1] for b in asked)  # text only
    assert v["agree"] == len(right) and v["disagree"] == 25 - len(right) and v["unanswered"] == 0
    filtered = [r for r in records if r["status"] == "filtered"]
    assert len(filtered) == 25 - len(right)
    assert all(r["error"].startswith("filtered: the verifier read another skill: ") for r in filtered)
    assert result["filtered"]["count"] == len(filtered)
    # every verdict is recorded on its sample (what the verifier read), and the review page shows it
    for r in records:
        assert r["verified"] == {"skill": first[r["episode_index"]], "agrees": r in right}
    page = (out / "meta" / "hub_pgen_report.html").read_text(encoding="utf-8")
    assert page.count("(disagrees)</dd>") == 25 - len(right) and page.count("(agrees)</dd>") == len(right)
    # --dry-run prices it (the template backend asks no model, verifying or not)
    assert main(["--root", str(example_root), "--backend", "template", "--verify", "--dry-run", "--json",
                 "--output-dir", str(tmp_path / "d")]) == 0
    plan = json.loads(capsys.readouterr().out)["plan_report"]
    assert plan["model_calls"] == 0  # the template backend asks no model, verifying or not


def test_verify_with_the_template_backend_agrees_everywhere_and_is_part_of_the_configuration(example_root, tmp_path,
                                                                                            capsys):
    rc, result = cli_json(capsys, "--root", str(example_root), "--output-dir", str(tmp_path / "o"),
                          "--backend", "template", "--verify")
    assert rc == 0 and result["verify"]["agreement"] == 1.0 and result["verify"]["mode"] == "report"
    assert not result.get("filtered", {}).get("count")
    assert main(["--root", str(example_root), "--output-dir", str(tmp_path / "o"), "--backend", "template",
                 "-q"]) == 4  # another configuration
    for extra, message in ((("--num-shards", "2", "--shard-index", "1"), "a shard writes no dataset"),
                           (("--engine", "ray", "--workers", "1"), "--engine ray generates in its actors")):
        assert main(["--root", str(example_root), "--backend", "template", "--verify", *extra, "-q"]) == 2
        assert message in capsys.readouterr().err


def test_a_killed_verification_resumes_without_asking_twice(example_root, tmp_path):
    import os
    import subprocess
    import sys

    args = [sys.executable, "-m", "hub_pgen", "--root", str(example_root), "--backend", "template", "--verify",
            "--batch-size", "1", "--output-dir", str(tmp_path / "o"), "-q"]
    killed = subprocess.run(args, env={**os.environ, "HUB_PGEN_KILL_AT": "verify:3"}, capture_output=True, timeout=300)
    assert killed.returncode == -9
    assert len((tmp_path / "o.partial" / "verify.jsonl").read_text().splitlines()) == 3
    # 22 verdicts left: passing the point a 23rd time (asking one again) would kill this run too
    done = subprocess.run(args, env={**os.environ, "HUB_PGEN_KILL_AT": "verify:23"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    prov = json.loads((tmp_path / "o" / "meta" / "hub_pgen.json").read_text())
    assert prov["verify"]["checked"] == 25 and prov["verify"]["agree"] == 25
