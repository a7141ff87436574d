"""Issue 19, part 5: what a newcomer found — a closed pipe, the summary naming the wrong skills file, a
TIP that pointed at the source's own repo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from hub_pgen.cli import main


def test_a_reader_that_goes_away_ends_the_run_quietly_with_its_result(example_root, tmp_path):
    """``hub-pgen --json | head`` (here: a reader that closes at once) exits 0 without a traceback; the
    result is written whole."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "hub_pgen.cli", "--root", str(example_root), "--backend",
                             "template", "--output-dir", str(out), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()  # the reader is gone before anything is printed
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"Traceback" not in err and b"BrokenPipe" not in err and b"internal error" not in err
    assert (out / "meta" / "hub_pgen.json").is_file()


def test_the_summary_names_the_skills_file_the_run_read(example_root, tmp_path, capsys):
    labels = tmp_path / "my_labels.json"
    shutil.copyfile(example_root / "meta" / "skills.json", labels)
    assert main(["--root", str(example_root), "--backend", "template", "--output-dir", str(tmp_path / "o"),
                 "--skills-file", str(labels)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "skills from" in x)
    assert "--skills-file my_labels.json" in line and "meta/skills.json" not in line
    card = (tmp_path / "o" / "README.md").read_text()
    assert "| skills from | --skills-file my_labels.json |" in card
    assert str(tmp_path) not in card  # by name: the path is the user's business


def test_a_bad_push_to_is_never_told_to_push_to_the_source(capsys, tmp_path):
    assert main(["--repo-id", "lerobot/svla_so101_pickplace", "--push-to", "not a repo", "--backend", "template"]) == 2
    err = capsys.readouterr().err
    assert "TIP: use --push-to OWNER/NAME, e.g. --push-to your-name/svla_so101_pickplace-pgen" in err
    assert main(["--repo-id", "lerobot/svla_so101_pickplace", "--push-to", "lerobot/svla_so101_pickplace",
                 "--backend", "template"]) == 2
    err = capsys.readouterr().err
    assert "is the source dataset itself" in err and "--push-to YOUR-NAME/svla_so101_pickplace-pgen" in err
    assert not Path("hub-pgen-out").exists() or not any(Path("hub-pgen-out").iterdir())


def test_push_to_without_a_token_is_refused_before_anything_runs(example_root, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-login"))
    out = tmp_path / "out"
    assert main(["--root", str(example_root), "--backend", "template", "--output-dir", str(out),
                 "--push-to", "me/new"]) == 2
    err = capsys.readouterr().err
    assert "needs a Hugging Face token with write access" in err and "hf auth login" in err
    assert not out.exists() and not Path(f"{out}.partial").exists()
    assert main(["merge", str(tmp_path / "s0"), "--root", str(example_root), "--push-to", "me/new"]) == 2


def test_a_push_that_fails_says_the_dataset_is_written_and_a_rerun_pushes_it(example_root, tmp_path, capsys,
                                                                               monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_NotARealTokenButThereIsOne0123456")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the push cannot reach it
    monkeypatch.setenv("HUB_PGEN_RETRY_SCALE", "0.001")
    out = tmp_path / "out"
    assert main(["--root", str(example_root), "--backend", "template", "--output-dir", str(out),
                 "--push-to", "me/new"]) == 6
    err = capsys.readouterr().err
    assert f"the dataset itself is complete and valid in {out}" in err
    assert "rerun the same command: it finds the dataset complete, generates nothing, and pushes it" in err
    assert "HF_HUB_OFFLINE" not in err  # offline cannot help a push
    from hub_pgen.write.validate import validate

    validate(out, source=example_root)


def test_the_wrong_root_says_where_the_dataset_is(example_root, tmp_path, capsys):
    shutil.copytree(example_root, tmp_path / "demo-out" / "source")
    assert main(["--root", str(tmp_path / "demo-out"), "--backend", "template"]) == 3
    assert f"did you mean --root {tmp_path / 'demo-out' / 'source'}?" in capsys.readouterr().err
    info = tmp_path / "demo-out" / "source" / "meta" / "info.json"
    assert main(["--root", str(info), "--backend", "template"]) == 3
    err = capsys.readouterr().err
    assert "is a file, not a dataset folder" in err and f"did you mean --root {tmp_path / 'demo-out' / 'source'}?" in err


def test_quiet_prints_no_summary_and_the_template_backend_no_model_advice(example_root, tmp_path, capsys):
    assert main(["--root", str(example_root), "--backend", "template", "--output-dir", str(tmp_path / "q"), "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "hub-pgen summary" not in captured.err
    assert "WARNING" in captured.err  # warnings stay (documented): the example's skill past its episode's end
    assert main(["--root", str(example_root), "--backend", "template", "--output-dir", str(tmp_path / "t")]) == 0
    err = capsys.readouterr().err
    assert "try another model" not in err and "--temperature" not in err


def test_the_template_labeller_splits_a_short_episode_when_the_minimum_allows(tmp_path):
    from hub_pgen.skills.annotate import EpisodeRequest

    task = "Pick up the pink lego brick and place it in the transparent box"
    times = (0.0, 0.7333, 1.4667)  # 2 frames a second of a 1.5 s episode at 30 fps
    two = json.loads(EpisodeRequest(0, task, times, (0, 22, 44), 1.5, 0.5).offline_answer())["skills"]
    assert [s["name"] for s in two] == ["pick up the pink lego brick", "place it in the transparent box"]
    assert two[0]["end"] == two[1]["start"] == 0.73
    one = json.loads(EpisodeRequest(0, task, times, (0, 22, 44), 1.5, 1.0).offline_answer())["skills"]
    assert len(one) == 1  # two skills of 1 s do not fit in 1.5 s


def test_a_misspelt_subcommand_is_named(capsys):
    assert main(["lable", "--root", "x", "--backend", "template"]) == 2
    assert "did you mean hub-pgen label ...?" in capsys.readouterr().err
