from hub_pgen.data import GenerationRequest, Sample
from hub_pgen.generate.prompt import PGEN_PROMPT_TEMPLATE, construct_prompt, prompt_template_hash
from hub_pgen.generate.template import TemplateBackend, imperative
from hub_pgen.plan.taxonomy import RESPONSE_TYPES, SCENARIO_TYPES


def sample(i=0, scenario="negative_task", response="clarification"):
    return Sample(sample_id=f"ep000000-f{i:06d}", episode_index=0, episode_id="0", frame_index=i, timestamp=i / 30,
                  skill_current="robot arm picks up pink lego brick", skill_history=("robot arm moves towards pink lego brick",),
                  task_description="pink lego brick into the transparent box", scenario_type=scenario, response_type=response)


def test_imperative():
    assert imperative("robot arm picks up pink lego brick") == "pick up pink lego brick"
    assert imperative("robot arm approaches transparent box") == "approach transparent box"
    assert imperative("Robot releases the brick.") == "release the brick"


def test_template_is_deterministic_varied_and_names_the_skill():
    b = TemplateBackend()
    reqs = [GenerationRequest(sample(i, s, r), "", (), 0) for i, (s, r) in
            enumerate((s, r) for s in SCENARIO_TYPES for r in RESPONSE_TYPES)]
    out = b.generate(reqs)
    assert out == b.generate(reqs)
    assert all(r.ok and "pick up pink lego brick" in r.dialogue.robot_utterance for r in out)
    assert [r.dialogue.scenario_type for r in out] == [q.sample.scenario_type for q in reqs]
    assert len({r.dialogue.task_string for r in out}) > len(out) // 2


def test_prompt_carries_all_context_and_seed_wording():
    p = construct_prompt(sample())
    for piece in ("robot-assistant dialogue generator", "pink lego brick into the transparent box",
                  "robot arm moves towards pink lego brick", '"robot arm picks up pink lego brick"',
                  '"negative_task"', '"clarification"', "Respond ONLY in JSON"):
        assert piece in p
    seed_dict = {"episode_id": "ep_001", "t": 37, "images": ["a.jpg", "b.jpg"], "skill_current": "pick up the KitKat",
                 "skill_history": [], "task_description": "making a sandwich"}
    p2 = construct_prompt(seed_dict)
    assert "2 camera view(s)" in p2 and "(none yet" in p2 and "direct_request" in p2
    assert len(prompt_template_hash()) == 16 and "{skill_current}" in PGEN_PROMPT_TEMPLATE
