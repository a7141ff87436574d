"""Issue 8: what a new user hits in the first hour — the GPU load path, answers that always close,
nothing half-started blocking the next try, two runs on one folder, retrying failures, a card and a
summary that tell the truth, and errors a script can read."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from hub_pgen import layout
from hub_pgen.cli import main
from hub_pgen.testing.tiny_qwen import tiny_model_dir

from .contract import tree_hashes

REPO = Path(__file__).resolve().parents[1]
VIDEO_SIDE_1 = "videos/observation.images.side/chunk-000/file-001.mp4"  # episodes 4 and 5 of the example
UNANNOTATED_EPISODE = "5"  # the example's episode without skills


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"), "qwen2_vl")


@pytest.fixture
def src(example_root, tmp_path) -> Path:
    return Path(shutil.copytree(example_root, tmp_path / "src"))


def partial(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# --- the GPU load path, on CPU ------------------------------------------------------------------


def test_accelerate_is_declared_with_the_model_stack():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    stack = project["optional-dependencies"]["transformers"]
    assert any(re.match(r"accelerate\b", d) for d in stack), stack
    assert not any(re.match(r"(torch|transformers)\b", d) for d in project["dependencies"])  # openai needs neither


def test_every_device_loads_with_the_same_from_pretrained_kwargs_shape():
    from hub_pgen.generate.loading import LoadOptions, from_pretrained_kwargs

    def kwargs(device: str) -> dict:
        return from_pretrained_kwargs(LoadOptions("m", None, device, "bfloat16", None, False), "abc")[1]

    gpu, cpu = kwargs("cuda:1"), kwargs("cpu")
    assert gpu["device_map"] == {"": "cuda:1"} and cpu["device_map"] == {"": "cpu"}
    assert {k for k in gpu if k != "device_map"} == {k for k in cpu if k != "device_map"}
    assert kwargs("auto")["device_map"] == "auto"


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_the_cli_loads_through_device_map_as_a_gpu_run_does(device, example_root, tiny, tmp_path, capsys,
                                                            monkeypatch):
    """--device cpu and --device auto (documented, and what a CPU-only machine gets) pass device_map to
    from_pretrained, which needs accelerate in transformers 5: without it this run fails with exit 5."""
    import transformers

    from hub_pgen.generate.qwen import TransformersBackend

    TransformersBackend.clear_cache()
    seen: list[dict] = []
    real = transformers.AutoModelForImageTextToText.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", spy)
    rc, out, err = cli(capsys, "--root", str(example_root), "--output-dir", str(tmp_path / "out"), "--model",
                       str(tiny), "--device", device, "--episodes", "0", "--batch-size", "4", "--json")
    TransformersBackend.clear_cache()
    assert rc == 0, err
    assert seen and seen[0]["device_map"] == ("auto" if device == "auto" else {"": "cpu"})
    assert json.loads(out)["ok"] == json.loads(out)["samples"] > 0


def test_a_missing_package_is_named_in_the_tip(monkeypatch, tiny):
    """transformers' "requires accelerate" ValueError used to come out with a TIP about model files."""
    import transformers

    from hub_pgen.errors import ModelLoadError
    from hub_pgen.generate.loading import LoadOptions, clear_models, load_model

    def needs_accelerate(*a, **kw):
        raise ValueError("Using a `device_map` ... requires `accelerate`. You can install it with "
                         "`pip install accelerate`")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", needs_accelerate)
    clear_models()
    with pytest.raises(ModelLoadError) as e:
        load_model(LoadOptions(str(tiny), None, "cpu", "float32", None, False))
    assert e.value.hint == "pip install accelerate" and "package" in str(e.value)
    assert e.value.exit_code == 5


def test_an_unknown_architecture_and_no_gpu_have_their_own_tips(tiny, tmp_path, example_root, capsys):
    import torch

    bad = Path(shutil.copytree(tiny, tmp_path / "model"))
    config = json.loads((bad / "config.json").read_text())
    config["model_type"] = "qwen9_vl"
    (bad / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--model", str(bad), "--device",
                     "cpu", "-q")
    assert rc == 5 and "cannot build that architecture" in err and "Qwen-VL" in err.split("TIP:")[1]
    assert not out.exists() and not partial(out).exists()
    if not torch.cuda.is_available():
        rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--device", "cuda", "-q")
        assert rc == 5 and "--device cpu" in err.split("TIP:")[1]
        assert not partial(out).exists()


