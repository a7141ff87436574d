"""Issue 19: the card's main command on a public-shaped Hub dataset as it is — the road users take.

The source is written by lerobot 0.6.1's own recorder API with no ``meta/skills.json`` and no subtask
rows, one data and one video file per episode (as large public datasets are laid out), and served by
the loopback Hub stand-in under the card's own name. The model the default backend loads,
``Qwen/Qwen3-VL-8B-Instruct``, is a tiny random-weight Qwen3-VL served by the same stand-in, so
``hub-pgen --repo-id lerobot/svla_so101_pickplace --push-to user/new`` runs exactly as typed: Hub in,
the skills labelled by the model, dialogues, Hub out, and the pushed repo loads in lerobot at ``v3.0``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub_pgen import layout
from hub_pgen.cli import main
from hub_pgen.testing.tiny_qwen import tiny_model_dir
from hub_pgen.write.validate import validate

from .contract import tree_hashes
from .hubserver import TOKEN, HubServer
from .recorded import record_with_lerobot

CARD_REPO = "lerobot/svla_so101_pickplace"
CAMERAS = ("observation.images.up", "observation.images.side")
LENGTHS = (30, 22, 31, 25, 27, 24)
REPO = Path(__file__).resolve().parents[1]

LEROBOT_WRITER = """
import sys
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
cams = ("observation.images.up", "observation.images.side")
feats = {cam: {"dtype": "video", "shape": (48, 64, 3), "names": ["height", "width", "channels"]} for cam in cams}
feats["observation.state"] = {"dtype": "float32", "shape": (2,), "names": None}
# files this small roll over after every episode: one data and one video file per episode
ds = LeRobotDataset.create("lerobot/recorded", fps=10, features=feats, root=sys.argv[1], use_videos=True,
                           data_files_size_in_mb=1e-6, video_files_size_in_mb=1e-6)
tasks = ["pick up the cube and place it in the bowl", "open the drawer, then push it closed"]
for e, length in enumerate(%r):
    for f in range(length):
        frame = {cam: np.full((48, 64, 3), (5 * f + 40 * e + 100 * c) %% 255, np.uint8) for c, cam in enumerate(cams)}
        ds.add_frame(frame | {"observation.state": np.full(2, f, np.float32), "task": tasks[e %% 2]})
    ds.save_episode()
ds.finalize()
""" % (LENGTHS,)  # noqa: UP031  (the script's many braces read better unescaped)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def user(hub_env, tmp_path, monkeypatch):
    """``hub_env`` (conftest) as a user's shell has it, in the working folder a user runs in."""
    from huggingface_hub import constants

    monkeypatch.setenv("HUB_PGEN_RETRY_SCALE", "0.01")
    monkeypatch.delenv("HF_LEROBOT_HOME", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.chdir(tmp_path)  # the default output folder (hub-pgen-out/...) lands here
    return tmp_path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """Six episodes recorded with lerobot's own API: no skills.json, no language columns, many files."""
    pytest.importorskip("lerobot")
    src = record_with_lerobot(LEROBOT_WRITER, tmp_path_factory.mktemp("recorded") / "src")
    assert not (src / layout.SKILLS_PATH).exists()
    assert len(list((src / "data").rglob("*.parquet"))) == len(LENGTHS)  # one data file per episode
    assert len(list((src / "videos" / CAMERAS[0]).rglob("*.mp4"))) == len(LENGTHS)
    return src


def seed(server: HubServer, repo_id: str, folder: Path, *, kind: str = "dataset") -> str:
    if (kind, repo_id) not in server.repos:
        server.create_repo(repo_id, kind)
    sha = server.commit_folder(repo_id, folder, kind=kind, message="add")
    if kind == "dataset":
        server.set_tag(repo_id, layout.CODEBASE_VERSION, sha)
    return sha


@pytest.fixture(scope="module")
def on_the_hub(server, recorded, tmp_path_factory):
    """The card's dataset and the default model, both as the Hub serves them."""
    seed(server, CARD_REPO, recorded)
    model = tiny_model_dir(tmp_path_factory.mktemp("tiny"), "qwen3_vl")
    seed(server, "Qwen/Qwen3-VL-8B-Instruct", model, kind="model")
    return recorded


def hub_pgen_command() -> list[str]:
    """The console script pip installed (the command users type), beside this Python."""
    script = Path(sys.executable).with_name("hub-pgen")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "hub_pgen.cli"]


