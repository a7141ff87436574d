"""The Hub in and out, with the real huggingface_hub client talking HTTP to a loopback stand-in.

Nothing is patched: ``HF_ENDPOINT`` points at :class:`tests.hubserver.HubServer` on 127.0.0.1, and
the assertions read what the server saw (its request log) and holds (commits, branches, tags).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub_pgen import layout
from hub_pgen.errors import HubError, OutputError, UsageError, ValidationError
from hub_pgen.push.hub import PushResult, RetryPolicy, local_files, push_dataset
from hub_pgen.source import hub as src_hub
from hub_pgen.source import hub_api

try:
    from .hubserver import TOKEN, HubServer
except ImportError:  # tests/ not a package: pytest put tests/ itself on sys.path
    from hubserver import TOKEN, HubServer

# Before huggingface_hub is first imported (it reads these once): no telemetry, no Xet.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

CAMERAS = ("observation.images.up", "observation.images.side")
FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)
REPO = Path(__file__).resolve().parents[1]


# --- fixtures -----------------------------------------------------------------------------------


def _example_builder():
    try:
        from hub_pgen.example import ExampleSpec, build_example_dataset
    except ImportError:
        return None
    return lambda root: Path(build_example_dataset(root, ExampleSpec()))


@pytest.fixture(scope="module")
def source_dataset(tmp_path_factory) -> Path:
    """A skill-annotated LeRobot v3.0 dataset with two cameras: the shared example when it exists,
    else a small folder with the same layout (enough for the download side)."""
    root = tmp_path_factory.mktemp("source") / "ds"
    build = _example_builder()
    return build(root) if build is not None else make_fake_dataset(root)


@pytest.fixture(scope="module")
def finished_output(tmp_path_factory, source_dataset) -> Path:
    """A finished hub-pgen dataset: the template backend run on ``source_dataset``."""
    return run_template(source_dataset, tmp_path_factory.mktemp("run") / "out")


@pytest.fixture(scope="module")
def loadable_output(tmp_path_factory, finished_output) -> Path:
    """A hub-pgen output whose videos decode: from the shared example when it exists, else from a
    tiny dataset written by lerobot itself (plus skills), so the check never rests on a fake."""
    if _example_builder() is not None:
        return finished_output
    base = tmp_path_factory.mktemp("lerobot-made")
    proc = subprocess.run([sys.executable, "-c", LEROBOT_WRITER, str(base / "src")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HOME": str(base / "hf")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    skills = {"coarse_description": "pick the cube", "skill_to_task_index": {"reach": 0, "grasp": 1},
              "episodes": {str(e): {"episode_index": e, "description": "pick the cube", "skills": [
                  {"name": "reach", "start": 0.0, "end": 0.4}, {"name": "grasp", "start": 0.4, "end": 0.7}]}
                  for e in range(2)}}
    (base / "src" / layout.SKILLS_PATH).write_text(json.dumps(skills))
    return run_template(base / "src", base / "out")


LEROBOT_WRITER = """
import sys
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
cams = ("observation.images.up", "observation.images.side")
feats = {cam: {"dtype": "video", "shape": (32, 32, 3), "names": ["height", "width", "channels"]} for cam in cams}
feats["observation.state"] = {"dtype": "float32", "shape": (2,), "names": None}
ds = LeRobotDataset.create("me/tiny", fps=10, features=feats, root=sys.argv[1], use_videos=True)
for e in range(2):
    for f in range(8):
        frame = {cam: np.full((32, 32, 3), 20 * f, np.uint8) for cam in cams}
        ds.add_frame(frame | {"observation.state": np.zeros(2, np.float32), "task": "pick the cube"})
    ds.save_episode()