# --- constrained JSON closes within the budget, whatever the tokenizer ---------------------------


def test_answer_bounds_fit_every_budget_in_bytes():
    from hub_pgen.generate.schema import (
        DEFAULT_MAX_NEW_TOKENS,
        BudgetTooSmall,
        answer_bounds,
        min_max_new_tokens,
        skeleton_bytes,
        tokens_needed,
    )

    assert tokens_needed(answer_bounds(DEFAULT_MAX_NEW_TOKENS)) <= DEFAULT_MAX_NEW_TOKENS
    assert answer_bounds(DEFAULT_MAX_NEW_TOKENS).max_prompt_chars == 240
    for budget in range(min_max_new_tokens(), 700, 7):
        assert tokens_needed(answer_bounds(budget)) <= budget
    with pytest.raises(BudgetTooSmall) as e:
        answer_bounds(min_max_new_tokens() - 1)
    assert e.value.needed == min_max_new_tokens() > skeleton_bytes()


@pytest.mark.slow
def test_constrained_answers_close_with_a_single_byte_tokenizer_at_the_default_budget(tmp_path):
    """The worst tokenizer: one byte per token. A random model writes the longest, oddest strings it
    may; every answer must still be a complete object of the assigned types."""
    from hub_pgen.data import GenerationRequest, Sample
    from hub_pgen.generate.parse import parse_dialogue
    from hub_pgen.generate.prompt import construct_prompt
    from hub_pgen.generate.qwen import TransformersBackend
    from hub_pgen.plan.taxonomy import assign_types

    folder = tiny_model_dir(tmp_path, "qwen2_vl", single_byte_tokens=True)
    backend = TransformersBackend.load(str(folder), device="cpu", temperature=1.0, max_retries=0)
    assert backend.options.max_new_tokens == 512
    requests = []
    for i, (scenario, response) in enumerate(assign_types(6, seed=3)):
        sample = Sample(f"ep000000-f{i:06d}", 0, "0", i, i / 10, "pick up the brick", (), "tidy the table",
                        scenario, response)
        requests.append(GenerationRequest(sample, construct_prompt(sample), (), seed=17 + i))
    results = backend.generate(requests)
    TransformersBackend.clear_cache()
    assert all(r.ok for r in results), [r.error for r in results]
    for req, res in zip(requests, results):
        d = parse_dialogue(res.raw_text, scenario_type=req.sample.scenario_type,
                           response_type=req.sample.response_type)
        assert d.user_prompt.isascii() and len(res.raw_text.encode()) <= 511


def test_a_budget_too_small_for_the_schema_is_refused_with_the_number_needed(example_root, tmp_path, capsys):
    from hub_pgen.generate.schema import min_max_new_tokens

    out = tmp_path / "out"
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--max-new-tokens", "100")
    assert rc == 2 and f"at least {min_max_new_tokens()} tokens" in err
    assert not out.exists() and not partial(out).exists()
    # unconstrained, the budget is the user's call
    rc, _, _ = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--max-new-tokens", "100",
                   "--no-constrained", "--dry-run")
    assert rc == 0


# --- nothing half-started blocks the next try ---------------------------------------------------


@pytest.mark.slow
def test_a_typo_in_model_then_the_fix_succeeds_in_the_same_folder(example_root, tiny, tmp_path, capsys):
    out = tmp_path / "deep" / "out"
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--model",
                     str(tmp_path / "no-such-model"), "--device", "cpu", "-q")
    assert rc == 5 and "does not exist" in err
    assert not partial(out).exists() and not out.parent.exists()  # not even the parent folder it made
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--model", str(tiny),
                     "--device", "cpu", "--episodes", "0", "--batch-size", "4", "-q")
    assert rc == 0, err
    assert (out / layout.PROVENANCE_PATH).is_file()


