"""The README is a contract: every command in its ``bash`` blocks runs, as typed, in a user's shell.

Each command line of the README (``hub-pgen ...``, ``python scripts/...``; continuation lines joined)
must have a road here (:data:`ROADS`) — a README example added without one fails
:func:`test_every_readme_command_has_a_road`. Each road runs its command with ``bash -c`` exactly as
the README prints it, in one session folder that plays the user's home and working folder, in the
order the README gives them (a later example may read an earlier one's output, as a reader's would).
What stands in for the world, and nothing else:

- the Hugging Face Hub is the loopback stand-in (``HF_ENDPOINT``): ``lerobot/svla_so101_pickplace`` is a
  dataset recorded with lerobot's own API, with no skills (as the public one has none), and the models
  the README names are tiny random-weight Qwen-VL models of the same families under the same names;
- ``~/data/pickplace`` is a skill-annotated LeRobot v3.0 dataset on disk (``hub_pgen.example``);
- the OpenAI-compatible server of ``--base-url http://127.0.0.1:8000/v1`` is the loopback stand-in on
  that port (another free port when 8000 is taken: the one substitution);
- ``vllm`` on ``PATH`` (``--serve vllm``) starts that stand-in under the model's name;
- the Hugging Face Jobs API is its loopback stand-in, a Ray cluster a local ``ray start --head``;
- ``d_labeled.jsonl`` is the user's D_labeled file; ``OUT`` is the first example's output; the Slurm
  example's ``R`` and ``M`` are the dataset and model the README uses around it; ``$I`` and
  ``$SLURM_ARRAY_TASK_ID`` go 0 .. 3, as on four machines.

The card's main command and the Hi Robot brief's script are run in ``tests/test_hub_as_is.py``; their
roads here name those tests (which must exist and type the same command).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hub_pgen import layout
from hub_pgen.write.validate import validate

from .hubserver import TOKEN, HubServer
from .recorded import record_with_lerobot
from .test_hub_as_is import LEROBOT_WRITER, seed

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent
CARD_REPO = "lerobot/svla_so101_pickplace"
MODELS = {"Qwen/Qwen3-VL-8B-Instruct": "qwen3_vl", "Qwen/Qwen2.5-VL-7B-Instruct": "qwen2_5_vl",
          "Qwen/Qwen2-VL-7B-Instruct": "qwen2_vl", "Qwen/Qwen3-VL-30B-A3B-Instruct": "qwen3_vl_moe"}


def readme_commands() -> list[str]:
    """Every command line of the README's bash blocks, continuation lines joined, comments dropped."""
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        current = ""
        for line in block.splitlines():
            text = line.strip()
            if current:
                current += " " + text.rstrip("\\").strip()
                if not text.endswith("\\"):
                    out.append(current)
                    current = ""
            elif text.startswith(("hub-pgen", "python scripts/", "pip install -e . && hub-pgen")):
                if text.endswith("\\"):
                    current = text.rstrip("\\").strip()
                else:
                    out.append(re.sub(r"\s+#\s.*$", "", text))
    return list(dict.fromkeys(re.sub(r"\s+", " ", c).strip() for c in out))


# --- the session: a user's home, with the world stood in for -----------------------------------------


FAKE_VLLM = """#!{python}
# stands in for vLLM: `vllm serve MODEL --host H --port P ...` serves the OpenAI-compatible stand-in
import os, sys
args = sys.argv[1:]
assert args[0] == "serve", args
model, port = args[1], args[args.index("--port") + 1]
os.execv({python!r}, [{python!r}, {server!r}, "--model", model, "--port", port])
"""


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


