"""The GitHub Actions workflows: parsed, checked for what they promise, and the pgen command line
actually run (with a stand-in ``hub-pgen`` that records its arguments)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
# every workflow_dispatch input, and the CLI flag it must become
INPUT_FLAGS = {
    "repo-id": "--repo-id",
    "revision": "--revision",
    "push-to": "--push-to",
    "branch": "--branch",
    "model": "--model",
    "batch-size": "--batch-size",
    "sampling": "--sampling",
    "skills": "--skills",
    "format": "--format",
}
RUNS_ON = """${{ fromJSON(vars.HUB_PGEN_RUNNER_LABELS || '["self-hosted","gpu"]') }}"""
GPU_SETUP = REPO / ".github" / "actions" / "gpu-setup" / "action.yml"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))


def triggers(wf: dict[str, Any]) -> Any:
    """YAML 1.1 reads the key ``on`` as the boolean True."""
    return wf.get("on", wf.get(True))


def walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + (i,))


def steps(wf: dict[str, Any], job: str | None = None) -> list[dict[str, Any]]:
    jobs = [wf["jobs"][job]] if job else list(wf["jobs"].values())
    return [s for j in jobs for s in j.get("steps", [])]


def generate_step(wf: dict[str, Any]) -> dict[str, Any]:
    found = [s for s in steps(wf, "pgen") if "hub-pgen " in s.get("run", "")]
    assert len(found) == 1, "exactly one step of the pgen job runs hub-pgen"
    return found[0]


def merge_step(wf: dict[str, Any]) -> dict[str, Any]:
    found = [s for s in steps(wf, "merge") if "hub-pgen merge" in s.get("run", "")]
    assert len(found) == 1, "exactly one step of the merge job runs hub-pgen merge"
    return found[0]


def run_step(step: dict[str, Any], values: dict[str, str], tmp_path: Path, cwd: Path | None = None) -> list[str]:
    """Run a step's script as Actions would (bash -eo pipefail) with a hub-pgen that records argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "hub-pgen"
    fake.write_text('#!/usr/bin/env python3\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n')
    fake.chmod(0o755)
    env = {k: EXPR.sub(lambda m: values[m.group(1)], str(v)) for k, v in step["env"].items()}
    env |= {"PATH": f"{bin_dir}:/usr/bin:/bin", "OUTPUT_DIR": str(tmp_path / "out")}
    script = tmp_path / "step.sh"
    script.write_text(step["run"])
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], env=env,
                          capture_output=True, text=True, timeout=30, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return load("ci.yml")


@pytest.fixture(scope="module")
def pgen() -> dict[str, Any]:
    return load("pgen.yml")


# --- ci.yml -------------------------------------------------------------------------------------


def test_ci_runs_the_suite_on_push_and_pull_request(ci):
    on = triggers(ci)
    assert "push" in on and "pull_request" in on
    runs = [s.get("run", "") for s in steps(ci)]
    assert any(r.strip() == "bash .ci/run" for r in runs)
    py = [s for s in steps(ci) if str(s.get("uses", "")).startswith("actions/setup-python@")]
    assert py and str(py[0]["with"]["python-version"]) == "3.12"


def test_ci_caches_the_venv_and_pip(ci):
    caches = [s for s in steps(ci) if str(s.get("uses", "")).startswith("actions/cache@")]
    assert len(caches) == 1
    paths = caches[0]["with"]["path"].split()
    assert "~/.cache/hub-pgen" in paths and "~/.cache/pip" in paths
    key = caches[0]["with"]["key"]
    assert "hashFiles('pyproject.toml', 'scripts/test')" in key and "python-version" in key


# --- pgen.yml -----------------------------------------------------------------------------------


def test_pgen_is_dispatched_with_the_documented_inputs(pgen):
    from hub_pgen import layout
    from hub_pgen.skills import SOURCES

    inputs = triggers(pgen)["workflow_dispatch"]["inputs"]
    assert set(inputs) == set(INPUT_FLAGS) | {"shards"}
    assert len(inputs) <= 10  # GitHub refuses a workflow_dispatch with more than 10 inputs
    assert inputs["repo-id"]["required"] is True
    assert set(inputs["sampling"]["options"]) == {"segment", "interval", "frame"}
    assert inputs["skills"]["options"] == list(SOURCES) and inputs["skills"]["default"] == "auto"
    assert inputs["format"]["options"] == list(layout.FORMATS) and inputs["format"]["default"] == layout.DEFAULT_FORMAT
    assert inputs["shards"]["type"] == "number" and inputs["shards"]["default"] == 1
    assert set(pgen["jobs"]) == {"plan", "label", "pgen", "merge"}
    for gpu in ("label", "pgen"):  # the GPU runners: a repository variable, ["self-hosted","gpu"] by default
        assert pgen["jobs"][gpu]["runs-on"] == RUNS_ON