def test_switching_backend_after_a_failed_load_is_not_another_configuration(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, _ = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--model", "./typo", "-q")
    assert rc == 5
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "template", "-q")
    assert rc == 0, err


def test_a_partial_folder_whose_journal_is_empty_is_replaced(example_root, tmp_path, capsys):
    """As older versions left it: run.json of another configuration written before the model failed."""
    out = tmp_path / "out"
    work = partial(out)
    work.mkdir()
    (work / "run.json").write_text(json.dumps({"fingerprint": "0123456789abcdef", "identity": {"x": 1}}))
    (work / "journal.jsonl").write_text("")
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "template", "-q")
    assert rc == 0, err
    # ...but one that holds samples is protected
    work.mkdir()
    (work / "run.json").write_text(json.dumps({"fingerprint": "0123456789abcdef", "identity": {"x": 1}}))
    (work / "journal.jsonl").write_text('{"sample_id": "ep000000-f000000"}\n')
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(tmp_path / "out"), "--backend",
                     "template", "--seed", "1", "-q")
    assert rc == 4 and "different configuration" in err


INVALID = {
    "top-p 0": (["--top-p", "0"], 2, "--top-p"),
    "top-p nan": (["--top-p", "nan"], 2, "--top-p"),
    "max-new-tokens 0": (["--max-new-tokens", "0"], 2, "--max-new-tokens"),
    "temperature -1": (["--temperature", "-1"], 2, "--temperature"),
    "temperature inf": (["--temperature", "inf"], 2, "--temperature"),
    "max-retries -1": (["--max-retries", "-1"], 2, "--max-retries"),
    "interval without --sampling interval": (["--sample-interval", "1"], 2, "--sampling interval"),
    "interval 1e-300": (["--sampling", "interval", "--sample-interval", "1e-300"], 2, "--sample-interval"),
    "more views than cameras": (["--num-image-views-per-sample", "5"], 2, "2 (observation.images.up"),
    "episodes without skills": (["--episodes", UNANNOTATED_EPISODE], 2, "none of the chosen episodes has skills"),
    "an unknown flag": (["--sampel", "frame"], 2, "unrecognized arguments"),
    "a device torch does not know": (["--device", "gpu0"], 2, "--device"),
}


@pytest.mark.parametrize("kind", INVALID)
def test_invalid_options_are_refused_before_anything_is_written(kind, example_root, tmp_path, capsys):
    extra, code, fragment = INVALID[kind]
    out = tmp_path / "new" / "out"
    # the model backend (the default), so a mistake would cost a model load; these fail before it
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), *extra)
    assert rc == code, err
    assert fragment in err and "TIP:" in err and "internal error" not in err
    assert not (tmp_path / "new").exists()


def test_a_dataset_without_any_skills_is_an_input_error(src, tmp_path, capsys):
    skills = json.loads((src / layout.SKILLS_PATH).read_text())
    skills["episodes"] = {}
    (src / layout.SKILLS_PATH).write_text(json.dumps(skills))
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "--root", str(src), "--output-dir", str(out), "--backend", "template")
    assert rc == 3 and "nothing to generate" in err and "skills.json" in err
    assert not out.exists() and not partial(out).exists()


def test_validate_of_a_missing_folder_is_a_usage_error(tmp_path, capsys):
    rc, _, err = cli(capsys, "validate", str(tmp_path / "nope"))
    assert rc == 2 and "does not exist" in err and "TIP:" in err


