"""Issue 11 part 6: what lerobot 0.6.1's own merge (``lerobot-edit-dataset --operation.type merge``,
i.e. ``lerobot.datasets.aggregate.aggregate_datasets``) does to hub-pgen's two formats.

Two outputs of two different sources are merged, the way a user would merge two recordings: A has
1 episode and only the first task, B has 3 episodes and both tasks, so lerobot's task remapping
really shifts B's ``task_index`` (B's second task goes from 1 to 6). Measured with lerobot 0.6.1:

- the merge runs; ``task_index_high_level`` (column and info feature) is kept, its values copied
  unchanged; ``meta/tasks.parquet`` is rebuilt as bare strings (only ``task_index``), so A's
  values (merged first) still resolve to the right dialogue and every one of B's is silently wrong:
  in range, but pointing at A's dialogues, at a plain task, or at another of B's dialogues;
- the language columns are identical per frame (``tools`` leaves info.json, lerobot falls back to
  the same ``say`` schema), lerobot loads the merged folder and renders interjection/say/subtask;
- ``hub-pgen validate`` rejects the merged folder, hub-pgen refuses it as a source (it has
  ``task_index_high_level``); merged ``--format lerobot-language`` outputs are a source whose skills
  hub-pgen reads from the subtask rows, and whose every sampled frame already carries its dialogue:
  nothing to add, exit 3;
- merging the *sources* (plus their skills.json) and running hub-pgen once gives a valid output
  whose two formats agree.

If a later lerobot changes any of this, these tests fail: update the README's "Merging outputs".
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("lerobot.datasets.aggregate")

from lerobot.datasets.aggregate import aggregate_datasets  # noqa: E402

from hub_pgen import language as lang  # noqa: E402
from hub_pgen.cli import main  # noqa: E402
from hub_pgen.example import TASKS, ExampleSpec, build_example_dataset  # noqa: E402
from hub_pgen.write.validate import problems  # noqa: E402

from .contract import language_rows  # noqa: E402

FEATURE = "task_index_high_level"
SPEC_A = ExampleSpec(n_episodes=1, frames_per_episode=50, seed=3)  # task 0 only; fully annotated
# both tasks; a skill gap and an unannotated episode (ExampleSpec's edge cases)
SPEC_B = ExampleSpec(n_episodes=3, frames_per_episode=(40, 45, 50))


def _run(src: Path, out: Path, *extra: str) -> int:
    return main(["--root", str(src), "--output-dir", str(out), "--backend", "template", "-q", *extra])


def _merge(roots: list[Path], dst: Path) -> Path:
    aggregate_datasets(repo_ids=[f"local/in{i}" for i in range(len(roots))],
                       aggr_repo_id="local/merged", roots=roots, aggr_root=dst)
    return dst


def _data(root: Path) -> pa.Table:
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in files])


def _tasks(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / "meta" / "tasks.parquet")


def _text_of(root: Path) -> dict[int, str]:
    t = _tasks(root)
    return {int(i): s for s, i in zip(t.index, t["task_index"])}


def _info(root: Path) -> dict:
    return json.loads((root / "meta" / "info.json").read_text())


def _merged_skills(a: Path, b: Path, dst: Path) -> None:
    """What a user must write by hand: lerobot's merge drops meta/skills.json, and B's episodes
    move up by A's episode count."""
    sa, sb = (json.loads((r / "meta" / "skills.json").read_text()) for r in (a, b))
    offset = _info(a)["total_episodes"]
    episodes = dict(sa["episodes"])
    for k, v in sb["episodes"].items():
        episodes[str(int(k) + offset)] = {**v, "episode_index": int(k) + offset}
    (dst / "meta" / "skills.json").write_text(json.dumps({**sa, "episodes": episodes}, indent=2))


def _interjection(rows: list[dict]) -> str | None:
    return next((r["content"] for r in rows if r.get("style") == "interjection"), None)


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    base = tmp_path_factory.mktemp("merge")
    src_a = build_example_dataset(base / "src_a", SPEC_A)
    src_b = build_example_dataset(base / "src_b", SPEC_B)
    out_a, out_b = base / "out_a", base / "out_b"
    assert _run(src_a, out_a) == 0 and _run(src_b, out_b) == 0  # --format both, the default
    merged = _merge([out_a, out_b], base / "merged")
    return SimpleNamespace(base=base, src_a=src_a, src_b=src_b, out_a=out_a, out_b=out_b, merged=merged,
                           n_a=len(_data(out_a)))


