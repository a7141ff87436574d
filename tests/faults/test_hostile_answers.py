"""Issue 20, round 3 of hostile input: what a model's answer, a ``--prompt-file`` and the labeller's
answer can do. A server may send anything: the answer parser stays linear in the answer's length, holds
every answer to the bounds the schema states, refuses text that is not text, and a bad answer is a failed
sample (or a failed episode's labelling) with its reason and a bounded raw text, never exit 70. A prompt
file is checked and read, bounded, before any output folder exists. No test here times anything: a hang
is guarded by a subprocess timeout, the linear parse by counting JSON decodes.
The table of outcomes is docs/reliability.md ("Hostile input, round 3").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from hub_pgen.cli import main
from hub_pgen.data import GenerationRequest, Sample
from hub_pgen.errors import GenerationError
from hub_pgen.generate import parse
from hub_pgen.generate.layer import generate_with_retries
from hub_pgen.generate.parse import (
    DIALOGUE_ANSWER_CHARS,
    MAX_DECODES,
    extract_object,
    keep_raw,
    parse_dialogue,
)
from hub_pgen.generate.prompt import (
    PGEN_PROMPT_TEMPLATE,
    PROMPT_FILE_MAX_BYTES,
    construct_prompt,
    parse_template,
)
from hub_pgen.generate.schema import DEFAULT_BOUNDS, answer_limits, dialogue_schema, pattern_max_chars
from hub_pgen.generate.template import TemplateBackend
from hub_pgen.skills.annotate import (
    MAX_NAME_CHARS,
    EpisodeRequest,
    SegmentationError,
    finite_seconds,
    parse_segmentation,
)
from hub_pgen.skills.labelling import load_records
from hub_pgen.write.validate import validate

from ..contract import tree_hashes

try:
    from ..openai_server import OpenAIServer
except ImportError:  # run as a plain module
    from openai_server import OpenAIServer  # type: ignore[no-redef]

INTERNAL_ERROR = 70
GOOD = {"scenario_type": "negative_task", "response_type": "clarification",
        "user_prompt": "Don't drop it this time, just pick up the pink brick.",
        "robot_utterance": "Got it, I'll pick up the pink brick carefully."}
RAW = json.dumps(GOOD)


def refused(raw: str, **kw) -> GenerationError:
    with pytest.raises(GenerationError) as info:
        parse_dialogue(raw, **kw)
    err = info.value
    assert len(err.message) < 600, err.message  # a reason, never the answer itself
    assert err.raw_text is None or len(err.raw_text) <= DIALOGUE_ANSWER_CHARS + 200
    if err.raw_text is not None:
        err.raw_text.encode("utf-8")  # what the journal keeps always encodes
    return err


def with_field(**fields) -> str:
    return json.dumps({**GOOD, **fields})


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setenv("HUB_PGEN_RETRY_SCALE", "0.01")
    for var in ("OPENAI_API_KEY", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)


# --- 1. the parser is linear for any answer ---------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """Counts the JSON decodes the parser runs (each is linear in the span it decodes)."""
    calls = [0]
    real = parse._DECODER

    class Counting:
        def decode(self, text):
            calls[0] += 1
            return real.decode(text)

    monkeypatch.setattr(parse, "_DECODER", Counting())
    return calls


PATHOLOGICAL = {
    "braces": "{" * 24_000,
    "open-keys": '{"a":' * 4_800,
    "quote-brace": '"{' * 12_000,
    "empty-objects": "{}" * 12_000,
    "closers": "}" * 24_000 + "{",
    "nested-closed": '{"a":' * 2_400 + "1" + "}" * 2_400,
    "escapes": '{"a":"' + "\\" * 24_000,
    "objects-in-array": '[{"a":1},' * 2_400,
}


@pytest.mark.parametrize("raw", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_the_parse_runs_a_bounded_number_of_decodes_whatever_the_answer(raw, decodes):
    assert len(raw) <= DIALOGUE_ANSWER_CHARS
    with pytest.raises(GenerationError):
        parse_dialogue(raw)
    assert decodes[0] <= MAX_DECODES  # the old parser decoded from every '{': 24,000 attempts, quadratic


def test_an_answer_over_the_cap_is_refused_unread(decodes):
    raw = "{" * (DIALOGUE_ANSWER_CHARS + 1)  # 30,000 braces took 45 s an attempt before issue 20
    err = refused(raw)
    assert decodes[0] == 0
    assert f"the answer is {len(raw):,} characters; at most {DIALOGUE_ANSWER_CHARS:,} are read" in err.message
    assert err.raw_text.startswith("{" * 100) and f"{len(raw):,} characters" in err.raw_text


def test_a_megabyte_of_braces_parses_at_once_even_past_the_cap(tmp_path):
    """The scan itself is linear: 1 MB of each pathological answer, the cap lifted, in a subprocess that
    must finish (old-style the first alone would take hours)."""
    shapes = tmp_path / "shapes.json"
    shapes.write_text(json.dumps(PATHOLOGICAL))
    script = (
        "import json, sys\n"
        "from hub_pgen.generate.parse import extract_object\n"
        "from hub_pgen.errors import GenerationError\n"
        "shapes = json.load(open(sys.argv[1]))\n"
        "for unit in shapes.values():\n"
        "    text = (unit * (1_000_000 // len(unit) + 1))[:1_000_000]\n"
        "    try:\n"
        "        extract_object(text, max_chars=10**7)\n"
        "    except GenerationError:\n"
        "        pass\n"
        "print('done', len(shapes))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(shapes)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == f"done {len(PATHOLOGICAL)}", done.stderr


def test_prose_and_wrapping_still_parse():
    for raw in ("I think {maybe \"this: " + RAW, "\ufeff" + RAW, "[" + RAW + "]", "```json\n" + RAW + "\n```",
                '{"note": {"x": 1}} ' + RAW, "<think>{{{{</think>" + RAW, RAW.replace('"}', '",}')):
        assert parse_dialogue(raw).user_prompt == GOOD["user_prompt"], raw


# --- 2. answers are bounded by the schema's limits ---------------------------------------------------


@pytest.mark.parametrize("max_new_tokens", [200, 300, 400, 512, 4096])
def test_the_parser_enforces_the_bounds_the_schema_states(max_new_tokens):
    bounds = answer_limits(max_new_tokens, True)
    schema = dialogue_schema(["negative_task"], ["clarification"], **asdict(bounds))
    props = schema["properties"]
    assert pattern_max_chars(props["user_prompt"]["pattern"]) == bounds.max_prompt_chars
    assert pattern_max_chars(props["robot_utterance"]["pattern"]) == bounds.max_utterance_chars
    # no maxLength beside the pattern: outlines would build the string from maxLength alone
    assert "maxLength" not in props["user_prompt"] and "maxLength" not in props["robot_utterance"]
    for key, limit in (("user_prompt", bounds.max_prompt_chars), ("robot_utterance", bounds.max_utterance_chars)):
        fits = "P" + "a" * (limit - 1)
        assert getattr(parse_dialogue(with_field(**{key: fits}), bounds=bounds), key) == fits
        err = refused(with_field(**{key: fits + "a"}), bounds=bounds)
        assert err.message == f"{key} is {limit + 1:,} characters; the schema allows at most {limit}"


def test_unconstrained_answers_get_the_default_bounds():
    assert answer_limits(8, False) == answer_limits(4096, False) == DEFAULT_BOUNDS


def test_a_two_megabyte_dialogue_through_the_layer_is_a_failed_sample_with_a_bounded_raw_text():
    big = with_field(user_prompt="Please " + "pick up the cup " * 130_000)
    sample = Sample(sample_id="s0", episode_index=0, episode_id="0", frame_index=0, timestamp=0.0,
                    skill_current="pick up the cup", skill_history=(), task_description="t",
                    scenario_type="negative_task", response_type="clarification")
    calls = []
    results = generate_with_retries(lambda c: calls.append(c) or [big] * len(c),
                                    [GenerationRequest(sample, "p", (), 0)], temperature=0.0, max_retries=2)
    (r,) = results
    assert not r.ok and len(calls) == 3 and r.attempts == 3  # retried like any invalid answer
    assert r.error.startswith(f"the answer is {len(big):,} characters")
    assert len(r.raw_text) < DIALOGUE_ANSWER_CHARS + 200 and f"{len(big):,} characters" in r.raw_text


def test_keep_raw_keeps_short_answers_whole_and_long_ones_bounded():
    assert keep_raw(RAW) == RAW and keep_raw(None) is None
    kept = keep_raw("x" * 100_000, 1_000)
    assert kept.startswith("x" * 1_000) and "100,000 characters; the first 1,000 are kept" in kept
    assert keep_raw("a\ud800b") == "a\\ud800b"


# --- 3. text that is not text ----------------------------------------------------------------------


@pytest.mark.parametrize("raw, reason", [
    (with_field(user_prompt="Please \ud800 pick it up"), "user_prompt holds a lone UTF-16 surrogate U+D800"),
    (json.dumps({**GOOD, "user_prompt": "Please \udfff pick"}, ensure_ascii=False),
     "the answer holds a lone UTF-16 surrogate (U+DFFF)"),
    (RAW + " and \ud83d", "the answer holds a lone UTF-16 surrogate (U+D83D)"),  # raw, outside the JSON too
    (with_field(robot_utterance="Sure\x00, I will"), "robot_utterance holds the control character U+0000"),
    (with_field(user_prompt="Please \x1b[31mpick"), "the control character U+001B"),
    (with_field(user_prompt="Please pick\x7f"), "the control character U+007F"),
    (with_field(user_prompt="Please pick\x9b it"), "the control character U+009B"),
    (with_field(user_prompt="Please \u202epick"), "a bidirectional-text control U+202E"),
    (with_field(user_prompt="\ufeffPlease pick"), "a byte-order mark U+FEFF"),
])
def test_control_characters_and_lone_surrogates_are_refused(raw, reason):
    assert reason in refused(raw).message


def test_whitespace_of_any_kind_becomes_one_space():
    d = parse_dialogue(with_field(user_prompt="Please\tpick\x1fit\u2028up\x85now\r\n.",
                                  robot_utterance="Sure,\x0b\x0cI will."))
    assert d.user_prompt == "Please pick it up now ." and d.robot_utterance == "Sure, I will."
    assert parse_dialogue(with_field(robot_utterance="Sure 😀 I will")).robot_utterance == "Sure 😀 I will"


# --- go beyond: what else a crafted answer tries ------------------------------------------------------


@pytest.mark.parametrize("raw, reason", [
    (RAW[:-1] + ', "user_prompt": "Please do"}', "gives key 'user_prompt' twice"),
    (RAW[:-1] + ', "User Prompt": "Please do"}', "gives user_prompt twice (as 'user_prompt' and 'User Prompt')"),
    (RAW[:-1] + ', "x": NaN}', "NaN, which is not a number"),
    (RAW[:-1] + ', "x": -Infinity}', "-Infinity, which is not a number"),
    (RAW[:-1] + ', "x": 1e999}', "1e999 is out of range"),
    (RAW[:-1] + ', "x": ' + "9" * 400 + "}", "an integer of 400 digits"),
    (RAW[:-1] + ', "x": ' + "[" * 5_000 + "]" * 5_000 + "}", "nested too deeply"),
    (with_field(scenario_type="x" * 20_000), "is not a known type"),
    (json.dumps({f"k{i}": i for i in range(1_500)}), "lacks key(s)"),
    (with_field(user_prompt=["Please"]), "user_prompt must be a string"),
    (with_field(robot_utterance=None), "robot_utterance must be a string"),
])
def test_crafted_answers_are_refused_with_a_short_reason(raw, reason):
    assert reason in refused(raw).message


# --- 4. --prompt-file -------------------------------------------------------------------------------


def cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(list(argv))
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("line, message", [
    ("Write for {skill_current:d} now", "line 2, column 11: {skill_current:d} is not a plain placeholder"),
    ("Write for {skill_current!r} now", "{skill_current!r} is not a plain placeholder"),
    ("Write for {skill_current.__class__} now", "{skill_current.__class__} is not a plain placeholder"),
    ("Write for {skill_current[0]} now", "{skill_current[0]} is not a plain placeholder"),
    ("Write for {x[0]} now", "line 2, column 11: {x[0]} is not a placeholder"),
    ("Write for {a{b}} now", "line 2, column 11: a '{' that opens no placeholder"),
    ("Write for {nope} now", "line 2, column 11: unknown placeholder {nope}"),
    ("Write for { now", "line 2, column 11: a '{' that opens no placeholder"),
    ("Write for } now", "line 2, column 11: a lone '}'"),
    ('Answer as {"user_prompt": "..."}', "is not a placeholder; a literal brace (as in JSON) is written {{ or }}"),
])
def test_a_prompt_file_with_anything_but_plain_placeholders_exits_2_before_any_output(example_root, tmp_path,
                                                                                      capsys, line, message):
    prompt = tmp_path / "p.txt"
    prompt.write_text(f"The skill is {{skill_current}}.\n{line}\n")
    out = tmp_path / "out"
    rc, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "template", "-q",
                  "--prompt-file", str(prompt))
    assert rc == 2 and message in err and "TIP:" in err and "Traceback" not in err, err
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_rendering_evaluates_nothing_and_matches_str_format_on_the_builtin_template():
    values = {"num_images": 2, "task_description": "put {skill_current.__class__} away", "skill_history": "a; b",
              "skill_current": "pick {0}", "scenario_type": "s", "scenario_description": "sd", "response_type": "r",
              "response_description": "rd"}
    assert parse_template(PGEN_PROMPT_TEMPLATE).render(values) == PGEN_PROMPT_TEMPLATE.format(**values)
    text = construct_prompt({"skill_current": "pick {num_images}", "task_description": "{skill_current.__class__}"},
                            "Do {skill_current} for {task_description}; {{literal}}")
    assert text == "Do pick {num_images} for {skill_current.__class__}; {literal}"


def prompt_run(src: Path, out: Path, prompt: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub_pgen", "--root", str(src), "--output-dir", str(out),
                           "--backend", "template", "-q", "--prompt-file", prompt],
                          capture_output=True, text=True, timeout=timeout)


def test_a_prompt_file_that_is_no_text_file_exits_2_at_once(example_root, tmp_path, capsys):
    """A FIFO and /dev/zero in a subprocess with a timeout: a blocking or endless read fails the test
    instead of hanging it."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    for path, message in ((str(fifo), "is a FIFO, not a text file"),
                          ("/dev/zero", "is a character device, not a text file")):
        done = prompt_run(example_root, out, path)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    big = tmp_path / "big.txt"
    big.write_text("{skill_current} " + "x" * PROMPT_FILE_MAX_BYTES)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("{skill_current}\ncaf\u00e9\n".encode("latin-1"))
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"{skill_current}\n\x00\x00")
    for path, message in ((tmp_path, "is a folder, not a text file"),
                          (big, f"is {big.stat().st_size:,} bytes; a prompt file holds at most {PROMPT_FILE_MAX_BYTES:,}"),
                          (latin, "is not UTF-8 text (byte 0xe9 on line 2)"),
                          (nul, "holds a NUL byte (line 2)"),
                          (tmp_path / "missing.txt", "cannot be read (No such file or directory)")):
        rc, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "template", "-q",
                      "--prompt-file", str(path))
        assert rc == 2 and message in err and "TIP:" in err, err
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_a_prompt_file_with_a_byte_order_mark_is_read(example_root, tmp_path, capsys):
    prompt = tmp_path / "bom.txt"
    prompt.write_bytes("\ufeffWrite a request for {skill_current}.".encode())
    rc, err = cli(capsys, "--root", str(example_root), "--backend", "template", "--dry-run", "-q",
                  "--prompt-file", str(prompt))
    assert rc == 0, err