# --- two runs, one folder -------------------------------------------------------------------------


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hub_pgen", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_runs_on_one_folder_one_refused_one_waiting_no_sample_twice(example_root, tmp_path):
    out = tmp_path / "out"
    args = ["--root", str(example_root), "--output-dir", str(out), "--backend", "template", "--batch-size", "5",
            "--json"]
    # the first run holds the folder, pausing after each journaled batch
    first = _start(args, {"HUB_PGEN_DELAY_AT": "journal:1.0"})
    _wait_for(partial(out) / "run.json")
    second = subprocess.run([sys.executable, "-m", "hub_pgen", *args], capture_output=True, text=True)
    assert second.returncode == 4, second.stderr
    assert f"process {first.pid}" in second.stderr and "--wait" in second.stderr
    assert json.loads(second.stdout)["exit_code"] == 4
    third = _start([*args, "--wait"], {})
    first_out, first_err = first.communicate(timeout=120)
    third_out, third_err = third.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert third.returncode == 0, third_err
    a, c = json.loads(first_out), json.loads(third_out)
    assert a["state"] == "written" and a["generated"] == a["samples"] == 25
    assert c["state"] == "already-complete" and c["generated"] == 0
    ids = [json.loads(x)["sample_id"] for x in (out / layout.SYN_ANNOTATIONS_PATH).read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 25
    assert not partial(out).exists()
    from hub_pgen.write.validate import validate

    validate(out, source=example_root)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    from hub_pgen.errors import OutputBusyError
    from hub_pgen.write.lock import RunLock

    work = tmp_path / "out.partial"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from hub_pgen.write.lock import RunLock; "
         "RunLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)", str(work)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(OutputBusyError) as e:
        RunLock(work).acquire()
    assert f"process {holder.pid}" in str(e.value) and e.value.exit_code == 4
    holder.kill()
    holder.wait()
    lock = RunLock(work)
    lock.acquire()  # the kernel dropped the dead holder's lock
    assert lock.held
    lock.abandon()
    assert not work.exists()


# --- failed samples can be retried ----------------------------------------------------------------


@pytest.mark.slow
def test_retry_failed_regenerates_exactly_the_failed_samples(src, tiny, tmp_path, capsys):
    good_video = (src / VIDEO_SIDE_1).read_bytes()
    (src / VIDEO_SIDE_1).write_bytes(good_video[:400])  # episodes 4 and 5 cannot be decoded
    out = tmp_path / "out"
    run = ["--root", str(src), "--output-dir", str(out), "--model", str(tiny), "--device", "cpu", "--batch-size",
           "4", "--json"]
    rc, stdout, err = cli(capsys, *run)
    assert rc == 0, err
    first = json.loads(stdout)
    failed = {f["sample_id"] for f in first["failures"]}
    assert failed and first["failed"] == len(failed)
    before = {r["sample_id"]: r for r in map(json.loads, (out / layout.SYN_ANNOTATIONS_PATH).read_text().splitlines())}

    # the same command again: already complete, and it says which samples failed
    rc, stdout, _ = cli(capsys, *run)
    again = json.loads(stdout)
    assert rc == 0 and again["state"] == "already-complete"
    assert {f["sample_id"] for f in again["failures"]} == failed and again["failed"] == len(failed)

    (src / VIDEO_SIDE_1).write_bytes(good_video)  # the cause is fixed
    rc, stdout, err = cli(capsys, *run, "--retry-failed")
    assert rc == 0, err
    retried = json.loads(stdout)
    assert retried["state"] == "written" and retried["generated"] == len(failed) == retried["retried"]
    assert retried["failed"] == 0 and retried["fingerprint"] == first["fingerprint"]
    after = {r["sample_id"]: r for r in map(json.loads, (out / layout.SYN_ANNOTATIONS_PATH).read_text().splitlines())}
    assert after.keys() == before.keys()
    for sid, row in after.items():
        if sid in failed:
            assert row["status"] == "ok" and row["earlier"][0]["error"] == before[sid]["error"]
        else:
            assert row == before[sid]  # untouched
    prov = json.loads((out / layout.PROVENANCE_PATH).read_text())
    assert prov["retried"][-1]["retried"] == prov["retried"][-1]["recovered"] == len(failed)
    assert not partial(out).exists()
    from hub_pgen.write.validate import validate

    validate(out, source=src)


# --- the card and the summary tell the truth ------------------------------------------------------


def _card_table(card: str) -> dict[str, str]:
    return dict(re.findall(r"^\| (.+?) \| (.+?) \|$", card, re.M))


def test_card_counts_equal_the_provenance(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, _ = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "template",
                        "--json")
    assert rc == 0
    prov = json.loads((out / layout.PROVENANCE_PATH).read_text())
    table = _card_table((out / layout.CARD_PATH).read_text())
    counts = prov["counts"]
    assert table["samples"] == str(counts["samples"]) and table["generated"] == str(counts["ok"])
    assert table["failed"] == str(counts["failed"]) and table["new tasks rows"] == str(counts["new_tasks"]) != "0"
    assert table["frames with a dialogue"] == f"{counts['frames_labelled']} of {counts['frames']}"
    result = json.loads(stdout)
    assert (result["frames_labelled"], result["frames"]) == (counts["frames_labelled"], counts["frames"])
    assert result["new_tasks"] == counts["new_tasks"]
    # the template backend used no model: provenance and card say so
    assert prov["generation"]["model"] is None and "model" not in prov["parameters"]
    assert table["model"] == "—"


@pytest.mark.slow
def test_a_local_model_path_stays_local(example_root, tiny, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--model", str(tiny), "--device",
                     "cpu", "--episodes", "0", "--batch-size", "4", "-q")
    assert rc == 0, err
    for rel in (layout.CARD_PATH, layout.PROVENANCE_PATH):
        text = (out / rel).read_text()
        assert str(tiny) not in text and str(tiny.parent) not in text and tiny.name in text


def test_the_summary_shows_frames_examples_and_one_line_per_warning(src, tmp_path, capsys):
    skills = json.loads((src / layout.SKILLS_PATH).read_text())
    for ep in skills["episodes"].values():
        ep["skills"][-1]["end"] = 99.0  # sloppy end times in every episode
    (src / layout.SKILLS_PATH).write_text(json.dumps(skills))
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "--root", str(src), "--output-dir", str(out), "--backend", "template")
    assert rc == 0
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and f"{len(skills['episodes'])} episode(s)" in warnings[0], err
    assert re.search(r"frames with a dialogue\s+\d+ of \d+", stdout)
    assert "A few generated dialogues:" in stdout and "user:" in stdout and "robot:" in stdout