@dataclass
class Session:
    home: Path
    hub: HubServer
    env: dict[str, str]
    done: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    openai_url: str = ""

    def sh(self, command: str, *, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "--noprofile", "--norc", "-c", command], cwd=self.home,
                              env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout)

    def ok(self, command: str, **kw) -> subprocess.CompletedProcess:
        proc = self.sh(command, **kw)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-4000:]}"
        assert TOKEN not in proc.stdout + proc.stderr
        return proc


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    pytest.importorskip("lerobot")
    from hub_pgen.example import ExampleSpec, build_example_dataset
    from hub_pgen.testing.tiny_qwen import tiny_model_dir

    from .openai_server import OpenAIServer

    base = tmp_path_factory.mktemp("readme")
    home = base / "home"
    (home / "data").mkdir(parents=True)
    build_example_dataset(home / "data" / "pickplace", ExampleSpec(skills="regular", n_episodes=10))
    recorded = record_with_lerobot(LEROBOT_WRITER, base / "recorded")
    _d_labeled(home)
    fake_bin = base / "bin"
    fake_bin.mkdir()
    vllm = fake_bin / "vllm"
    vllm.write_text(FAKE_VLLM.format(python=sys.executable, server=str(REPO / "tests" / "openai_server.py")))
    vllm.chmod(0o755)
    port = free_port(8000)
    with HubServer(token=TOKEN) as hub, OpenAIServer(port=port, models=["Qwen/Qwen2.5-VL-7B-Instruct"]) as model:
        seed(hub, CARD_REPO, recorded)
        for name, family in MODELS.items():
            seed(hub, name, tiny_model_dir(base / "models", family), kind="model")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "RAY_"))}
        env |= {"HOME": str(home), "PATH": f"{fake_bin}:{BIN}:/usr/bin:/bin", "HF_ENDPOINT": hub.url,
                "HF_TOKEN": TOKEN, "HF_HOME": str(home / ".cache" / "huggingface"), "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_LEROBOT_HOME": str(home / "lerobot")}
        env.pop("OPENAI_API_KEY", None)
        yield Session(home, hub, env, openai_url=model.url)


def _d_labeled(home: Path) -> None:
    """The user's D_labeled file: two samples, each with one camera image beside it."""
    import numpy as np
    from PIL import Image

    (home / "frames").mkdir()
    lines = []
    for i, t in enumerate((12, 40)):
        path = f"frames/ep0_{t}_up.jpg"
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(home / path)
        lines.append(json.dumps({"episode_id": "0", "t": t, "images": [path], "skill_current": "pick up brick",
                                 "skill_history": ["move towards brick"] if i else [],
                                 "task_description": "Put the pink brick in the box"}))
    (home / "d_labeled.jsonl").write_text("\n".join(lines) + "\n")


# --- the roads ---------------------------------------------------------------------------------------


def _pushed(s: Session, repo_id: str, rev: str = "v3.0") -> Path:
    into = s.home.parent / "pulled" / repo_id.replace("/", "__") / rev.replace("/", "_")
    for rel, content in s.hub.files_at(repo_id, rev).items():
        if rel != ".gitattributes":
            (into / rel).parent.mkdir(parents=True, exist_ok=True)
            (into / rel).write_bytes(content)
    return into


def demo(s: Session, cmd: str) -> None:
    s.ok(cmd.split("&&", 1)[1].strip())  # installed already: the suite's venv is the README's install
    validate(s.home / "demo-out" / "dataset")


def local_template(s: Session, cmd: str) -> None:
    s.ok(cmd)
    validate(s.home / "out" / "pickplace_pgen", source=s.home / "data" / "pickplace")