# --- end to end: a server that sends anything ------------------------------------------------------


def _answer_for(kind: str):
    def answer(body):
        props = body["response_format"]["json_schema"]["schema"]["properties"]
        d = {**GOOD, "scenario_type": props["scenario_type"]["enum"][0],
             "response_type": props["response_type"]["enum"][0]}
        if kind == "2 MB dialogue":  # past the transport's guard (256 characters a token of --max-new-tokens)
            return json.dumps({**d, "user_prompt": "Please " + "pick up the cup " * 130_000})
        if kind == "50 kB dialogue":  # under that guard, past what the schema allows
            return json.dumps({**d, "user_prompt": "Please " + "pick up the cup " * 3_200})
        if kind == "lone surrogate":  # sent as the JSON escape \ud800: the client's decoder makes it a raw one
            return json.dumps({**d, "user_prompt": "Please \ud800 pick"}, ensure_ascii=False)
        if kind == "NUL":
            return json.dumps({**d, "robot_utterance": "Sure\x00 I will"})
        if kind == "30,000 braces":
            return "{" * 30_000
        raise ValueError(kind)
    return answer


@pytest.mark.parametrize("kind, reason", [
    ("2 MB dialogue", "server answered 2,080,1"),
    ("50 kB dialogue", "characters; at most 24,480 are read"),
    ("lone surrogate", "lone UTF-16 surrogate (U+D800)"),
    ("NUL", "robot_utterance holds the control character U+0000"),
    ("30,000 braces", "the answer is 30,000 characters"),
])
def test_a_hostile_server_gives_failed_samples_never_exit_70(example_root, tmp_path, capsys, kind, reason):
    before = tree_hashes(example_root)
    out = tmp_path / "out"
    with OpenAIServer() as server:
        server.answer = _answer_for(kind)
        rc, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "openai",
                      "--base-url", server.url, "--episodes", "0", "--max-retries", "1", "-q")
        asked = len(server.requests)
    assert rc == 8 != INTERNAL_ERROR and "Traceback" not in err, err  # 8: no sample usable
    records = [json.loads(line) for line in (out / "meta" / "syn_annotations.jsonl").read_text().splitlines()]
    # each sample tried twice (--max-retries 1), but for a server that ignores the token budget: asking
    # it again would get the same, so that answer is a failure at once (docs/reliability.md)
    tries = 1 if kind == "2 MB dialogue" else 2
    assert records and asked == tries * len(records)
    for r in records:
        assert r["status"] == "failed" and reason in r["error"] and r["attempts"] == tries, r
        assert len(r["raw_text"] or "") <= DIALOGUE_ANSWER_CHARS + 200  # the guard keeps none of it
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 5_000_000  # was 63 MB for 4 samples
    validate(out, source=example_root)
    assert tree_hashes(example_root) == before


