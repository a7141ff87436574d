"""Issue 22: every pass that asks a model streams: against a server whose latency varies, the dialogues,
``--skills annotate``'s labelling and ``--verify`` each keep ``--concurrency`` requests in flight (the
stand-in counts them at each arrival); ``--serve`` servers get work by least outstanding; the review
page's thumbnails come from the frames generation decoded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hub_pgen import layout
from hub_pgen.cli import main
from hub_pgen.example import ExampleSpec, build_example_dataset
from hub_pgen.generate.stream import Width, stream

from .openai_server import OpenAIServer

K = 4


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setenv("HUB_PGEN_RETRY_SCALE", "0.01")


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory) -> Path:
    """20 episodes without meta/skills.json: 20 labelling calls, then (one skill each) 20 dialogues and
    20 verdicts."""
    return build_example_dataset(tmp_path_factory.mktemp("unlabelled") / "src",
                                 ExampleSpec(n_episodes=20, skills="none"))


def test_every_pass_keeps_k_requests_in_flight_against_a_varying_latency(unlabelled, tmp_path, capsys):
    out = tmp_path / "out"
    with OpenAIServer(delay=0.2, jitter=0.5, seed=1) as server:
        rc = main(["--root", str(unlabelled), "--output-dir", str(out), "--backend", "openai", "--base-url",
                   server.url, "--skills", "annotate", "--verify", "--concurrency", str(K), "--batch-size", "1",
                   "-q"])
        assert rc == 0, capsys.readouterr().err
        passes = {name: sum(e["schema"] == name for e in server.requests)
                  for name in ("hub_pgen_skills", "pgen_dialogue", "hub_pgen_verify")}
        fractions = {name: server.in_flight_fraction(K, name) for name in passes}
    assert passes == {"hub_pgen_skills": 20, "pgen_dialogue": 20, "hub_pgen_verify": 20}
    # a train of batches gives ~1/K here (only the last of each batch finds K in flight), and a pass
    # that sends one at a time gives 0: streaming gives ~1
    assert all(f >= 0.8 for f in fractions.values()), fractions


def test_serve_spreads_requests_by_least_outstanding_not_round_robin():
    """A slow server and a fast one: round robin would give each half; by least outstanding, the fast
    one answers most."""
    from hub_pgen.generate.layer import Call
    from hub_pgen.generate.openai import OpenAIBackend, OpenAIOptions, _client

    with OpenAIServer(delay=0.3) as slow, OpenAIServer(delay=0.01) as fast:
        backend = OpenAIBackend(OpenAIOptions(base_url=slow.url, model="tiny-pgen", concurrency=K))
        backend._clients = [_client(backend.options, slow.url), _client(backend.options, fast.url)]
        calls = [Call(f"s{i}", f"prompt {i}", (), i, 0.0) for i in range(60)]
        try:
            answers = [a for _, out in stream(calls, backend.complete_calls, Width(K, 1)) for a in out]
        finally:
            backend.close()
        assert len(answers) == 60 and all(isinstance(a, str) for a in answers)
        assert len(slow.requests) + len(fast.requests) == 60
        assert len(fast.requests) >= 4 * len(slow.requests), (len(slow.requests), len(fast.requests))
        assert backend.per_server == [len(slow.requests), len(fast.requests)]


def test_the_review_page_takes_its_thumbnails_from_the_frames_generation_decoded(example_root, tmp_path, capsys,
                                                                                monkeypatch):
    """No frame is decoded a second time for the page a run writes, and its thumbnails are the ones
    ``hub-pgen report`` decodes from the result (the page is the same either way)."""
    from hub_pgen.review import thumbs

    decoded: list[str] = []
    real = thumbs.iter_sample_images

    def counting(samples, **kw):
        decoded.extend(s.sample_id for s in samples)
        return real(samples, **kw)

    monkeypatch.setattr(thumbs, "iter_sample_images", counting)
    out = tmp_path / "out"
    with OpenAIServer() as server:
        rc = main(["--root", str(example_root), "--output-dir", str(out), "--backend", "openai", "--base-url",
                   server.url, "-q"])
    assert rc == 0, capsys.readouterr().err
    assert decoded == []  # every card's frames came from generation
    page = (out / layout.REPORT_PATH).read_bytes()
    assert page.count(b'<img class="thumb"') == 25 * 2
    again = tmp_path / "again.html"
    assert main(["report", str(out), "--output", str(again), "-q"]) == 0
    assert len(decoded) == 25  # the report command decodes them itself
    assert again.read_bytes() == page


def test_the_keeper_hands_out_whole_samples_only():
    """The keeper holds only whole samples: a sample whose frames could not all be made is decoded (or
    shown unavailable) by the page, never half from each."""
    from PIL import Image

    from hub_pgen.data import ImageRef, Sample
    from hub_pgen.review.thumbs import ThumbKeeper

    sample = Sample(sample_id="a", episode_index=0, episode_id="0", frame_index=0, timestamp=0.0,
                    skill_current="", skill_history=(), task_description="", scenario_type="", response_type="",
                    images=(ImageRef(camera="observation.images.up", timestamp=0.0),
                            ImageRef(camera="observation.images.side", timestamp=0.0)))
    keeper = ThumbKeeper(["a"])
    keeper.keep(sample, 1, Image.new("RGB", (64, 48)))
    assert keeper.made() == {}  # image 0 missing
    keeper = ThumbKeeper(["a"])
    keeper.keep(sample, 0, Image.new("RGB", (64, 48)))
    assert keeper.made() == {}  # image 1 missing
    keeper.keep(sample, 1, Image.new("RGB", (64, 48)))
    made = keeper.made()
    assert [t.label for t in made["a"]] == [ref.label() for ref in sample.images]
    keeper.keep(dataclasses.replace(sample, sample_id="b"), 0, Image.new("RGB", (64, 48)))
    assert set(keeper.made()) == {"a"}  # not wanted: not kept
