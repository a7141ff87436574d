"""hub_pgen.generate.options: each option declared once, in its group; RunConfig's flat fields (the
flags) are the same names with the same defaults, and each group checks its own values."""

from __future__ import annotations

import dataclasses

import pytest

from hub_pgen.config import RunConfig
from hub_pgen.errors import UsageError
from hub_pgen.generate.options import OPTION_GROUPS, DecodingOptions, ServerOptions, TransformersOptions
from hub_pgen.generate.registry import BACKENDS, MODEL_OPTIONS, get_backend


def test_each_group_is_runconfigs_fields_with_its_defaults():
    config_fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for group in OPTION_GROUPS:
        for f in dataclasses.fields(group):
            assert f.name in config_fields, (group.__name__, f.name)
            assert config_fields[f.name].default == f.default, (group.__name__, f.name)
            assert str(config_fields[f.name].type) == str(f.type), (group.__name__, f.name)
    names = [n for g in OPTION_GROUPS for n in g.names()]
    assert len(names) == len(set(names))  # declared once
    assert set(MODEL_OPTIONS) == set(names)


def test_a_backend_uses_the_groups_it_names():
    assert get_backend("transformers").options == (*DecodingOptions.names(), *TransformersOptions.names())
    assert get_backend("openai").options == (*DecodingOptions.names(), *ServerOptions.names())
    assert get_backend("template").options == () and not get_backend("template").uses_model
    assert all(spec.uses_model == ("model" in spec.options) for spec in BACKENDS.values())


def test_runconfig_composes_the_groups(tmp_path):
    config = RunConfig(root=tmp_path, backend="openai", base_url="http://x/v1", batch_size=3, concurrency=5,
                       temperature=0.5, device="cpu")
    assert config.decoding == DecodingOptions(model=None, temperature=0.5, batch_size=3)
    assert config.options_of(ServerOptions).concurrency == 5
    assert config.options_of(TransformersOptions).device == "cpu"


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "--batch-size must be >= 1, got 0"),
    ({"top_p": 0.0}, "--top-p must be in (0, 1], got 0.0"),
    ({"temperature": float("nan")}, "--temperature must be a number >= 0"),
    ({"max_new_tokens": 8}, "--max-new-tokens 8 is too small for a constrained JSON answer"),
    ({"max_retries": -1}, "--max-retries must be >= 0, got -1"),
    ({"concurrency": 0}, "--concurrency must be >= 1, got 0"),
    ({"request_timeout": float("inf")}, "--request-timeout must be a number of seconds > 0"),
])
def test_each_group_checks_its_values(tmp_path, kwargs, message):
    with pytest.raises(UsageError) as e:
        RunConfig(root=tmp_path, backend="transformers", **kwargs)
    assert message in str(e.value)
    group = next(g for g in OPTION_GROUPS if set(kwargs) <= set(g.names()))
    with pytest.raises(UsageError, match=message.split(",")[0].replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        dataclasses.replace(group(), **kwargs).check(runs_model=True)


def test_the_token_budget_is_checked_only_for_a_model_backend(tmp_path):
    assert RunConfig(root=tmp_path, backend="template", max_new_tokens=8).max_new_tokens == 8
    DecodingOptions(max_new_tokens=8).check(runs_model=False)