ds.finalize()
"""


def run_template(source: Path, out: Path) -> Path:
    from hub_pgen.cli import main

    assert main(["--root", str(source), "--output-dir", str(out), "--backend", "template", "-q"]) == 0
    return out


def make_fake_dataset(root: Path, *, episodes: int = 2, frames: int = 6) -> Path:
    """The LeRobot v3.0 layout with tiny files: metadata hub-pgen reads, placeholder video bytes."""
    import pandas as pd

    fps = 10
    feats = {
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    for cam in CAMERAS:
        feats[cam] = {"dtype": "video", "shape": [8, 8, 3], "names": ["height", "width", "channels"]}
    info = {"codebase_version": "v3.0", "fps": fps, "features": feats, "total_episodes": episodes,
            "total_frames": episodes * frames, "total_tasks": 1, "chunks_size": 1000,
            "data_path": layout.DEFAULT_DATA_PATH, "video_path": layout.DEFAULT_VIDEO_PATH}
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / layout.INFO_PATH).write_text(json.dumps(info, indent=2))
    pd.DataFrame({"task_index": [0]}, index=pd.Index(["pick the cube"], name="task")).to_parquet(root / layout.TASKS_PATH)
    rows, eps = [], []
    for e in range(episodes):
        for f in range(frames):
            rows.append({"timestamp": f / fps, "frame_index": f, "episode_index": e, "index": e * frames + f,
                         "task_index": 0})
        ep = {"episode_index": e, "length": frames, "dataset_from_index": e * frames,
              "dataset_to_index": (e + 1) * frames, "data/chunk_index": 0, "data/file_index": 0, "tasks": ["pick the cube"]}
        for cam in CAMERAS:
            ep.update({f"videos/{cam}/chunk_index": 0, f"videos/{cam}/file_index": 0,
                       f"videos/{cam}/from_timestamp": e * frames / fps, f"videos/{cam}/to_timestamp": (e + 1) * frames / fps})
        eps.append(ep)
    pd.DataFrame(rows).to_parquet(root / "data" / "chunk-000" / "file-000.parquet")
    pd.DataFrame(eps).to_parquet(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    (root / layout.STATS_PATH).write_text("{}")
    skills = {"coarse_description": "pick the cube", "skill_to_task_index": {"reach": 0, "grasp": 1},
              "episodes": {str(e): {"episode_index": e, "description": "pick the cube", "skills": [
                  {"name": "reach", "start": 0.0, "end": 0.3}, {"name": "grasp", "start": 0.3, "end": 0.6}]}
                  for e in range(episodes)}}
    (root / layout.SKILLS_PATH).write_text(json.dumps(skills))
    for i, cam in enumerate(CAMERAS):
        p = root / "videos" / cam / "chunk-000" / "file-000.mp4"
        p.parent.mkdir(parents=True)
        p.write_bytes(bytes([i]) * 3000)
    return root


def make_fake_output(out: Path) -> Path:
    make_fake_dataset(out)
    (out / layout.SYN_ANNOTATIONS_PATH).write_text('{"sample_id": "ep000000-f000000"}\n')
    (out / layout.CARD_PATH).write_text("---\ntags:\n- LeRobot\ntask_categories:\n- robotics\n---\n# fake output\n")
    (out / layout.PROVENANCE_PATH).write_text(json.dumps({"fingerprint": "0123456789abcdef", "source": {}}))
    return out


def seed(server: HubServer, repo_id: str, folder: Path, *, tag: bool = True) -> str:
    server.create_repo(repo_id)
    sha = server.commit_folder(repo_id, folder, message="add dataset")
    if tag:
        server.set_tag(repo_id, layout.CODEBASE_VERSION, sha)
    return sha


def tree(folder: Path) -> dict[str, bytes]:
    return {rel: p.read_bytes() for rel, p in local_files(folder, links_out=True).items()}


def payload(folder: Path, cameras: tuple[str, ...] | list[str] = CAMERAS) -> dict[str, bytes]:
    """What a run downloads: metadata, data, and the videos of ``cameras``."""
    keep = ("meta/", "data/") + tuple(f"videos/{c}/" for c in cameras)
    return {k: v for k, v in tree(folder).items() if k.startswith(keep)}


def push(folder: Path, repo_id: str, **kw) -> PushResult:
    return push_dataset(folder, repo_id, retry=FAST, **kw)


def copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# --- download -----------------------------------------------------------------------------------


def test_download_fetches_only_the_cameras_asked_for_at_a_pinned_sha(server, hub_env, source_dataset):
    sha = seed(server, "org/only-needed", source_dataset)
    snap = src_hub.download_source("org/only-needed", cameras=[CAMERAS[0]])
    assert (snap.revision, snap.sha) == ("v3.0", sha)
    got = server.downloaded("org/only-needed")
    assert got and all(p.startswith(("meta/", "data/", f"videos/{CAMERAS[0]}/")) for p in got), got
    assert any(p.startswith(f"videos/{CAMERAS[0]}/") for p in got)
    assert not any(p.startswith(f"videos/{CAMERAS[1]}/") for p in got)
    assert not (snap.root / "videos" / CAMERAS[1]).exists()
    # every request named the commit, never a moving ref, once the revision was resolved
    assert {r.revision for r in server.requests if r.endpoint in ("resolve", "tree")} == {sha}
    assert tree(snap.root) == payload(source_dataset, cameras=[CAMERAS[0]])


def test_a_later_commit_on_main_does_not_change_a_pinned_download(server, hub_env, source_dataset, tmp_path):
    sha = seed(server, "org/pinned", source_dataset)
    server.commit_files("org/pinned", {layout.INFO_PATH: b'{"codebase_version": "v9"}', "data/extra.parquet": b"x"})
    snap = src_hub.download_source("org/pinned", revision=sha, cache_dir=tmp_path / "other-cache")
    assert snap.sha == sha and tree(snap.root) == payload(source_dataset)
    latest = src_hub.download_meta("org/pinned", revision="main", cache_dir=tmp_path / "other-cache")
    assert latest.sha != sha and b"v9" in (latest.root / layout.INFO_PATH).read_bytes()


def test_local_dir_gets_plain_files(server, hub_env, source_dataset, tmp_path):
    sha = seed(server, "org/plain", source_dataset)
    snap = src_hub.download_source("org/plain", local_dir=tmp_path / "plain")
    assert snap.root == (tmp_path / "plain").resolve() and snap.sha == sha
    assert {k: v for k, v in tree(snap.root).items() if not k.startswith(".cache/")} == payload(source_dataset)
    assert not any(p.is_symlink() for p in snap.root.rglob("*"))


def test_default_revision_is_the_v3_tag_when_present_else_main(server, hub_env, source_dataset):
    tagged = seed(server, "org/tagged", source_dataset)
    server.commit_files("org/tagged", {"notes.txt": b"newer than the tag"})
    assert src_hub.resolve_revision("org/tagged") == ("v3.0", tagged)
    untagged = seed(server, "org/untagged", source_dataset, tag=False)
    assert src_hub.resolve_revision("org/untagged") == ("main", untagged)
    head = server.repo("org/tagged").branches["main"]
    assert src_hub.resolve_revision("org/tagged", "main") == ("main", head)
    assert src_hub.resolve_revision("org/tagged", tagged) == (tagged, tagged)


@pytest.mark.parametrize("case", ["missing repo", "missing revision", "not a LeRobot dataset"])
def test_hub_problems_say_what_is_wrong_and_what_to_do(server, hub_env, source_dataset, tmp_path, case):
    """(A dataset without meta/skills.json is not a Hub problem: tests/test_hub_as_is.py runs it.)"""
    repo_id, revision = "org/no-such-repo", None
    if case != "missing repo":
        folder = copy_tree(source_dataset, tmp_path / "ds")
        if case == "not a LeRobot dataset":
            (folder / layout.INFO_PATH).unlink()
        repo_id = f"org/problem-{case.split()[1].replace('.', '-')}"
        seed(server, repo_id, folder)
        revision = "no-such-branch" if case == "missing revision" else None
    with pytest.raises(HubError) as e:
        src_hub.download_source(repo_id, revision=revision)
    msg, hint = str(e.value), e.value.hint or ""
    assert e.value.repo_id == repo_id and repo_id in msg and hint
    expect = {"missing repo": ("was not found", "HF_TOKEN"), "missing revision": ("'no-such-branch' does not exist", "--revision"),
              "not a LeRobot dataset": ("meta/info.json: it is not a LeRobot dataset", "v3.0")}[case]
    assert expect[0] in msg and expect[1] in hint
    assert not any(p.startswith(("data/", "videos/")) for p in server.downloaded(repo_id))
    assert TOKEN not in msg + hint


def test_offline_uses_a_warm_cache_and_fails_clearly_on_a_cold_one(server, hub_env, source_dataset, monkeypatch,
                                                                    tmp_path):
    sha = seed(server, "org/offline", source_dataset)
    online = src_hub.download_source("org/offline")
    server.clear_log()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = src_hub.download_source("org/offline")
    assert (offline.revision, offline.sha, offline.root) == ("v3.0", sha, online.root)
    assert server.requests == []  # not one request
    monkeypatch.setenv("HF_HOME", str(tmp_path / "cold"))
    with pytest.raises(HubError) as e:
        src_hub.download_source("org/offline")
    assert "HF_HUB_OFFLINE" in str(e.value) and "org/offline" in str(e.value)
    assert "network access" in (e.value.hint or "")
    # a pinned sha the cache never saw is just as clear
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        src_hub.download_source("org/offline", revision="f" * 40)
    assert server.requests == []


def test_offline_set_before_start_in_a_fresh_process(server, hub_env, source_dataset):
    """huggingface_hub reads HF_HUB_OFFLINE at import: check the variable as a user sets it."""
    seed(server, "org/offline-proc", source_dataset)
    src_hub.download_source("org/offline-proc")
    server.clear_log()
    code = ("from hub_pgen.source.hub import download_source; import sys\n"
            "try:\n s = download_source(sys.argv[1]); print('OK', s.sha)\n"
            "except Exception as e: print('ERR', type(e).__name__, e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    warm = subprocess.run([sys.executable, "-c", code, "org/offline-proc"], env=env, capture_output=True, text=True,
                          timeout=120)
    cold = subprocess.run([sys.executable, "-c", code, "org/offline-proc"], capture_output=True, text=True,
                          timeout=120, env={**env, "HF_HOME": str(hub_env.parent / "cold-proc")})
    assert warm.stdout.startswith("OK " + server.repo("org/offline-proc").tags["v3.0"]), warm.stdout + warm.stderr
    assert cold.stdout.startswith("ERR HubError") and "HF_HUB_OFFLINE" in cold.stdout, cold.stdout + cold.stderr
    assert server.requests == []


def test_open_hub_metadata_checks_cameras_before_downloading_data(server, hub_env, source_dataset):
    sha = seed(server, "org/open", source_dataset)
    with pytest.raises(UsageError, match="no-such-camera"):
        src_hub.open_hub_metadata("org/open", image_keys=["no-such-camera"])
    assert all(p.startswith("meta/") for p in server.downloaded("org/open"))
    meta = src_hub.open_hub_metadata("org/open")
    assert (meta.repo_id, meta.revision) == ("org/open", sha) and meta.absent_data == set(meta.data_paths)
    source = src_hub.fetch(meta, data=None)
    assert not source.absent_data
    assert source.episodes and all((source.root / ep.data_path).is_file() for ep in source.episodes.values())
    assert not any(p.startswith("videos/") for p in server.downloaded("org/open"))


def test_payload_patterns_follow_the_path_templates():
    info = {"data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": {c: {"dtype": "video"} for c in CAMERAS} | {"state": {"dtype": "float32"}}}
    assert src_hub.payload_patterns(info, None) == [
        "data/chunk-*", f"videos/{CAMERAS[0]}/chunk-*", f"videos/{CAMERAS[1]}/chunk-*"]
    assert src_hub.payload_patterns(info, [CAMERAS[1], "state"]) == ["data/chunk-*", f"videos/{CAMERAS[1]}/chunk-*"]
    assert src_hub.payload_patterns(info, None, videos=False) == ["data/chunk-*"]
    odd = {"video_path": "videos/{video_key}/x.mp4", "features": {"cam[1]": {"dtype": "video"}}}
    assert src_hub.payload_patterns(odd, None)[1] == "videos/cam[[]1[]]/x.mp4"


# --- push ---------------------------------------------------------------------------------------


def test_push_creates_the_repo_commits_once_and_tags_v3(server, hub_env, finished_output):
    result = push(finished_output, "me/new-dataset")
    repo = server.repo("me/new-dataset")
    assert result.created_repo and result.changed and result.tagged and result.branch == "main"
    assert repo.branches["main"] == result.commit_sha == repo.tags["v3.0"]
    assert len(server.history("me/new-dataset")) == 2  # the repo's first commit, then ours
    files = server.files_at("me/new-dataset", "main")
    assert {k: v for k, v in files.items() if k != ".gitattributes"} == tree(finished_output)
    assert files[layout.CARD_PATH] == (finished_output / layout.CARD_PATH).read_bytes()  # the card, untouched
    assert result.url == f"{server.url}/datasets/me/new-dataset"
    assert sum(r.endpoint == "commit" for r in server.requests) == 1
    assert not repo.private
    # file content went inside the commit (preupload said "regular"): no Xet, no LFS, nothing unknown
    assert {r.endpoint for r in server.requests} <= {"info", "create", "tree", "validate-yaml", "preupload",
                                                     "commit", "refs", "tag"}


def test_private_is_honoured_on_creation(server, hub_env, finished_output):
    push(finished_output, "me/private-one", private=True)
    assert server.repo("me/private-one").private
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=server.url, token=False).repo_info("me/private-one", repo_type="dataset")


@pytest.mark.slow
def test_lerobot_loads_the_pushed_dataset_by_repo_id(server, hub_env, loadable_output, tmp_path):
    """The user's view: ``LeRobotDataset("OWNER/NAME")`` resolves v3.0 through the Hub API and loads it."""
    result = push(loadable_output, "me/loadable")
    code = (
        "import json, sys\n"
        "from lerobot.datasets.lerobot_dataset import LeRobotDataset\n"
        "ds = LeRobotDataset(sys.argv[1], video_backend='pyav')\n"
        "item = ds[len(ds) // 2]\n"
        "print(json.dumps({'revision': ds.revision, 'frames': len(ds), 'root': str(ds.root),\n"
        "  'feature': 'task_index_high_level' in ds.features, 'value': int(item['task_index_high_level']),\n"
        "  'task': item['task'], 'images': [k for k in item if k.startswith('observation.images')]}))\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "lerobot-home"), "HF_LEROBOT_HOME": str(tmp_path / "lerobot-home" / "lerobot")}
    proc = subprocess.run([sys.executable, "-c", code, "me/loadable"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    info = json.loads((loadable_output / layout.INFO_PATH).read_text())
    assert got["revision"] == "v3.0" and got["feature"] and got["frames"] == info["total_frames"]
    assert got["images"] and isinstance(got["task"], str) and got["task"] and got["value"] >= -1
    assert any(r.revision in ("v3.0", result.commit_sha) for r in server.requests if r.endpoint == "info")
    assert TOKEN not in proc.stdout + proc.stderr


def test_push_to_a_branch_leaves_main_and_its_tag_alone(server, hub_env, finished_output, tmp_path):
    first = push(finished_output, "me/branchy")
    changed = copy_tree(finished_output, tmp_path / "v2")
    records = changed / layout.SYN_ANNOTATIONS_PATH
    lines = records.read_text().splitlines()
    lines[0] = lines[0].replace('"user_prompt": "', '"user_prompt": "Changed: ', 1)
    records.write_text("\n".join(lines) + "\n")
    on_branch = push(changed, "me/branchy", branch="exp/2")
    repo = server.repo("me/branchy")
    assert repo.branches["main"] == first.commit_sha and repo.tags["v3.0"] == first.commit_sha
    assert repo.branches["exp/2"] == on_branch.commit_sha != first.commit_sha
    assert not on_branch.tagged and on_branch.url.endswith("/tree/exp%2F2")
    assert server.history("me/branchy", "exp/2")[1].oid == first.commit_sha  # branched from main
    assert server.files_at("me/branchy", "exp/2")[layout.SYN_ANNOTATIONS_PATH] == records.read_bytes()
    moved = push(changed, "me/branchy", branch="exp/3", tag_version=True)
    assert moved.tagged and repo.tags["v3.0"] == moved.commit_sha and repo.branches["main"] == first.commit_sha


def test_a_branch_push_to_a_new_repo_branches_from_its_first_commit(server, hub_env, finished_output):
    result = push(finished_output, "me/branch-first", branch="pgen")
    repo = server.repo("me/branch-first")
    assert result.created_repo and not result.tagged and "v3.0" not in repo.tags
    assert set(server.files_at("me/branch-first", "main")) == {".gitattributes"}
    assert repo.branches["pgen"] == result.commit_sha


def test_pushing_the_same_folder_again_changes_nothing(server, hub_env, finished_output):
    first = push(finished_output, "me/again")
    commits = len(server.history("me/again"))
    second = push(finished_output, "me/again")
    assert second.commit_sha == first.commit_sha and not second.changed and second.tagged
    assert len(server.history("me/again")) == commits
    assert sum(r.endpoint == "commit" for r in server.requests) == 1 and sum(
        r.endpoint == "tag" for r in server.requests) == 1


def test_a_new_version_replaces_the_old_files_in_one_commit(server, hub_env, finished_output, tmp_path):
    first = push(finished_output, "me/replace")
    older = copy_tree(finished_output, tmp_path / "older")
    (older / "meta" / "leftover.json").write_text("{}")
    push(older, "me/replace", branch="main")
    result = push(finished_output, "me/replace")
    files = server.files_at("me/replace", "main")
    assert "meta/leftover.json" not in files and result.changed
    assert {k: v for k, v in files.items() if k != ".gitattributes"} == tree(finished_output)
    assert server.repo("me/replace").tags["v3.0"] == result.commit_sha != first.commit_sha


def test_a_503_on_the_commit_is_retried(server, hub_env, finished_output):
    server.fail_next("commit", status=503, times=2)
    result = push(finished_output, "me/flaky")
    assert [r.status for r in server.requests if r.endpoint == "commit"] == [503, 503, 200]
    assert len(server.history("me/flaky")) == 2 and server.repo("me/flaky").branches["main"] == result.commit_sha


def test_a_429_with_retry_after_is_retried(server, hub_env, finished_output):
    server.fail_next("commit", status=429, times=1, retry_after=0.01)
    assert push(finished_output, "me/limited").changed
    assert [r.status for r in server.requests if r.endpoint == "commit"] == [429, 200]


def test_a_connection_dropped_mid_commit_is_retried_and_lands_once(server, hub_env, finished_output):
    server.drop_next("commit")
    result = push(finished_output, "me/dropped")
    assert [r.status for r in server.requests if r.endpoint == "commit"] == [0, 200]
    assert len(server.history("me/dropped")) == 2 and result.tagged


def test_a_commit_whose_answer_is_lost_is_not_made_twice(server, hub_env, finished_output):
    server.drop_next("commit", after_apply=True)
    result = push(finished_output, "me/lost-answer")
    assert [r.status for r in server.requests if r.endpoint == "commit"] == [0]  # the retry found it there
    assert len(server.history("me/lost-answer")) == 2 and result.changed and result.tagged
    assert server.repo("me/lost-answer").branches["main"] == result.commit_sha


def test_retries_are_bounded_and_end_in_a_hub_error(server, hub_env, finished_output):
    server.fail_next("commit", status=503, times=10)
    with pytest.raises(HubError) as e:
        push_dataset(finished_output, "me/down", retry=RetryPolicy(attempts=3, base_delay=0.01))
    assert "503" in str(e.value) and e.value.repo_id == "me/down" and e.value.hint
    assert sum(r.endpoint == "commit" for r in server.requests) == 3
    assert len(server.history("me/down")) == 1  # nothing half-pushed: only the repo's first commit
    server.clear_faults()


def test_a_4xx_is_not_retried(server, hub_env, finished_output):
    server.fail_next("commit", status=403, times=1)
    with pytest.raises(HubError, match="403") as e:
        push(finished_output, "me/forbidden")
    assert "write access" in e.value.hint
    assert sum(r.endpoint == "commit" for r in server.requests) == 1


@pytest.mark.parametrize("moment", ["body cut off", "answer lost"])
def test_a_push_killed_mid_commit_then_rerun_leaves_one_complete_dataset(server, hub_env, finished_output, tmp_path,
                                                                         moment):
    """SIGKILL during the commit request. "body cut off": the client dies while its body is on the
    wire (a 16 MB file keeps it sending), and the server applies nothing. "answer lost": the server
    has the whole body and applies it after the client died. Either way the repo holds the old
    state or the whole new one, and the rerun ends with one complete dataset and one commit."""
    folder = finished_output
    if moment == "body cut off":
        folder = copy_tree(finished_output, tmp_path / "big")
        (folder / "meta" / "padding.bin").write_bytes(os.urandom(16 << 20))
    repo_id = "me/killed-" + moment.split()[1]
    server.create_repo(repo_id)
    hold = server.hold_next("commit", after_body=moment == "answer lost")
    code = ("import sys; from pathlib import Path; from hub_pgen.push.hub import push_dataset\n"
            "push_dataset(Path(sys.argv[1]), sys.argv[2])\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), repo_id],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert hold.reached.wait(120), "the push never reached the commit endpoint"
        time.sleep(0.3)  # let the client fill the socket buffers
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        hold.release()
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and hold.outcome is None:
        time.sleep(0.05)
    assert proc.returncode == -signal.SIGKILL and TOKEN not in out + err
    assert hold.outcome == {"body cut off": "truncated", "answer lost": "applied"}[moment]
    files = server.files_at(repo_id, "main")
    if moment == "body cut off":
        assert set(files) == {".gitattributes"}
    else:
        assert {k: v for k, v in files.items() if k != ".gitattributes"} == tree(folder)
    result = push(folder, repo_id)
    files = server.files_at(repo_id, "main")
    assert {k: v for k, v in files.items() if k != ".gitattributes"} == tree(folder)
    assert len(server.history(repo_id)) == 2 and server.repo(repo_id).tags["v3.0"] == result.commit_sha
    assert result.changed == (moment == "body cut off")


def test_an_unfinished_or_invalid_folder_is_refused_before_any_request(server, hub_env, finished_output, tmp_path):
    partial = copy_tree(finished_output, tmp_path / "partial")
    (partial / layout.PROVENANCE_PATH).unlink()
    with pytest.raises(OutputError, match="hub_pgen.json") as e:
        push(partial, "me/never")
    assert "rerun" in e.value.hint

    def reject(folder: Path) -> None:
        raise ValidationError(folder, ["tasks.parquet: task_index values are not unique"])

    with pytest.raises(ValidationError):
        push(finished_output, "me/never", validate=reject)
    with pytest.raises(OutputError):
        push(tmp_path / "missing", "me/never")
    with pytest.raises(UsageError, match="OWNER/NAME"):
        push(finished_output, "no-owner")
    # (a request of an earlier test's killed push may still land in the log: only ours count)
    assert [r for r in server.requests if r.repo_id in ("me/never", "no-owner")] == []


def test_the_token_is_sent_but_never_written_or_logged(server, hub_env, source_dataset, finished_output, tmp_path,
                                                       caplog, capfd):
    import logging

    caplog.set_level(logging.DEBUG)
    seed(server, "org/secret-src", source_dataset)
    snap = src_hub.download_source("org/secret-src")
    server.fail_next("commit", status=503, times=1)  # the retry path logs too
    result = push(finished_output, "me/secret-dst")
    with pytest.raises(HubError) as e:
        src_hub.download_source("org/missing-secret")
    assert server.auth_headers and set(server.auth_headers) == {f"Bearer {TOKEN}"}
    assert all(r.authorized for r in server.requests)
    out, err = capfd.readouterr()
    written = [p for p in tmp_path.rglob("*") if p.is_file()] + [p for p in snap.root.rglob("*") if p.is_file()]
    assert written and hub_env.is_dir()
    leaks = [str(p) for p in written if TOKEN.encode() in p.read_bytes()]
    assert leaks == []
    for text in (caplog.text, out, err, str(e.value), e.value.hint or "", repr(result)):
        assert TOKEN not in text


def test_redact_hides_tokens(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnopqrstuvwxyz")
    assert hub_api.redact("a hf_abcdefghijklmnopqrstuvwxyz b") == "a *** b"
    assert hub_api.redact("x hf_ZZZZZZZZZZZZZZZZZZZZZZZZZ y") == "x hf_*** y"
    assert hub_api.redact("t0ken-here", "t0ken-here") == "***"


# --- the CLI, end to end through the stand-in ---------------------------------------------------


@pytest.mark.slow
def test_cli_from_hub_to_hub(server, hub_env, source_dataset, tmp_path, capsys, monkeypatch):
    from hub_pgen.cli import main

    sha = seed(server, "org/cli-src", source_dataset)
    out = tmp_path / "out"
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    rc = main(["--repo-id", "org/cli-src", "--push-to", "me/cli-dst", "--backend", "template",
               "--output-dir", str(out), "--json"])
    assert rc == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["push"]["repo_id"] == "me/cli-dst" and result["push"]["tagged"]
    files = server.files_at("me/cli-dst", "v3.0")
    prov = json.loads(files[layout.PROVENANCE_PATH])
    assert prov["source"]["repo_id"] == "org/cli-src" and prov["source"]["sha"] == sha
    card = files[layout.CARD_PATH].decode()
    assert "https://huggingface.co/datasets/org/cli-src" in card and sha in card  # link back, pinned sha
    assert 'LeRobotDataset("me/cli-dst")' in card and '"seed": 0' in card  # how to load it; parameters
    # the review page is pushed with the dataset, named after the repo, and the card says how to see it
    page = files[layout.REPORT_PATH].decode()
    assert "<h1>hub-pgen review: me/cli-dst</h1>" in page and page.count('<article class="card') == result["samples"]
    assert "hf download me/cli-dst meta/hub_pgen_report.html --repo-type dataset" in card
    # in Actions: no progress bars from the libraries, and a Markdown job summary
    assert "Fetching" not in captured.err and "\r" not in captured.err
    text = summary.read_text()
    assert text.startswith("## hub-pgen") and "| ok | " in text and "me/cli-dst" in text
    assert "meta/hub_pgen_report.html" in text and "pgen-report-" in text
    # and the same command again: nothing new is generated or pushed
    commits = len(server.history("me/cli-dst"))
    assert main(["--repo-id", "org/cli-src", "--push-to", "me/cli-dst", "--backend", "template",
                 "--output-dir", str(out)]) == 0
    assert len(server.history("me/cli-dst")) == commits
    err = capsys.readouterr().err  # plain progress lines, one per stage (no Rich live display)
    assert "\x1b[" not in err and "\r" not in err and "push" in err and "already complete" in err


def test_generation_downloads_only_the_chosen_cameras_and_the_rest_before_writing(server, hub_env, source_dataset,
                                                                                 tmp_path):
    from hub_pgen import run as runner
    from hub_pgen.config import RunConfig
    from hub_pgen.generate.template import TemplateBackend

    seed(server, "org/two-cams", source_dataset)
    seen: list[list[str]] = []

    class Probe(TemplateBackend):
        """Template answers, but needs images (so frames are decoded) and notes what was downloaded."""

        needs_images = True

        def generate(self, requests):
            assert all(len(r.images) == 1 for r in requests)  # the up camera's frames, decoded
            seen.append(server.downloaded("org/two-cams"))
            return super().generate(requests)

    config = RunConfig(repo_id="org/two-cams", output_dir=tmp_path / "out", image_keys=(CAMERAS[0],))
    result = runner.run(config, backend=Probe())
    assert result.state == "written" and result.ok == result.samples and seen
    for got in seen:  # while generating: the chosen camera only
        assert any(p.startswith(f"videos/{CAMERAS[0]}/") for p in got)
        assert not any(p.startswith(f"videos/{CAMERAS[1]}/") for p in got), got
    # and the new dataset is complete: the other camera came down before the write
    assert any(p.startswith(f"videos/{CAMERAS[1]}/") for p in server.downloaded("org/two-cams"))
    assert (tmp_path / "out" / "videos" / CAMERAS[1]).is_dir()
    from hub_pgen.write.validate import validate

    validate(tmp_path / "out")


def test_a_dry_run_downloads_no_video(server, hub_env, source_dataset, capsys):
    from hub_pgen.cli import main

    seed(server, "org/dry", source_dataset)
    assert main(["--repo-id", "org/dry", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] > 0
    got = server.downloaded("org/dry")
    assert any(p.startswith("data/") for p in got) and not any(p.startswith("videos/") for p in got), got


def test_the_pushed_card_names_the_repo_it_went_to_and_the_provenance_counts(server, hub_env, source_dataset,
                                                                              tmp_path):
    """The run was made without --push-to (its card could not know the repo); the push renders the
    card for where it goes, and its figures are the provenance's."""
    import re

    out = run_template(source_dataset, tmp_path / "out")
    assert "local/dataset" in (out / layout.CARD_PATH).read_text()
    push(out, "me/carded", branch="pgen-v1")
    card = server.files_at("me/carded", "pgen-v1")[layout.CARD_PATH].decode()
    assert 'LeRobotDataset("me/carded", revision="pgen-v1")' in card and "<this repo id>" not in card
    assert card == (out / layout.CARD_PATH).read_text()  # the local folder says the same
    counts = json.loads((out / layout.PROVENANCE_PATH).read_text())["counts"]
    table = dict(re.findall(r"^\| (.+?) \| (.+?) \|$", card, re.M))
    assert table["new tasks rows"] == str(counts["new_tasks"]) and table["samples"] == str(counts["samples"])
    assert str(source_dataset.parent) not in card  # no local path in a public card