def test_json_errors_are_json_on_stdout(tmp_path, capsys):
    rc, stdout, err = cli(capsys, "--root", str(tmp_path / "missing"), "--json")
    doc = json.loads(stdout)
    assert rc == doc["exit_code"] == 3 and doc["state"] == "error" and doc["error"] and doc["tip"]
    assert "hub-pgen: error:" in err  # and still readable for a person
    rc, stdout, _ = cli(capsys, "--root", "x", "--bogus-flag", "--json")
    assert rc == json.loads(stdout)["exit_code"] == 2


def test_help_tells_defaults_subcommands_exit_codes_and_environment(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "hub-pgen demo" in text.split("\n\n")[0] and "hub-pgen validate" in text.split("\n\n")[0]
    for fragment in ("default: Qwen/Qwen3-VL-8B-Instruct", "(default: 1)", "(default: 512)", "(default: 2)",
                     "(default: 0)", "exit codes:", "130 interrupted", "HF_TOKEN", "HUB_PGEN_DEBUG", "skills.json",
                     "--retry-failed", "--wait"):
        assert fragment in text, fragment
    assert "``" not in text
    for sub in ("validate", "demo"):
        with pytest.raises(SystemExit):
            main([sub, "--help"])
        assert "``" not in capsys.readouterr().out


def test_source_is_unchanged_by_the_new_paths(example_root, tmp_path, capsys):
    before = tree_hashes(example_root)
    out = tmp_path / "out"
    assert cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "template", "-q")[0] == 0
    assert cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "template", "-q",
               "--retry-failed")[0] == 0
    assert tree_hashes(example_root) == before


# --- found by trying it as a new user -------------------------------------------------------------


@pytest.mark.slow
def test_a_run_where_every_sample_fails_exits_8_and_is_not_pushed(example_root, tiny, tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a push would fail with exit 6
    monkeypatch.setenv("HF_TOKEN", "hf_NotARealTokenButThereIsOne0123456")  # --push-to is refused without one
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--model", str(tiny),
                          "--device", "cpu", "--episodes", "0", "--no-constrained", "--max-retries", "0",
                          "--max-new-tokens", "8", "--push-to", "me/never", "--json")
    assert rc == 8, err
    doc = json.loads(stdout)
    assert doc["exit_code"] == 8 and "every one of the" in doc["error"] and "--retry-failed" in doc["tip"]
    assert "not pushed" in doc["error"]
    assert (out / layout.PROVENANCE_PATH).is_file()  # written, so --retry-failed can pick it up