def test_merge_runs_and_keeps_the_column_feature_and_every_frame(m):
    a, b, merged = _data(m.out_a), _data(m.out_b), _data(m.merged)
    assert (len(a), len(b), len(merged)) == (50, 135, 185)
    assert set(a.column_names) == set(merged.column_names) >= {FEATURE, *lang.COLUMNS}
    info = _info(m.merged)
    assert info["features"][FEATURE] == {"dtype": "int64", "shape": [1], "names": None}
    for col in lang.COLUMNS:
        assert info["features"][col] == {"dtype": "language", "shape": [1], "names": None}
    # the values are copied as they were: lerobot remaps task_index only
    assert merged.column(FEATURE).to_pylist() == a.column(FEATURE).to_pylist() + b.column(FEATURE).to_pylist()


def test_tasks_table_is_rebuilt_as_bare_strings_and_task_index_is_remapped(m):
    ta, tb, tm = _tasks(m.out_a), _tasks(m.out_b), _tasks(m.merged)
    # 1 task + 5 dialogues, 2 tasks + 10 dialogues; task 0 is in both
    assert (len(ta), len(tb), len(tm)) == (6, 12, 17)
    assert list(tm.columns) == ["task_index"]  # user_prompt, robot_utterance, skill, ... are gone
    # A's rows, then B's new ones (its first task is A's): dialogue rows stay, as plain task strings
    assert list(tm.index) == list(dict.fromkeys([*ta.index, *tb.index]))
    assert _info(m.merged)["total_tasks"] == 17
    # task_index itself is right on every frame: B's second task moved from 1 to 6
    b, merged = _data(m.out_b), _data(m.merged)
    text_b, text_m = _text_of(m.out_b), _text_of(m.merged)
    before = b.column("task_index").to_pylist()
    after = merged.column("task_index").to_pylist()[m.n_a:]
    assert [text_b[v] for v in before] == [text_m[v] for v in after]
    moved = [(x, y) for x, y in zip(before, after) if x != y]
    assert len(moved) == 45 and set(moved) == {(1, 6)}
    assert text_m[6] == TASKS[1]


def test_high_level_index_is_right_for_the_first_input_and_silently_wrong_for_the_second(m):
    text_m = _text_of(m.merged)
    merged = _data(m.merged).column(FEATURE).to_pylist()
    a_dialogues, b_dialogues = set(_tasks(m.out_a).index[1:]), set(_tasks(m.out_b).index[2:])
    cases = (("A", m.out_a, 0, 50, 50), ("B", m.out_b, m.n_a, 82, 0))
    for name, root, offset, n_dialogue_frames, n_right in cases:
        text_in = _text_of(root)
        values = _data(root).column(FEATURE).to_pylist()
        frames = [(v, merged[offset + i]) for i, v in enumerate(values) if v >= 0]
        assert len(frames) == n_dialogue_frames, name
        assert sum(text_m[w] == text_in[v] for v, w in frames) == n_right, name
        assert all(w in text_m for _, w in frames), name  # never out of range: nothing flags the damage
    # where B's 82 dialogue frames point now
    where = [text_m[w] for w in merged[m.n_a:] if w >= 0]
    assert (sum(s in a_dialogues for s in where), sum(s == TASKS[1] for s in where),
            sum(s in b_dialogues for s in where)) == (33, 7, 42)
    assert merged[m.n_a:].count(-1) == 53


def test_language_columns_are_identical_per_frame(m):
    merged = _data(m.merged)
    for root, offset in ((m.out_a, 0), (m.out_b, m.n_a)):
        table = _data(root)
        for col in lang.COLUMNS:
            before = language_rows(table, col)
            assert language_rows(merged.slice(offset, len(table)), col) == before
    events = language_rows(merged, lang.EVENTS)
    assert sum(1 for rows in events if rows) == 15  # 5 + 10 dialogues, each an interjection + say pair
    assert all(lang.frame_problems(rows) == [] for rows in events)
    # on disk the merge rewrites the columns through pandas: not lerobot's canonical Arrow types any
    # more (float64 timestamps, untyped camera/tool_calls, no huggingface schema metadata)...
    schema = pq.read_schema(next((m.merged / "data").glob("chunk-*/file-*.parquet")))
    assert schema.field(lang.PERSISTENT).type != lang.arrow_type(lang.PERSISTENT)
    assert b"huggingface" not in (schema.metadata or {})
    # ...and "tools" leaves info.json (see test_lerobot_loads_and_renders_the_merged_dialogues)
    assert "tools" in _info(m.out_a) and "tools" not in _info(m.merged)