# --- 5. the labeller --------------------------------------------------------------------------------

REQ = EpisodeRequest(episode_index=0, task="pick the cube", times=(0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
                     frames=(0, 15, 30, 45, 60, 75, 90), end=3.1, min_seconds=1.0)


def spans(*items) -> str:
    return json.dumps({"skills": [dict(zip(("name", "start", "end"), it)) for it in items]})


def spans_raw(start: str, end: str, name: str = '"reach"') -> str:
    return f'{{"skills": [{{"name": {name}, "start": {start}, "end": {end}}}]}}'


@pytest.mark.parametrize("answer, reason", [
    (spans_raw("0", "9" * 400), "an integer of 400 digits"),  # was: int too large for float, exit 70
    (spans_raw("0", "NaN"), "NaN, which is not a number"),
    (spans_raw("-Infinity", "3.1"), "-Infinity, which is not a number"),
    (spans_raw("0", "1e999"), "1e999 is out of range"),
    (spans_raw("0", "1e308"), "skills[0].end is 1e+308 s: no episode is that long"),
    (spans_raw("0", "10000000000"), "skills[0].end is 10000000000 s: no episode is that long"),
    (spans_raw("false", "true"), "skills[0].start must be a number of seconds, got bool False"),
    (spans_raw('"0"', "1"), "skills[0].start must be a number of seconds, got str '0'"),
    (spans_raw("null", "1"), "skills[0].start must be a number of seconds, got NoneType None"),
    (spans_raw("0", "3.1", '"reach\\u0000 it"'), "skills[0].name holds the control character U+0000"),
    (spans_raw("0", "3.1", '"reach \\ud800"'), "skills[0].name holds a lone UTF-16 surrogate"),
    (spans_raw("0", "3.1", '"' + "a" * 1_000_000 + '"'), "at most 14,160 are read"),
    (spans(*[("reach", 0.0, 1.0)] * 300), "the answer has 300 skills; this episode allows at most 3"),
    (spans(*[("reach", 0.0, 1.0)] * 5_000), "the answer is 225,012 characters; at most 14,160 are read"),
    (spans(("reach", 0.0, 3.1)) + "[" * 100_000, "at most 14,160 are read"),
    ('{"skills": [' + "[" * 3_000 + "]" * 3_000 + "]}", "nested too deeply"),
    ('{"skills": 1, "skills": [{"name": "a", "start": 0, "end": 1}]}', "gives key 'skills' twice"),
])
def test_a_bad_labelling_answer_is_refused_with_a_reason(answer, reason):
    with pytest.raises(SegmentationError) as info:
        parse_segmentation(answer, REQ)
    assert reason in str(info.value) and len(str(info.value)) < 400, str(info.value)


@pytest.mark.parametrize("answer, skills, repair", [
    (spans(("reach", -5, 1.5), ("grasp", 1.5, 3.1)), [("reach", 0.0, 1.5), ("grasp", 1.5, 3.1)],
     "a time outside the episode clipped to it"),
    (spans(("reach", 0, 1.5), ("grasp", 1.5, 1e6)), [("reach", 0.0, 1.5), ("grasp", 1.5, 3.1)],
     "a time outside the episode clipped to it"),
    (spans(("reach", 0, 1.5), ("gone", 50, 60)), [("reach", 0.0, 3.1)], "a span that ends where it starts dropped"),
    (spans(("grasp", 1.0, 3.1), ("reach", 0.0, 2.0)), [("reach", 0.0, 1.0), ("grasp", 1.0, 3.1)],
     "skills sorted by start"),
    (spans(("a" * 500, 0, 3.1)), [("a" * MAX_NAME_CHARS, 0.0, 3.1)], "name shortened"),
])
def test_what_can_be_repaired_is_repaired_and_said(answer, skills, repair):
    got, repairs = parse_segmentation(answer, REQ)
    assert [(s.name, s.start, s.end) for s in got] == skills and repair in repairs


def test_finite_seconds_is_the_one_gate_for_times():
    assert finite_seconds(3, "t") == 3.0 and finite_seconds(-0.5, "t") == -0.5
    for bad in (True, "1", None, [1], float("nan"), float("inf"), 10**400, -1e300):
        with pytest.raises(SegmentationError):
            finite_seconds(bad, "t")


def test_a_damaged_labelling_journal_line_is_asked_again_not_trusted(tmp_path):
    good = {"sample_id": "ep000000-skills", "episode_index": 0, "status": "ok", "fingerprint": "f",
            "skills": [{"name": "reach", "start": 0.0, "end": 3.1}]}
    bad = [
        {**good, "episode_index": 1, "skills": [{"name": "reach", "start": 0, "end": 10**400}]},
        {**good, "episode_index": 2, "skills": [{"name": "reach", "start": 0, "end": float("nan")}]},
        {**good, "episode_index": 3, "skills": [{"name": "reach", "start": 2, "end": 1}]},
        {**good, "episode_index": 4, "skills": [{"name": "re\x00ach", "start": 0, "end": 1}]},
        {**good, "episode_index": True},
        {**good, "episode_index": 5, "status": "weird"},
        {**good, "episode_index": 6, "skills": "none"},
    ]
    lines = [json.dumps(good)] + [json.dumps(b) for b in bad] + ["[" * 100_000, "1" * 5_000, '"text"']
    path = tmp_path / "skills.jsonl"
    path.write_text("\n".join(lines) + "\n")
    records = load_records(path, fingerprint="f")
    assert list(records) == [0] and records[0].episode_skills().skills[0].end == 3.1


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory) -> Path:
    from hub_pgen.example import ExampleSpec, build_example_dataset

    return build_example_dataset(tmp_path_factory.mktemp("unlabelled") / "ds",
                                 ExampleSpec(n_episodes=2, frames_per_episode=45, skills="none"))