def local_model(s: Session, cmd: str) -> None:
    proc = s.ok(cmd)
    assert "(qwen2_5_vl) on device cpu, dtype float32" in proc.stderr
    prov = json.loads((s.home / "out" / "pickplace_pgen_1s" / layout.PROVENANCE_PATH).read_text())
    assert prov["generation"]["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and prov["generation"]["sampling"] == "interval"


def openai_url(s: Session, cmd: str) -> None:
    typed = cmd.replace("http://127.0.0.1:8000/v1", s.openai_url)  # the same URL unless 8000 was taken
    s.ok(typed)
    prov = json.loads((s.home / "out" / "pickplace_vllm" / layout.PROVENANCE_PATH).read_text())
    assert prov["generation"]["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"  # the one model the server lists


def serve_vllm(s: Session, cmd: str) -> None:
    proc = s.ok(cmd)
    assert "serve:" in proc.stderr and "--skills auto: the dataset has no skill annotation" in proc.stderr
    validate(_pushed(s, "me/pp_pgen"))


def hub_branch(s: Session, cmd: str) -> None:
    s.ok(cmd)
    out = _pushed(s, "me/pickplace_pgen", "qwen3-segment")
    validate(out)
    assert "v3.0" not in s.hub.repo("me/pickplace_pgen").tags  # a branch push leaves the tag alone
    assert json.loads((out / layout.PROVENANCE_PATH).read_text())["skills"]["requested"] == "auto"


def hub_annotate(s: Session, cmd: str) -> None:
    proc = s.ok(cmd)
    prov = json.loads((_pushed(s, "me/pickplace_annotated") / layout.PROVENANCE_PATH).read_text())
    assert prov["skills"]["source"] == "annotate"
    # on this dataset annotate is what auto did for the branch example: the same configuration, the same
    # folder, so it is complete already and is pushed as it is
    assert "already complete" in proc.stderr


def label(s: Session, cmd: str) -> None:
    proc = s.ok(cmd)
    assert "hub-pgen labels" in proc.stdout and (s.home / "labels" / layout.SKILLS_PATH).is_file()


def dry_run(s: Session, cmd: str) -> None:
    proc = s.ok(cmd)
    assert "hub-pgen plan (dry run: nothing generated)" in proc.stdout
    assert "tokens per sample" in proc.stdout and "GPU time (estimate)" in proc.stdout


def d_labeled(s: Session, cmd: str) -> None:
    s.ok(cmd)
    lines = (s.home / "out" / "dsyn" / layout.JSONL_RESULT_NAME).read_text().splitlines()
    assert len(lines) == 2


def validate_cmd(s: Session, cmd: str) -> None:
    _after(s, "--output-dir out/pickplace_pgen --backend template")
    assert "valid" in s.ok(cmd).stdout.lower()


def report(s: Session, cmd: str) -> None:
    _after(s, "--output-dir out/pickplace_pgen --backend template")
    s.ok(cmd.replace("OUT", "out/pickplace_pgen"))
    if "--rrd" in cmd:
        assert (s.home / "review.rrd").stat().st_size > 0
    elif "--output" in cmd:
        assert "<html" in (s.home / "review.html").read_text()[:500].lower()
    else:
        assert (s.home / "out" / "pickplace_pgen" / layout.REPORT_PATH).is_file()


def shards(s: Session, cmd: str) -> None:
    _after(s, "hub-pgen label")
    for i in range(4):
        s.ok(cmd, env={"I": str(i)})
    assert all((s.home / "shards" / f"s{i}" / layout.PROVENANCE_PATH).is_file() for i in range(4))
    # each made the merged page's pictures of its samples from the frames its model saw
    assert all((s.home / "shards" / f"s{i}" / layout.SHARD_THUMBS_PATH).read_bytes() for i in range(4))


def merge(s: Session, cmd: str) -> None:
    _after(s, "--num-shards 4 --shard-index $I")
    s.ok(cmd)
    validate(_pushed(s, "me/pickplace_sharded"))


def slurm(s: Session, cmd: str) -> None:
    _after(s, "--num-shards 4 --shard-index $I")
    typed = re.sub(r"--repo-id R\b", f"--repo-id {CARD_REPO}", cmd)
    typed = re.sub(r"--model M\b", "--model Qwen/Qwen2.5-VL-7B-Instruct", typed)
    for i in range(4):  # the same job as the shards above: each finds its folder complete
        assert "already complete" in s.ok(typed, env={"SLURM_ARRAY_TASK_ID": str(i)}).stderr


def ray_cluster(s: Session, cmd: str) -> None:
    pytest.importorskip("ray")
    _after(s, "hub-pgen label")
    ray = str(BIN / "ray")
    start = s.sh(f"{ray} start --head --num-cpus 2 --include-dashboard false --disable-usage-stats", timeout=180)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        first = s.sh(cmd)  # as typed, on a CPU-only cluster: the README says --workers is needed there
        assert first.returncode == 2 and "--workers" in first.stderr, first.stderr[-2000:]
        s.ok(cmd + " --workers 1")
        validate(_pushed(s, "me/pickplace_ray"))
    finally:
        s.sh(f"{ray} stop --force", timeout=120)


def job(s: Session, cmd: str) -> None:
    from .jobs_server import JobsServer

    with JobsServer(token=TOKEN) as api:
        proc = s.ok(cmd, env={"HF_ENDPOINT": api.url})
        [sent] = api.submissions
    assert sent["flavor"] == "a10g-large" and sent["timeoutSeconds"] == 3 * 3600
    assert sent["command"][:6] == ["uv", "tool", "run", "--from",
                                   "hub-pgen[transformers] @ git+https://github.com/OWNER/hub-pgen@COMMIT", "hub-pgen"]
    assert "submitted" in proc.stdout


@dataclass(frozen=True)
class Road:
    marker: str  # a piece of the README command that picks this road
    run: Callable[[Session, str], None] | str  # a runner, or the id of the test elsewhere that types it


ROADS = (
    Road("hub-pgen demo", demo),
    Road("--repo-id lerobot/svla_so101_pickplace --push-to user/svla_so101_pickplace_pgen",
         "tests/test_hub_as_is.py::test_the_cards_command_as_typed_labels_generates_and_pushes"),
    Road("--output-dir out/pickplace_pgen --backend template", local_template),
    Road("--output-dir out/pickplace_pgen_1s", local_model),
    Road("--base-url http://127.0.0.1:8000/v1", openai_url),
    Road("--serve vllm", serve_vllm),
    Road("--branch qwen3-segment", hub_branch),
    Road("--skills annotate --push-to me/pickplace_annotated", hub_annotate),
    Road("hub-pgen label", label),
    Road("--root ~/data/pickplace --dry-run", dry_run),
    Road("python scripts/annotate_pgen.py", "tests/test_hub_as_is.py::test_the_seed_scripts_command_as_typed"),
    Road("--input-jsonl d_labeled.jsonl", d_labeled),
    Road("hub-pgen validate", validate_cmd),
    Road("hub-pgen report OUT", report),
    Road("--num-shards 4 --shard-index $I", shards),
    Road("hub-pgen merge shards/s0", merge),
    Road("$SLURM_ARRAY_TASK_ID", slurm),
    Road("--engine ray --ray-address auto", ray_cluster),
    Road("--job a10g-large", job),
)


def road_of(command: str) -> list[Road]:
    return [r for r in ROADS if r.marker in command]


def _after(s: Session, marker: str) -> None:
    """An earlier README command this one reads the output of (run once, in the session)."""
    for cmd in readme_commands():
        if marker in cmd and cmd not in s.done:
            [road] = road_of(cmd)
            assert callable(road.run)
            road.run(s, cmd)
            s.done[cmd] = subprocess.CompletedProcess(cmd, 0)
            return


def test_every_readme_command_has_a_road():
    commands = readme_commands()
    assert len(commands) >= 15, commands
    for cmd in commands:
        assert len(road_of(cmd)) == 1, f"README command without exactly one road in tests/test_readme.py: {cmd}"
    for road in ROADS:
        assert any(road.marker in c for c in commands), f"a road for a command the README no longer has: {road}"
        if isinstance(road.run, str):  # it names a test elsewhere that types the same command
            path, name = road.run.split("::")
            text = (REPO / path).read_text()
            assert f"def {name}(" in text, road.run
            body = text.split(f"def {name}(")[1].split("\ndef ")[0]
            cmd = next(c for c in commands if road.marker in c)
            flags = [w for w in cmd.split() if w.startswith("--")]
            assert all(f'"{f}"' in body for f in flags), (road.run, cmd)


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in readme_commands() if road_of(c) and callable(road_of(c)[0].run)],
                         ids=lambda c: c[:70])
def test_the_readme_command_runs_as_typed(command, session):
    if command in session.done:
        return
    [road] = road_of(command)
    road.run(session, command)
    session.done[command] = subprocess.CompletedProcess(command, 0)
