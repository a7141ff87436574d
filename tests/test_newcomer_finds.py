"""Issue 19, part 5: what a newcomer found — a closed pipe, the summary naming the wrong skills file, a
TIP that pointed at the source's own repo."""

from __future__ import annotations

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
