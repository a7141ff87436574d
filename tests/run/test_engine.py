"""The Engine seam (hub_pgen.run.engine): the driver journals what any engine yields, in any order,
and never asks which engine runs; the output is the same bytes whatever the engine."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from hub_pgen import run as runner
from hub_pgen.cli import main
from hub_pgen.config import RunConfig
from hub_pgen.errors import UsageError
from hub_pgen.run import engine as engine_mod
from hub_pgen.run.local_engine import LocalEngine

from ..contract import tree_hashes

CREATED = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
ENGINE = re.compile(rb'(engine(?:"|&quot;): (?:"|&quot;))reversed')  # the parameters name the engine


class ReversedEngine(LocalEngine):
    """The local engine's batches, the last first, each batch's records reversed too (as a cluster or
    a stream of requests may return them)."""

    name = "reversed"
    batches = 0

    def generate(self, pending: Sequence, ctx, journal) -> Iterator:
        done = list(super().generate(pending, ctx, journal))
        type(self).batches = len(done)
        for records, sent in reversed(done):
            yield list(reversed(records)), sent


def _bytes(out: Path) -> dict[str, bytes]:
    """Every file of a result, its creation time blanked and the engine it names made the local one
    (the only things two runs may differ in)."""
    return {rel: ENGINE.sub(rb"\1local", CREATED.sub(b"T", (out / rel).read_bytes())) for rel in tree_hashes(out)}


@pytest.fixture
def reversed_engine(monkeypatch):
    monkeypatch.setitem(engine_mod.ENGINES, "reversed", f"{__name__}:ReversedEngine")
    return "reversed"


def test_any_engine_gives_the_same_bytes_whatever_the_order(example_root, tmp_path, reversed_engine):
    local = runner.run(RunConfig(root=example_root, output_dir=tmp_path / "a" / "out", backend="template",
                                 batch_size=4))
    other = runner.run(RunConfig(root=example_root, output_dir=tmp_path / "b" / "out", backend="template",
                                 batch_size=4, engine=reversed_engine))
    assert ReversedEngine.batches > 1  # the order really differed
    assert (local.state, other.state) == ("written", "written") and other.ok == local.ok > 0
    assert other.generated == local.generated == local.samples
    assert _bytes(other.output) == _bytes(local.output)


def test_the_engine_is_what_the_registry_names(example_root, tmp_path, reversed_engine):
    """The driver asks the registry, not the engine's name: a registered engine runs (its batches are
    what is journaled), and a resume of its folder by another engine asks nothing again."""
    out = tmp_path / "out"
    first = runner.run(RunConfig(root=example_root, output_dir=out, backend="template", engine=reversed_engine))
    again = runner.run(RunConfig(root=example_root, output_dir=out, backend="template"))
    assert first.state == "written" and again.state == "already-complete"


def test_an_unknown_engine_is_a_usage_error_naming_the_engines(example_root, tmp_path, capsys):
    with pytest.raises(UsageError, match=r"--engine must be one of local, ray, got 'rey'"):
        RunConfig(root=example_root, engine="rey")
    rc = main(["--root", str(example_root), "--output-dir", str(tmp_path / "o"), "--backend", "template",
               "--engine", "rey"])
    assert rc == 2 and "local" in capsys.readouterr().err


def test_engine_flags_are_checked_by_their_engine(example_root):
    with pytest.raises(UsageError, match="--ray-address and --workers go with --engine ray"):
        RunConfig(root=example_root, workers=2)
    with pytest.raises(UsageError, match="--workers must be >= 1"):
        RunConfig(root=example_root, engine="ray", workers=0)
    with pytest.raises(UsageError, match="--engine ray generates in its actors"):
        RunConfig(root=example_root, engine="ray", verify="report")


def test_the_registry_holds_engines_that_keep_the_protocol():
    for name in engine_mod.ENGINES:
        engine = engine_mod.get_engine(name)
        assert engine.name == name
        for method in ("check_config", "check", "checks_backend_here", "cannot_label", "driver_backend", "generate"):
            assert callable(getattr(engine, method))
    with pytest.raises(ValueError, match="no engine 'x'"):
        engine_mod.get_engine("x")