def user_env(server: HubServer, home: Path) -> dict[str, str]:
    """A user's shell: HF_ENDPOINT and HF_TOKEN set before the process starts (huggingface_hub,
    transformers and lerobot read them at import), a Hub cache of its own, not offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE",
                                                            "HF_LEROBOT_HOME", "HUGGING_FACE_HUB_TOKEN")}
    return {**env, "HF_ENDPOINT": server.url, "HF_TOKEN": TOKEN, "HF_HOME": str(home), "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_LEROBOT_HOME": str(home / "lerobot")}


def typed(argv: list[str], *, server: HubServer, cwd: Path, home: Path | None = None,
          timeout: float = 600) -> subprocess.CompletedProcess:
    """``argv`` run in a fresh process as a user types it (``hub-pgen ...`` or ``python script ...``)."""
    cmd = hub_pgen_command() + argv[1:] if argv[0] == "hub-pgen" else (
        [sys.executable, *argv[1:]] if argv[0] == "python" else argv)
    return subprocess.run(cmd, cwd=cwd, env=user_env(server, home or cwd / "hf_home"), capture_output=True,
                          text=True, timeout=timeout)


def pulled(server: HubServer, repo_id: str, rev: str, into: Path) -> Path:
    """A pushed repo's files at ``rev``, as a folder (what validate and the byte comparisons read)."""
    for rel, content in server.files_at(repo_id, rev).items():
        if rel == ".gitattributes":
            continue
        (into / rel).parent.mkdir(parents=True, exist_ok=True)
        (into / rel).write_bytes(content)
    return into


LOAD = """
import json, sys
from lerobot.datasets.lerobot_dataset import LeRobotDataset
ds = LeRobotDataset(sys.argv[1], video_backend="pyav")
item = ds[len(ds) // 2]
print(json.dumps({"revision": ds.revision, "frames": len(ds), "value": int(item["task_index_high_level"]),
                  "task": item["task"], "shape": list(item["observation.images.up"].shape)}))
"""


def load_with_lerobot(server: HubServer, repo_id: str, tmp_path: Path) -> dict:
    """lerobot's own loader, in a user's process, from the Hub (the stand-in), at the v3.0 tag it looks for."""
    proc = typed(["python", "-c", LOAD, repo_id], server=server, cwd=tmp_path, home=tmp_path / "lerobot-user")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["revision"] == "v3.0" and got["frames"] == sum(LENGTHS) and got["value"] >= -1
    assert isinstance(got["task"], str) and got["task"] and got["shape"][-2:] == [48, 64]  # a decoded frame
    return got


def downloaded_files(server: HubServer, repo_id: str) -> set[str]:
    return set(server.downloaded(repo_id))


def episode_files(root: Path, episodes, cameras=CAMERAS) -> set[str]:
    from hub_pgen.source.lerobot import load_metadata
    from hub_pgen.source.needs import files

    meta = load_metadata(root)
    return set(files(meta, data=set(episodes), videos=set(episodes), cameras=cameras))


# --- the card's command, as typed --------------------------------------------------------------------