def test_dry_run_says_what_would_happen_to_the_output_folder(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "template", "-q")[0] == 0
    rc, stdout, _ = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "template",
                        "--dry-run")
    assert rc == 0 and re.search(r"output state\s+already complete", stdout)
    rc, stdout, _ = cli(capsys, "--root", str(example_root), "--output-dir", str(out), "--backend", "template",
                        "--seed", "3", "--dry-run", "--json")
    report = json.loads(stdout)["plan_report"]
    assert rc == 0 and report["output_state"].startswith("would be refused (exit 4)") and "seed" in report["output_state"]
    assert report["backend"] == "template" and report["model"] is None


def test_a_missing_model_folder_fails_before_anything_else(example_root, tmp_path, capsys):
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(tmp_path / "out"), "--model",
                     "./no/such/model", "--dry-run")
    assert rc == 5 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(tmp_path / "out"), "--model",
                     str(tmp_path / "empty"))
    assert rc == 5 and "has no config.json" in err and not (tmp_path / "out.partial").exists()


def test_model_options_with_the_template_backend_are_reported_as_ignored(example_root, tmp_path, capsys):
    rc, _, err = cli(capsys, "--root", str(example_root), "--output-dir", str(tmp_path / "out"), "--backend",
                     "template", "--device", "cuda", "--max-new-tokens", "50")
    assert rc == 0
    line = next(x for x in err.splitlines() if "runs no model" in x)
    assert "--backend template runs no model:" in line and "--device" in line and "--max-new-tokens" in line


def test_flag_abbreviations_are_refused_with_a_suggestion(capsys):
    rc, _, err = cli(capsys, "--root", "x", "--retry")
    assert rc == 2 and "did you mean --retry-failed" in err
    rc, _, err = cli(capsys, "--root", "x", "--sampel", "frame")
    assert rc == 2 and "did you mean --sampling" in err


def test_the_transformers_demo_needs_a_model(tmp_path, capsys):
    rc, _, err = cli(capsys, "demo", "--backend", "transformers", "--output-dir", str(tmp_path / "d"))
    assert rc == 2 and "needs --model" in err and not (tmp_path / "d").exists()


def test_retry_failed_on_a_folder_with_nothing_to_retry_runs_nothing(src, tmp_path, capsys):
    """A typo in --output-dir with --retry-failed must not start the whole (costly) job."""
    out = tmp_path / "typo"
    rc, _, err = cli(capsys, "--root", str(src), "--output-dir", str(out), "--backend", "template", "--retry-failed")
    assert rc == 2 and "holds no result or journal of this configuration" in err and "drop --retry-failed" in err
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_an_extras_tip_fits_how_hub_pgen_was_installed(monkeypatch, tmp_path):
    from hub_pgen import install

    monkeypatch.chdir(install._FOLDER)
    assert install.pip_install("rerun") == 'pip install -e ".[rerun]"'  # the README's `pip install -e .`
    monkeypatch.chdir(tmp_path)
    assert install.pip_install("ray") == f'pip install -e "{install._FOLDER}[ray]"'
    monkeypatch.setattr(install, "installed_from_index", lambda: True)  # a wheel from an index
    assert install.pip_install("transformers") == 'pip install "hub-pgen[transformers]"'


def test_a_wrong_root_is_said_before_a_missing_model_stack(tmp_path, capsys, monkeypatch):
    """Without torch, `hub-pgen --root /typo` used to say "needs torch": the path is the first thing to fix."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    rc, _, err = cli(capsys, "--root", str(tmp_path / "typo"), "--output-dir", str(tmp_path / "o"))
    assert rc == 3 and f"dataset folder {tmp_path / 'typo'} does not exist" in err and "torch" not in err
    rc, _, err = cli(capsys, "--input-jsonl", str(tmp_path / "typo.jsonl"), "--output-dir", str(tmp_path / "o"))
    assert rc == 3 and "file not found" in err and "torch" not in err