def test_a_labelling_server_that_sends_a_400_digit_time_fails_the_episode_never_exit_70(unlabelled, tmp_path,
                                                                                         capsys):
    def answer(body):
        if body["response_format"]["json_schema"]["name"] == "hub_pgen_skills":
            return '{"skills":[{"name":"pick it","start":0,"end":' + "9" * 400 + "}]}"
        raise ValueError("no dialogue is asked when no episode has skills")

    out = tmp_path / "out"
    with OpenAIServer() as server:
        server.answer = answer
        rc, err = cli(capsys, "--root", str(unlabelled), "--output-dir", str(out), "--backend", "openai",
                      "--base-url", server.url, "--skills", "annotate", "--max-retries", "1", "-q")
    assert rc == 3 != INTERNAL_ERROR and "labelled no usable skills" in err and "Traceback" not in err, err
    journal = Path(f"{out}.partial") / "skills.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["status"] for r in records] == ["failed", "failed"] and [r["attempts"] for r in records] == [2, 2]
    assert all("an integer of 400 digits" in r["error"] and len(r["raw_text"]) < 1_000 for r in records)


# --- the template backend holds its dialogues to the same rules ---------------------------------------


def test_the_template_backend_records_a_dialogue_that_breaks_the_rules_as_failed():
    def req(skill: str) -> GenerationRequest:
        return GenerationRequest(Sample(sample_id=f"s{len(skill)}", episode_index=0, episode_id="0", frame_index=0,
                                        timestamp=0.0, skill_current=skill, skill_history=(), task_description="t",
                                        scenario_type="direct_request", response_type="confirmation"), "", (), 0)

    ok, nul, long = TemplateBackend().generate([req("pick up the cube"), req("pick up\x00 the cube"),
                                                req("pick up " + "the cube " * 40)])
    assert ok.ok
    assert not nul.ok and "holds the control character U+0000" in nul.error
    assert not long.ok and "characters; the schema allows at most" in long.error


def test_extract_object_has_one_cap_per_schema():
    raw = spans(("reach", 0.0, 3.1))
    assert extract_object(raw, max_chars=len(raw)) == json.loads(raw)
    with pytest.raises(GenerationError, match="at most 10 are read"):
        extract_object(raw, max_chars=10)
