"""Issue 20: every number read from a dataset's files is bounded before use. A fuzz set each number of
info.json, meta/episodes and skills.json to 10^15, -1, 0, 1e-300, 1e300 and 2.5 and ran --dry-run and
a template run under a memory cap and a timeout: the only findings were index columns of the
episodes metadata stored as floats (1e300 became a 300-digit file name: exit 70; 2.5 was read as 2).
lerobot writes them as int64; a float column is refused whatever it holds.
Table: docs/reliability.md ("Hostile input, round 3: result folders", last rows)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hub_pgen.cli import main

from ..contract import tree_hashes

EPISODES = "meta/episodes/chunk-000/file-000.parquet"


@pytest.mark.parametrize("column, value, expected", [
    ("data/chunk_index", 1e300, "data/chunk_index must be a whole number from 0 to 1,000,000,000, got 1e+300"),
    ("data/chunk_index", 0.0, "data/chunk_index must be a whole number from 0 to 1,000,000,000, got 0.0"),
    ("data/file_index", 2.5, "data/file_index must be a whole number from 0 to 1,000,000,000, got 2.5"),
    ("videos/observation.images.up/file_index", float("nan"), "videos/observation.images.up/file_index must be"),
    ("episode_index", -1.0, "episode_index must be a whole number from 0 to 1,000,000,000, got -1"),
    ("length", 1e15, "length must be a whole number from 0 to 1,000,000,000,000"),
    ("videos/observation.images.up/from_timestamp", 1e300, "from_timestamp must be a time in seconds from 0"),
    ("videos/observation.images.up/from_timestamp", -5.0, "from_timestamp must be a time in seconds from 0"),
])
def test_numbers_of_the_episodes_metadata_are_bounded(example_root, tmp_path, capsys, column, value, expected):
    src = Path(shutil.copytree(example_root, tmp_path / "src"))
    path = src / EPISODES
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    values[0] = value  # the first row: the one the reader stops at
    array = pa.array([float(v) for v in values], type=pa.float64())  # as a float column holds them
    pq.write_table(table.set_column(table.column_names.index(column), column, array), path)
    before = tree_hashes(src)
    out = tmp_path / "out"
    for extra in (["--dry-run"], []):
        capsys.readouterr()
        assert main(["--root", str(src), "--output-dir", str(out), "--backend", "template", "-q", *extra]) == 3
        err = capsys.readouterr().err
        assert f"{path}: episode" in err and expected in err and "TIP:" in err, err
    assert not out.exists() and not out.with_name("out.partial").exists()
    assert tree_hashes(src) == before