@pytest.mark.slow
def test_the_cards_command_as_typed_labels_generates_and_pushes(server, on_the_hub, tmp_path):
    proc = typed(["hub-pgen", "--repo-id", CARD_REPO, "--push-to", "user/new"], server=server, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # said up front: the dataset has no skills, the model labels them, what it adds
    assert "--skills auto: the dataset has no skill annotation" in proc.stderr
    assert f"{len(LENGTHS)} episode(s), {len(LENGTHS)} extra model call(s)" in proc.stderr
    # the run names the device and dtype it used
    assert "on device cpu, dtype float32" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    assert list((tmp_path / "hub-pgen-out").iterdir())  # the default, versioned output folder
    out = pulled(server, "user/new", "v3.0", tmp_path / "pushed")
    validate(out, source=on_the_hub)
    prov = json.loads((out / layout.PROVENANCE_PATH).read_text())
    assert prov["source"]["repo_id"] == CARD_REPO and prov["skills"]["source"] == "annotate"
    # a random tiny model labels most episodes usably; every episode is accounted for
    assert prov["skills"]["requested"] == "auto" and prov["skills"]["labelled"] >= 1
    assert prov["skills"]["labelled"] + len(prov["skills"]["failed"]) == len(LENGTHS)
    assert prov["generation"]["model"] == "Qwen/Qwen3-VL-8B-Instruct"
    assert "labelled by the transformers backend (the dataset had none (--skills auto)" in (
        out / layout.CARD_PATH).read_text()
    labels = [json.loads(line) for line in (out / layout.SKILL_ANNOTATIONS_PATH).read_text().splitlines()]
    assert [r["episode_index"] for r in labels] == list(range(len(LENGTHS)))  # each episode's answer, journaled
    assert prov["counts"]["ok"] > 0
    load_with_lerobot(server, "user/new", tmp_path)


# --- every --skills source through --repo-id ---------------------------------------------------------


@pytest.fixture(scope="module")
def with_subtasks(server, recorded, tmp_path_factory):
    """The same recording after lerobot-annotate's plan module: subtask rows, no skills.json."""
    from .test_language import annotate_with_lerobot

    src = tmp_path_factory.mktemp("subtasks") / "src"
    shutil.copytree(recorded, src)
    annotate_with_lerobot(src, {
        e: {"plan": [{"role": "assistant", "content": "reach", "style": "subtask", "timestamp": 0.0},
                     {"role": "assistant", "content": "grasp", "style": "subtask", "timestamp": 1.0}]}
        for e in range(len(LENGTHS))})
    seed(server, "lerobot/with_subtasks", src)
    return src


@pytest.mark.slow
@pytest.mark.parametrize("skills", ["auto", "annotate", "language"])
def test_every_skills_source_works_on_repo_id_as_on_root(skills, server, user, on_the_hub, with_subtasks,
                                                         tmp_path, capsys):
    repo, src = (("lerobot/with_subtasks", with_subtasks) if skills == "language" else (CARD_REPO, on_the_hub))
    flags = ["--backend", "template", "--skills", skills]
    assert main(["--repo-id", repo, "--push-to", f"user/{skills}", "-q", *flags]) == 0, capsys.readouterr().err
    hub_out = pulled(server, f"user/{skills}", "v3.0", tmp_path / "pushed")
    validate(hub_out, source=src)
    local = tmp_path / "local"
    assert main(["--root", str(src), "--output-dir", str(local), "-q", *flags]) == 0
    prov = json.loads((hub_out / layout.PROVENANCE_PATH).read_text())
    assert prov["skills"]["source"] == ("language" if skills == "language" else "annotate")
    # the same skills and dialogues as from the folder on disk
    assert (hub_out / layout.SKILLS_PATH).read_bytes() == (local / layout.SKILLS_PATH).read_bytes()

    def data(root: Path) -> dict:
        return {k: v for k, v in tree_hashes(root).items() if k.startswith(("data/", "videos/"))}

    assert data(hub_out) == data(local)
    load_with_lerobot(server, f"user/{skills}", tmp_path)


def test_skills_file_on_a_hub_dataset_without_one_is_exit_3_naming_annotate(server, user, on_the_hub, capsys):
    assert main(["--repo-id", CARD_REPO, "--backend", "template", "--skills", "file"]) == 3
    err = capsys.readouterr().err
    assert f"--skills file: dataset repo {CARD_REPO} at" in err and "has no meta/skills.json" in err
    assert "TIP: let the model label the skills first: --skills annotate" in err
    assert not any(p.startswith("videos/") for p in server.downloaded(CARD_REPO))
    assert not (user / "hub-pgen-out").exists()


def test_a_dry_run_prices_the_labelling_and_downloads_no_video(server, user, on_the_hub, capsys):
    assert main(["--repo-id", CARD_REPO, "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plan_report"]
    assert plan["skills"] == "annotate" and plan["labelling_model_calls"] == len(LENGTHS)
    got = downloaded_files(server, CARD_REPO)
    assert got and not any(p.startswith("videos/") for p in got)


def test_an_episodes_dry_run_downloads_only_its_episodes_data(server, user, on_the_hub, capsys):
    assert main(["--repo-id", CARD_REPO, "--backend", "template", "--episodes", "1,4", "--dry-run", "--json"]) == 0
    got = {p for p in downloaded_files(server, CARD_REPO) if not p.startswith("meta/")}
    assert got == episode_files(on_the_hub, {1, 4}, cameras=())


# --- one job over many machines, on a dataset without skills ------------------------------------------


@pytest.mark.slow
def test_a_sharded_job_labels_once_each_shard_fetches_its_own_files_and_the_merge_pushes(
        server, user, on_the_hub, tmp_path, capsys, monkeypatch):
    common = ["--repo-id", CARD_REPO, "--backend", "template", "-q"]
    # a shard cannot label: the run says what to do instead, before anything is downloaded past meta/ and data
    assert main([*common, "--num-shards", "3", "--shard-index", "0"]) == 3
    assert "hub-pgen label --repo-id lerobot/svla_so101_pickplace" in capsys.readouterr().err
    # 1. label once
    assert main(["label", *common, "--output-dir", str(tmp_path / "labels")]) == 0
    labels = tmp_path / "labels" / layout.SKILLS_PATH
    assert labels.is_file() and (tmp_path / "labels" / layout.SKILL_ANNOTATIONS_PATH).is_file()
    # a template shard sees no image: it downloads no video for the merged page's pictures either (the
    # merge decodes those), and its thumbnails file is empty
    from hub_pgen.review import shard_thumbs

    decoded: list[int] = []
    with monkeypatch.context() as m:
        m.setattr(shard_thumbs, "decode_thumbs", lambda samples, **kw: decoded.append(len(samples)) or {})
        m.setenv("HF_HOME", str(tmp_path / "machine-template"))
        server.clear_log()
        assert main([*common, "--skills-file", str(labels), "--num-shards", "3", "--shard-index", "0", "--output-dir",
                     str(tmp_path / "t0")]) == 0
    assert not [p for p in downloaded_files(server, CARD_REPO) if p.startswith("videos/")]
    assert (tmp_path / "t0" / layout.SHARD_THUMBS_PATH).read_bytes() == b"" and decoded == []
    # 2. the shards, each on a fresh machine (its own cache), with a model server that sees the images:
    # only its own episodes' data and video files come down
    from .openai_server import OpenAIServer

    owners: dict[int, set[int]] = {}
    with OpenAIServer() as model_server:
        model = ["--backend", "openai", "--base-url", model_server.url, "--model", "tiny-pgen"]
        for i in range(3):
            server.clear_log()
            monkeypatch.setenv("HF_HOME", str(tmp_path / f"machine-{i}"))
            assert main([*common, *model, "--skills-file", str(labels), "--num-shards", "3", "--shard-index", str(i),
                         "--output-dir", str(tmp_path / f"s{i}")]) == 0, capsys.readouterr().err
            prov = json.loads((tmp_path / f"s{i}" / layout.PROVENANCE_PATH).read_text())
            owners[i] = set(prov["shard"]["episodes"])
            got = {p for p in downloaded_files(server, CARD_REPO) if not p.startswith("meta/")}
            assert got == episode_files(on_the_hub, owners[i]), got
        # the one-machine run on the same labels, to compare the merge with
        one = tmp_path / "one"
        monkeypatch.setenv("HF_HOME", str(tmp_path / "one-machine"))
        assert main([*common, *model, "--skills-file", str(labels), "--output-dir", str(one)]) == 0
        assert (tmp_path / f"s{i}" / layout.SKILLS_PATH).read_bytes() == labels.read_bytes()  # the merge's copy
    assert sorted(e for eps in owners.values() for e in eps) == list(range(len(LENGTHS)))
    # 3. the merge, elsewhere (the labels only in the shards), fetches the rest once and pushes
    monkeypatch.setenv("HF_HOME", str(tmp_path / "merger"))
    shutil.move(tmp_path / "labels", tmp_path / "labels-gone")
    server.clear_log()
    from hub_pgen.review import thumbs

    real, merge_decoded = thumbs.decode_thumbs, []
    with monkeypatch.context() as m:
        m.setattr(thumbs, "decode_thumbs", lambda samples, **kw: merge_decoded.append(len(samples)) or real(samples, **kw))
        assert main(["merge", *(str(tmp_path / f"s{i}") for i in range(3)), "--repo-id", CARD_REPO, "--output-dir",
                     str(tmp_path / "merged"), "--push-to", "user/sharded", "-q"]) == 0, capsys.readouterr().err
    assert sum(merge_decoded) == 0  # the page's pictures: those the shards' model saw
    got = [p for p in server.downloaded(CARD_REPO) if not p.startswith("meta/")]
    assert sorted(got) == sorted(set(got))  # each file once
    pushed = pulled(server, "user/sharded", "v3.0", tmp_path / "pushed")
    validate(pushed, source=on_the_hub)
    # the page's pictures, from the shards: those of the one-machine run
    img = re.compile(r'<img class="thumb"[^>]*>')
    shown = img.findall((pushed / layout.REPORT_PATH).read_text(encoding="utf-8"))
    assert shown and shown == img.findall((one / layout.REPORT_PATH).read_text(encoding="utf-8"))
    assert all((tmp_path / f"s{i}" / layout.SHARD_THUMBS_PATH).read_bytes() for i in range(3))
    # the merge is the one-machine run on the same labels

    def dataset(root: Path) -> dict:
        return {k: v for k, v in tree_hashes(root).items() if k.startswith(("data/", "videos/", "meta/tasks"))}

    assert dataset(tmp_path / "merged") == dataset(one)
    load_with_lerobot(server, "user/sharded", tmp_path)


# --- the other doors: the seed brief's script, report, --job -----------------------------------------


@pytest.mark.slow
def test_the_seed_scripts_command_as_typed(server, on_the_hub, tmp_path, tmp_path_factory):
    """The Hi Robot brief's own command: python scripts/annotate_pgen.py ... --model Qwen3-VL-30B-A3B."""
    moe = tiny_model_dir(tmp_path_factory.mktemp("tiny-moe"), "qwen3_vl_moe")
    seed(server, "Qwen/Qwen3-VL-30B-A3B-Instruct", moe, kind="model")
    out = tmp_path / "PATH"
    proc = typed(["python", str(REPO / "scripts" / "annotate_pgen.py"), "--output-dir", str(out), "--repo-id", CARD_REPO,
                  "--model", "Qwen/Qwen3-VL-30B-A3B-Instruct", "--batch-size", "1"], server=server, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--skills auto: the dataset has no skill annotation" in proc.stderr
    assert "(qwen3_vl_moe) on device cpu, dtype float32" in proc.stderr
    validate(out, source=on_the_hub)
    prov = json.loads((out / layout.PROVENANCE_PATH).read_text())
    assert prov["generation"]["model"] == "Qwen/Qwen3-VL-30B-A3B-Instruct" and prov["skills"]["requested"] == "auto"


def test_report_redraws_the_page_of_a_result_made_from_the_hub(server, user, on_the_hub, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--repo-id", CARD_REPO, "--backend", "template", "--output-dir", str(out), "-q"]) == 0
    page = (out / layout.REPORT_PATH).read_bytes()
    assert b"the dataset had none (--skills auto)" in page  # where the skills came from, on the page too
    (out / layout.REPORT_PATH).unlink()
    assert main(["report", str(out), "-q"]) == 0
    assert (out / layout.REPORT_PATH).read_bytes() == page


def test_a_job_on_a_dataset_without_skills_runs_the_same_command_there(server, user, on_the_hub, tmp_path, capsys,
                                                                        monkeypatch):
    """--job sends the card's command as typed; run where the job runs (a fresh process against the Hub),
    that command labels, generates and pushes like a local run."""
    import huggingface_hub.constants

    from hub_pgen import jobs_api

    from .jobs_server import JobsServer

    spec = "hub-pgen @ git+https://github.com/someone/hub-pgen@" + "a" * 40
    with JobsServer(token=TOKEN) as api:
        monkeypatch.setenv("HF_ENDPOINT", api.url)
        monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
        monkeypatch.setattr(jobs_api, "POLL_S", 0.05)
        assert main(["--repo-id", CARD_REPO, "--push-to", "user/by-job", "--backend", "template", "--job", "h200",
                     "--job-install", spec, "-q"]) == 0, capsys.readouterr().err
        [sent] = api.submissions
    command = sent["command"]
    assert command[:6] == ["uv", "tool", "run", "--from", spec, "hub-pgen"] and "--skills" not in command
    proc = typed(["hub-pgen", *command[6:]], server=server, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    validate(pulled(server, "user/by-job", "v3.0", tmp_path / "pushed"), source=on_the_hub)


@pytest.mark.parametrize("shards", ["1", "3"])
def test_the_workflows_plan_job_on_a_dataset_without_skills(shards, server, on_the_hub, tmp_path):
    """pgen.yml's plan step, run as Actions runs it (bash -eo pipefail, inputs through env) with the real
    hub-pgen against the Hub: it prices the labelling, and asks for a label job when the job is sharded."""
    import re

    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load((REPO / ".github" / "workflows" / "pgen.yml").read_text())
    step = next(s for s in wf["jobs"]["plan"]["steps"] if s.get("id") == "plan")
    values = {"inputs.repo-id": CARD_REPO, "inputs.revision": "", "inputs.model": "Qwen/Qwen3-VL-8B-Instruct",
              "inputs.batch-size": "4", "inputs.sampling": "segment", "inputs.skills": "auto", "inputs.format": "both",
              "inputs.shards": shards, "secrets.HF_TOKEN": TOKEN}
    env = {k: re.sub(r"\$\{\{\s*(.*?)\s*\}\}", lambda m: values[m.group(1)], str(v)) for k, v in step["env"].items()}
    env |= user_env(server, tmp_path / "hf_home")
    env |= {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "GITHUB_OUTPUT": str(tmp_path / "output"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    (tmp_path / "step.sh").write_text(step["run"])
    server.clear_log()
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(tmp_path / "step.sh")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "output").read_text() == f"label={'true' if shards == '3' else 'false'}\n"
    summary = (tmp_path / "summary.md").read_text()
    assert "| skills | annotate |" in summary and f"{len(LENGTHS)} episode(s), {len(LENGTHS)} model call(s)" in summary
    assert "GPU time (estimate)" in summary
    assert not any(p.startswith("videos/") for p in server.downloaded(CARD_REPO))
