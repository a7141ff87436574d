"""Parsing and validating raw pgen answers (hub_pgen.generate.parse) and the constrained schema."""

import json
import re

import pytest

from hub_pgen.errors import GenerationError
from hub_pgen.generate.constrained import dialogue_schema, string_pattern
from hub_pgen.generate.parse import extract_object, parse_dialogue

GOOD = {
    "scenario_type": "negative_task",
    "response_type": "clarification",
    "user_prompt": "Don't drop it this time, just pick up the pink brick.",
    "robot_utterance": "Got it, I'll pick up the pink brick carefully.",
}
RAW = json.dumps(GOOD)


def assert_good(d, scenario="negative_task", response="clarification"):
    assert (d.scenario_type, d.response_type) == (scenario, response)
    assert d.user_prompt == GOOD["user_prompt"] and d.robot_utterance == GOOD["robot_utterance"]


@pytest.mark.parametrize(
    "raw",
    [
        RAW,
        json.dumps(GOOD, indent=2),
        f"```json\n{RAW}\n```",
        f"```\n{RAW}\n```",
        f"Sure! Here is the JSON you asked for:\n{RAW}\nLet me know if you need more.",
        f"<think>The user wants a negative task {{maybe}}.</think>\n{RAW}",
        RAW.replace('"}', '",}'),  # trailing comma
        json.dumps(GOOD, indent=2).replace('"\n}', '",\n}'),
        f"```json\n{RAW}",  # unterminated fence
        '{"note": "ignore me"} ' + RAW,  # an unrelated object before the answer
        RAW + ' {"scenario_type": "direct_request"}',  # a later partial object is ignored
        json.dumps({**GOOD, "extra": 1}),  # extra keys are tolerated
        json.dumps(
            {
                "Scenario Type": "Negative Task",
                "response-type": "CLARIFICATION",
                "user_prompt": GOOD["user_prompt"],
                "Robot_Utterance": GOOD["robot_utterance"],
            }
        ),
    ],
    ids=[
        "plain",
        "indented",
        "fence-json",
        "fence",
        "prose",
        "think",
        "trailing-comma",
        "trailing-comma-indent",
        "open-fence",
        "other-object-first",
        "later-object",
        "extra-key",
        "key-and-type-spelling",
    ],
)
def test_wrapped_answers_parse(raw):
    assert_good(parse_dialogue(raw, scenario_type="negative_task", response_type="clarification"))


def test_whitespace_is_collapsed_to_one_line():
    raw = json.dumps({**GOOD, "user_prompt": "  Don't drop it\nthis   time, just pick up the pink brick. "})
    assert parse_dialogue(raw).user_prompt == GOOD["user_prompt"]


def test_without_assigned_types_any_known_type_passes():
    d = parse_dialogue(json.dumps({**GOOD, "scenario_type": "implicit_request"}))
    assert d.scenario_type == "implicit_request"


@pytest.mark.parametrize(
    "raw, needle",
    [
        ("", "empty answer"),
        ("   \n", "empty answer"),
        ("I cannot help with that.", "no JSON object"),
        (
            '{"scenario_type": "negative_task", "response_type": "clarification", "user_prompt": "Don\'t dro',
            "cut off before its closing brace",
        ),
        ('{"scenario_type": negative_task}', "malformed JSON"),
        ("[1, 2, 3]", "no JSON object"),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "robot_utterance"}),
            "lacks key(s) robot_utterance",
        ),
        (json.dumps({**GOOD, "user_prompt": ""}), "user_prompt is empty"),
        (json.dumps({**GOOD, "user_prompt": "   "}), "user_prompt is empty"),
        (json.dumps({**GOOD, "robot_utterance": "..."}), "placeholder"),
        (json.dumps({**GOOD, "user_prompt": 3}), "user_prompt must be a string"),
        (json.dumps({**GOOD, "robot_utterance": ["a"]}), "robot_utterance must be a string"),
        (json.dumps({**GOOD, "scenario_type": "chit_chat"}), "not a known type"),
        (json.dumps({**GOOD, "response_type": "refusal"}), "not a known type"),
        (json.dumps({**GOOD, "scenario_type": "direct_request"}), "assigned 'negative_task'"),
        (json.dumps({**GOOD, "response_type": "confirmation"}), "assigned 'clarification'"),
    ],
    ids=[
        "empty",
        "blank",
        "never-json",
        "truncated",
        "malformed",
        "array",
        "missing-key",
        "empty-string",
        "blank-string",
        "placeholder",
        "number",
        "list",
        "unknown-scenario",
        "unknown-response",
        "wrong-scenario",
        "wrong-response",
    ],
)
def test_bad_answers_raise_with_reason_and_raw_text(raw, needle):
    with pytest.raises(GenerationError) as info:
        parse_dialogue(raw, scenario_type="negative_task", response_type="clarification")
    assert needle in str(info.value)
    assert info.value.raw_text == raw


def test_error_message_quotes_a_bounded_excerpt():
    raw = "no json " * 200
    with pytest.raises(GenerationError) as info:
        parse_dialogue(raw)
    assert len(str(info.value)) < 400 and info.value.raw_text == raw


def test_extract_object_prefers_the_one_with_dialogue_keys():
    assert extract_object('{"a": 1} and {"user_prompt": "x"}') == {"user_prompt": "x"}
    assert extract_object('text {"a": 1} more') == {"a": 1}


def test_braces_inside_strings_do_not_confuse_the_scanner():
    raw = "prefix " + json.dumps({**GOOD, "user_prompt": "Put the {red} block, then the } one."}) + " suffix"
    assert parse_dialogue(raw).user_prompt == "Put the {red} block, then the } one."


# --- the constrained-decoding schema ------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 40, 128, 129, 240, 300])
def test_string_pattern_bounds_length_and_forbids_escapes(n):
    pattern = re.compile(string_pattern(n))
    assert pattern.match("a" * n) and not pattern.match("a" * (n + 1)) and not pattern.match("")
    for bad in ('say "hi"', "back\\slash", "new\nline", "tab\there"):
        assert not pattern.match(bad)
    # printable ASCII only: one byte a character, so the bound in characters is a bound in bytes (tokens)
    assert pattern.match("ASCII is fine: ok! (100%) [x] {y} ~"[:n])
    assert not pattern.match("Ü") and not pattern.match("—") and not pattern.match("\x7f")
    assert not pattern.match(",") and not pattern.match(" hi")  # a letter first: no '","' answers
    # xgrammar#863: no single bounded repeat above 128
    assert all(int(m) <= 128 for m in re.findall(r",(\d+)\}", string_pattern(n)))


def test_schema_pins_assigned_types_and_requires_all_keys():
    schema = dialogue_schema(["negative_task"], ["clarification"])
    assert schema["properties"]["scenario_type"]["enum"] == ["negative_task"]
    assert schema["properties"]["response_type"]["enum"] == ["clarification"]
    assert schema["required"] == ["scenario_type", "response_type", "user_prompt", "robot_utterance"]
    assert schema["additionalProperties"] is False
    with pytest.raises(ValueError):
        dialogue_schema([], ["clarification"])


@pytest.mark.parametrize("text", [",", "...!?", "  ;  "])
def test_a_prompt_or_reply_without_words_is_not_an_answer(text):
    with pytest.raises(GenerationError, match="has no words"):
        parse_dialogue(json.dumps({**GOOD, "user_prompt": text}))
    with pytest.raises(GenerationError, match="has no words"):
        parse_dialogue(json.dumps({**GOOD, "robot_utterance": text}))
