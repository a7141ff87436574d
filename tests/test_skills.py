"""skills.json parsing: the defined behaviour for imperfect annotations, and clear errors."""


import pytest

from hub_pgen.errors import SkillsError
from hub_pgen.source.skills import load_skills, parse_skills


def _doc(episodes, **extra):
    return {"coarse_description": "pink lego brick into the box", "skill_to_task_index": {}, "episodes": episodes, **extra}


def _ep(i, skills, description="put the brick in the box"):
    return {"episode_index": i, "description": description, "skills": skills}


def test_parses_and_sorts_skills():
    raw = _doc({"0": _ep(0, [{"name": "b", "start": 1.0, "end": 2.0}, {"name": "a", "start": 0.0, "end": 1.0}])})
    sk = parse_skills(raw)
    assert [s.name for s in sk.episodes[0].skills] == ["a", "b"]
    assert [(n.kind, n.episode) for n in sk.notices] == [("skills not in time order in meta/skills.json "
                                                          "(sorted by start)", 0)]
    assert sk.coarse_description == "pink lego brick into the box"


def test_missing_description_is_none_and_coarse_kept():
    sk = parse_skills(_doc({"3": _ep(3, [{"name": "a", "start": 0, "end": 1}], description=None)}))
    assert sk.episodes[3].description is None


@pytest.mark.parametrize(
    "skill, fragment",
    [
        ({"name": "a", "start": 2.0, "end": 1.0}, "not after its start"),
        ({"name": "a", "start": 1.0, "end": 1.0}, "not after its start"),
        ({"name": "a", "start": -0.5, "end": 1.0}, "negative time"),
        ({"name": "", "start": 0, "end": 1}, "'name' must be a non-empty string"),
        ({"name": "a", "start": "0", "end": 1}, "'start' must be a finite number"),
        ({"name": "a", "start": 0, "end": float("nan")}, "'end' must be a finite number"),
        ({"name": "a", "start": 0}, "'end' must be a finite number"),
    ],
)
def test_bad_skill_names_episode_and_position(skill, fragment):
    with pytest.raises(SkillsError) as e:
        parse_skills(_doc({"7": _ep(7, [{"name": "ok", "start": 0, "end": 0.1}, skill])}), path="meta/skills.json")
    msg = str(e.value)
    assert fragment in msg and "episode 7" in msg and "skills[1]" in msg and "meta/skills.json" in msg


def test_unknown_episode_is_an_error():
    with pytest.raises(SkillsError, match=r"episode 9.*unknown episode.*0-2"):
        parse_skills(_doc({"9": _ep(9, [{"name": "a", "start": 0, "end": 1}])}), known_episodes={0, 1, 2})


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ([], "must be a JSON object"),
        ({"coarse_description": "x"}, "key 'episodes': missing"),
        (_doc([]), "must be an object keyed by episode index"),
        (_doc({"0": _ep(0, "nope")}), "key 'skills': missing or not a list"),
        (_doc({"0": {"episode_index": 1, "skills": []}}), "disagree"),
        (_doc({"x": {"skills": []}}), "disagree or are not integers"),
        ({"episodes": {}, "skill_to_task_index": {"a": "1"}}, "skill_to_task_index"),
    ],
)
def test_malformed_documents(raw, fragment):
    with pytest.raises(SkillsError, match=fragment):
        parse_skills(raw)


def test_file_errors(tmp_path):
    with pytest.raises(SkillsError, match="file not found") as e:
        load_skills(tmp_path / "skills.json")
    assert e.value.hint and "annotate" in e.value.hint
    bad = tmp_path / "bad.json"
    bad.write_text('{"episodes": {"0": ')
    with pytest.raises(SkillsError, match=r"not valid JSON \(line 1"):
        load_skills(bad)
    assert isinstance(e.value, ValueError)  # also a built-in


def test_overlap_beyond_rounding_warns():
    raw = _doc({"0": _ep(0, [{"name": "a", "start": 0, "end": 2.0}, {"name": "b", "start": 1.0, "end": 3.0}])})
    assert ["overlap" in n.kind for n in parse_skills(raw).notices] == [True]
    raw = _doc({"0": _ep(0, [{"name": "a", "start": 0, "end": 2.0004}, {"name": "b", "start": 2.0, "end": 3.0}])})
    assert parse_skills(raw).notices == ()


def test_notices_are_one_line_per_kind_with_a_count():
    from hub_pgen.notices import Notices

    notes = Notices()
    for e in range(9):
        notes.add("a skill ends past its episode's end", e, f"episode {e}: detail")
    notes.add("skills overlap", 4, "episode 4: a and b")
    lines = notes.lines()
    assert len(lines) == 2
    assert lines[0] == "a skill ends past its episode's end: 9 episode(s) (0, 1, 2, 3, 4, …); e.g. episode 0: detail"


def test_the_template_labeller_names_a_whole_episode_with_whole_clauses():
    """One span is the whole task; a task longer than a name may be is named by its leading clauses that
    fit, never a clause cut in two ("... in the transparent" was what a new user saw)."""
    from hub_pgen.skills.annotate import MAX_NAME_CHARS, _whole_clauses

    assert _whole_clauses("Pick up the pink lego brick and place it in the transparent box") == "pick up the pink lego brick"
    assert _whole_clauses("Put the pink brick into the transparent box, then move the arm back") == \
        "put the pink brick into the transparent box"
    assert _whole_clauses("pick up the cube") == "pick up the cube"
    long = "grasp " + "very " * 14 + "carefully"  # one clause: cut at a word, as short as a name must be
    assert len(_whole_clauses(long)) <= MAX_NAME_CHARS and _whole_clauses(long).startswith("grasp very")
