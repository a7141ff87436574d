import random
from collections import Counter

import pytest

from hub_pgen.plan.taxonomy import RESPONSE_TYPES, SCENARIO_TYPES, assign_types, parse_mix, stratified


def test_schedule_is_balanced_seeded_and_deterministic():
    a = assign_types(101, seed=3)
    assert a == assign_types(101, seed=3)
    assert a != assign_types(101, seed=4)
    sc = Counter(s for s, _ in a)
    rs = Counter(r for _, r in a)
    assert set(sc) == set(SCENARIO_TYPES) and max(sc.values()) - min(sc.values()) <= 1
    assert set(rs) == set(RESPONSE_TYPES) and max(rs.values()) - min(rs.values()) <= 1


def test_weighted_mix_follows_weights():
    mix = parse_mix("negative_task=3,direct_request=1", SCENARIO_TYPES, flag="--scenario-mix")
    labels = stratified(100, mix, random.Random(0))
    assert Counter(labels) == {"negative_task": 75, "direct_request": 25}


@pytest.mark.parametrize("text, fragment", [("bogus=1", "unknown type 'bogus'"), ("negative_task=x", "must be a number"),
                                             ("negative_task=-1", ">= 0"), ("negative_task=0", "at least one")])
def test_bad_mix(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_mix(text, SCENARIO_TYPES, flag="--scenario-mix")