def test_both_workflows_validate_against_githubs_schema():
    """check-jsonschema with its vendored GitHub workflow schema (offline)."""
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    proc = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows",
                           str(WORKFLOWS / "pgen.yml"), str(WORKFLOWS / "ci.yml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run([exe, "--builtin-schema", "vendor.github-actions", str(GPU_SETUP)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_matrix_form_plans_shards_then_merges(pgen, tmp_path):
    plan, job, merge = pgen["jobs"]["plan"], pgen["jobs"]["pgen"], pgen["jobs"]["merge"]
    assert job["needs"] == ["plan", "label"] and job["strategy"]["fail-fast"] is False
    assert pgen["jobs"]["label"]["if"] == "needs.plan.outputs.label == 'true'"
    assert "needs.label.result != 'failure'" in job["if"] and "needs.plan.result == 'success'" in job["if"]
    assert plan["outputs"]["label"] == "${{ steps.plan.outputs.label }}"
    assert job["strategy"]["matrix"]["shard"] == "${{ fromJSON(needs.plan.outputs.indices) }}"
    assert plan["outputs"]["indices"] == "${{ steps.shards.outputs.indices }}"
    assert set(merge["needs"]) == {"plan", "pgen"} and merge["if"] == "inputs.shards > 1"
    # the plan's shard list, as its step computes it (and refuses)
    shard_step = next(s for s in plan["steps"] if s.get("id") == "shards")
    for given, want in (("3", [0, 1, 2]), ("1", [0])):
        out = tmp_path / f"out{given}"
        proc = subprocess.run(["bash", "-eo", "pipefail", "-c", shard_step["run"]],
                              env={"SHARDS": given, "GITHUB_OUTPUT": str(out), "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert out.read_text().strip() == f"indices={json.dumps(want)}"
    bad = subprocess.run(["bash", "-eo", "pipefail", "-c", shard_step["run"]],
                         env={"SHARDS": "0", "GITHUB_OUTPUT": str(tmp_path / "bad"), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "shards must be a whole number from 1 to 256" in bad.stdout + bad.stderr
    # each shard uploads its folder; the merge job downloads them all
    upload = next(s for s in job["steps"] if s.get("name") == "Upload the shard")
    assert upload["with"]["name"] == "pgen-shard-${{ matrix.shard }}" and upload["if"] == "inputs.shards > 1"
    download = next(s for s in merge["steps"] if str(s.get("uses", "")).startswith("actions/download-artifact@"))
    assert download["with"] == {"pattern": "pgen-shard-*", "path": "shards"}


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_shard_inputs_reach_the_cli_and_the_merge_pushes(pgen, tmp_path):
    given = {"inputs.repo-id": "a/b", "inputs.revision": "", "inputs.push-to": "me/out", "inputs.branch": "b1",
             "inputs.model": "Qwen/Qwen2.5-VL-7B-Instruct", "inputs.batch-size": "8", "inputs.sampling": "segment",
             "inputs.skills": "auto", "inputs.format": "both",
             "inputs.shards": "3", "matrix.shard": "1", "secrets.HF_TOKEN": "not-a-real-token"}
    argv = run_step(generate_step(pgen), given, tmp_path)
    pairs = dict(zip(argv[::2], argv[1::2]))
    assert pairs["--num-shards"] == "3" and pairs["--shard-index"] == "1"
    assert "--push-to" not in pairs and "--branch" not in pairs  # a shard pushes nothing
    work = tmp_path / "work"
    for i in range(3):
        (work / "shards" / f"pgen-shard-{i}").mkdir(parents=True)
    argv = run_step(merge_step(pgen), given, tmp_path, cwd=work)
    assert argv[:4] == ["merge", "shards/pgen-shard-0", "shards/pgen-shard-1", "shards/pgen-shard-2"]
    rest = dict(zip(argv[4::2], argv[5::2]))
    assert rest == {"--repo-id": "a/b", "--output-dir": "merged", "--push-to": "me/out", "--branch": "b1"}


def test_every_input_reaches_the_cli_as_its_flag(pgen):
    step = generate_step(pgen)
    env, script = step["env"], step["run"]
    for name, flag in INPUT_FLAGS.items():
        var = [k for k, v in env.items() if v == f"${{{{ inputs.{name} }}}}"]
        assert len(var) == 1, f"input {name} is not passed to the step through env"
        assert re.search(rf'{re.escape(flag)} "\${var[0]}"', script), f"{flag} does not get ${var[0]}"
    assert "--output-dir" in script


def test_no_expression_is_expanded_inside_a_script(pgen, ci):
    """``${{ inputs.x }}`` inside ``run:`` is pasted into the shell before it runs: a script injection."""
    for wf in (pgen, ci):
        for s in steps(wf):
            assert not EXPR.search(s.get("run", "")), s.get("name")


def test_secrets_are_only_referenced_from_env(pgen, ci):
    for wf in (pgen, ci):
        for path, node in walk(wf):
            if isinstance(node, str) and "secrets." in node:
                assert len(path) >= 2 and path[-2] == "env", f"secret used outside env at {path}"
                assert EXPR.fullmatch(node.strip()), f"secret mixed into a longer value at {path}"
    gen = generate_step(pgen)
    assert gen["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
    assert pgen["permissions"] == {"contents": "read"} and ci["permissions"] == {"contents": "read"}


def test_the_hub_cache_is_persistent_and_outside_the_workspace(pgen):
    text = (WORKFLOWS / "pgen.yml").read_text() + GPU_SETUP.read_text()
    assert "/opt/hf-cache" in text and "HF_HOME=" in text and "RUNNER_TOOL_CACHE" in text
    assert "GITHUB_WORKSPACE" not in text


def test_journal_and_provenance_are_uploaded(pgen):
    uploads = [s for s in steps(pgen, "pgen") if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    by_path = {p: s for s in uploads for p in s["with"]["path"].split()}
    journal = [s for p, s in by_path.items() if p.endswith("meta/syn_annotations.jsonl")]
    partial = [s for p, s in by_path.items() if p.endswith(".partial/journal.jsonl")]
    report = [s for p, s in by_path.items() if p.endswith("meta/hub_pgen.json")]
    page = [s for p, s in by_path.items() if p.endswith("meta/hub_pgen_report.html")]
    assert journal and partial and report and page and page[0] is report[0] and page[0]["if"] == "always()"
    merged = [p for s in steps(pgen, "merge") if str(s.get("uses", "")).startswith("actions/upload-artifact@")
              for p in s["with"]["path"].split()]
    assert "merged/meta/hub_pgen_report.html" in merged
    assert journal[0]["if"] == "always()" and partial[0] is journal[0]
    gen_index = steps(pgen, "pgen").index(generate_step(pgen))
    assert all(steps(pgen, "pgen").index(s) > gen_index for s in uploads)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("given", [
    {"repo-id": "lerobot/svla_so101_pickplace", "revision": "", "push-to": "", "branch": "",
     "model": "Qwen/Qwen3-VL-8B-Instruct", "batch-size": "4", "sampling": "segment", "skills": "auto",
     "format": "both"},
    {"repo-id": "a/b", "revision": "v3.0", "push-to": "me/out", "branch": "exp 1; rm -rf /",
     "model": "Qwen/Qwen2.5-VL-7B-Instruct", "batch-size": "8", "sampling": "frame", "skills": "annotate",
     "format": "lerobot-language"},
])
def test_the_generate_script_builds_the_command_line(pgen, tmp_path, given):
    """Run the step's script as Actions would (bash -eo pipefail) with a hub-pgen that records argv."""
    values = {f"inputs.{k}": v for k, v in given.items()} | {"secrets.HF_TOKEN": "not-a-real-token",
                                                             "inputs.shards": "1", "matrix.shard": "0"}
    argv = run_step(generate_step(pgen), values, tmp_path)
    pairs = dict(zip(argv[::2], argv[1::2]))
    assert len(argv) == 2 * len(pairs)
    for name, flag in INPUT_FLAGS.items():
        if given[name]:
            assert pairs[flag] == given[name]
        else:
            assert flag not in pairs
    assert pairs["--output-dir"] == str(tmp_path / "out") and "--num-shards" not in pairs


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_shards_take_the_label_jobs_skills_file(pgen, tmp_path):
    values = {"inputs.repo-id": "a/b", "inputs.revision": "", "inputs.push-to": "", "inputs.branch": "",
              "inputs.model": "m/m", "inputs.batch-size": "4", "inputs.sampling": "segment", "inputs.skills": "auto",
              "inputs.format": "both", "inputs.shards": "2", "matrix.shard": "1", "secrets.HF_TOKEN": "x"}
    work = tmp_path / "work"
    (work / "labels" / "meta").mkdir(parents=True)
    (work / "labels" / "meta" / "skills.json").write_text("{}")
    argv = run_step(generate_step(pgen), values, tmp_path, cwd=work)
    pairs = dict(zip(argv[::2], argv[1::2]))
    assert pairs["--skills-file"] == "labels/meta/skills.json" and "--skills" not in pairs
    label = pgen["jobs"]["label"]
    get = next(s for s in steps(pgen, "pgen") if s.get("name") == "Get the labels")
    upload = next(s for s in label["steps"] if s.get("name") == "Upload the labels")
    assert get["with"] == {"name": upload["with"]["name"], "path": "labels/meta"}
    assert get["if"] == "needs.label.result == 'success'"
    step = next(s for s in label["steps"] if "hub-pgen" in s.get("run", ""))
    argv = run_step(step, values, tmp_path)
    assert argv[0] == "label" and dict(zip(argv[1::2], argv[2::2]))["--output-dir"] == str(tmp_path / "out")


def test_a_cached_runner_venv_still_gets_new_dependencies(pgen):
    """A runner keeps its venv between runs; installing hub-pgen with --no-deps into it would skip
    what a newer hub-pgen needs (accelerate was such a dependency: every GPU load failed without it)."""
    action = yaml.safe_load(GPU_SETUP.read_text())
    install = next(s for s in action["runs"]["steps"] if s.get("name") == "Install hub-pgen")["run"]
    for gpu in ("label", "pgen"):
        assert any(s.get("uses") == "./.github/actions/gpu-setup" for s in steps(pgen, gpu))
    last = [line.strip() for line in install.splitlines() if "pip install" in line][-1]
    assert "--no-deps" not in last and last.endswith('install -q -e ".[transformers]"')  # the model stack too
    assert "pip check" in install