def test_lerobot_loads_and_renders_the_merged_dialogues(m, no_network):
    from lerobot.configs.recipe import TrainingRecipe
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata
    from lerobot.datasets.language_render import render_sample
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    # lerobot falls back to DEFAULT_TOOLS, the same say schema hub-pgen declared
    assert LeRobotDatasetMetadata("local/merged", root=m.merged).tools == \
        LeRobotDatasetMetadata("local/out_b", root=m.out_b).tools == [lang.SAY_TOOL_SCHEMA]
    ds = LeRobotDataset("local/merged", root=m.merged, video_backend="pyav")
    ref = LeRobotDataset("local/out_b", root=m.out_b, video_backend="pyav")
    assert len(ds) == 185
    recipe = TrainingRecipe.from_dict({"messages": [
        {"role": "user", "content": "${task}", "stream": "high_level"},
        {"role": "assistant", "content": "${subtask}", "stream": "low_level", "target": True},
        {"role": "user", "content": "${interjection}", "stream": "high_level", "if_present": "interjection"},
        {"role": "assistant", "tool_calls_from": "speech", "stream": "high_level", "target": True,
         "if_present": "speech"},
    ]})

    def render(item):
        return render_sample(recipe=recipe, persistent=item["language_persistent"],
                             events=item["language_events"], t=float(item["timestamp"]), sample_idx=0,
                             task=item["task"])

    b_events = [i for i, rows in enumerate(language_rows(_data(m.out_b), lang.EVENTS)) if rows]
    i = b_events[-1]  # B's last dialogue: episode 2 (merged), task TASKS[1], task_index shifted 1 -> 6
    got, want = render(ds[m.n_a + i]), render(ref[i])
    assert got == want and int(ds[m.n_a + i]["task_index"]) == 6
    roles = [(msg["role"], "tool_calls" in msg) for msg in got["messages"]]
    assert roles == [("user", False), ("assistant", False), ("user", False), ("assistant", True)]
    assert got["messages"][0]["content"] == TASKS[1]
    assert got["messages"][2]["content"] == _interjection(language_rows(_data(m.out_b), lang.EVENTS)[i])
    assert got["messages"][3]["tool_calls"][0]["function"]["name"] == "say"


def test_hub_pgen_validate_rejects_the_merged_folder(m, capsys):
    found = problems(m.merged)
    assert any("hub_pgen.json" in p for p in found)
    assert any("tasks.parquet" in p and "user_prompt" in p for p in found)
    assert any(FEATURE in p for p in found)
    assert main(["validate", str(m.merged)]) == 7
    capsys.readouterr()


def test_hub_pgen_refuses_the_merged_folder_as_a_source(m, capsys):
    assert _run(m.merged, m.base / "rerun") == 3
    assert f"already has a '{FEATURE}' feature" in capsys.readouterr().err
    assert not (m.base / "rerun").exists()


def test_rerun_on_merged_lerobot_language_outputs_finds_nothing_to_add(m, capsys):
    la, lb = m.base / "lang_a", m.base / "lang_b"
    assert _run(m.src_a, la, "--format", "lerobot-language") == 0
    assert _run(m.src_b, lb, "--format", "lerobot-language") == 0
    merged = _merge([la, lb], m.base / "lang_merged")
    assert FEATURE not in _info(merged)["features"] and list(_tasks(merged).index) == list(TASKS)
    assert not (merged / "meta" / "skills.json").exists()  # the merge drops it
    # the merged subtask rows are the skills (--skills auto), and every segment's first frame already
    # carries its dialogue: nothing to add, nothing written (the two formats can never disagree)
    out = m.base / "lang_rerun"
    assert _run(merged, out) == 3
    err = capsys.readouterr().err
    assert "every sampled frame (15) already has a dialogue in the source's language_events" in err
    assert not out.exists()
    _merged_skills(m.src_a, m.src_b, merged)  # with the skills.json the merge dropped: the same
    assert _run(merged, out, "--skills", "file") == 3
    assert "every sampled frame (15) already has a dialogue" in capsys.readouterr().err


def test_merging_the_sources_then_running_once_keeps_both_formats_in_step(m):
    merged = _merge([m.src_a, m.src_b], m.base / "src_merged")
    _merged_skills(m.src_a, m.src_b, merged)
    out = m.base / "src_merged_out"
    assert _run(merged, out) == 0
    assert problems(out, source=merged) == []
    table = _data(out)
    t = _tasks(out)
    prompt = dict(zip(t["task_index"], t["user_prompt"]))
    hl = table.column(FEATURE).to_pylist()
    events = language_rows(table, lang.EVENTS)
    pairs = [(prompt.get(hl[i]), _interjection(rows)) for i, rows in enumerate(events) if rows]
    assert len(pairs) == 15 and all(x == y for x, y in pairs)
