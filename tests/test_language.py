"""Issue 11: lerobot's language columns beside task_index_high_level (--format), a source's own language
rows kept, and the checks that keep lerobot's invariants — all read back with lerobot 0.6.1's own code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hub_pgen import language as lang
from hub_pgen.cli import main
from hub_pgen.train import HighLevelTasks
from hub_pgen.write.validate import problems, validate

from .contract import language_rows, load_skills_json, persistent_by_episode, tree_hashes

FEATURE = "task_index_high_level"


def run(src: Path, out: Path, *extra: str) -> int:
    return main(["--root", str(src), "--output-dir", str(out), "--backend", "template", "-q", *extra])


@pytest.fixture(scope="module")
def outputs(example_root, tmp_path_factory):
    """One template run per --format (the default is 'both')."""
    base = tmp_path_factory.mktemp("formats")
    out = {}
    for fmt in ("both", "hirobot", "lerobot-language"):
        out[fmt] = base / fmt
        args = () if fmt == "both" else ("--format", fmt)
        assert run(example_root, out[fmt], *args) == 0
    return out


def data_table(out: Path) -> pa.Table:
    """All data files as one table (lerobot's own writer infers each file's types: a file without
    rows of a kind has list<null> columns, hence the permissive promotion)."""
    return pa.concat_tables([pq.read_table(p) for p in sorted((out / "data").glob("chunk-*/file-*.parquet"))],
                            promote_options="permissive")


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "meta" / "syn_annotations.jsonl").read_text().splitlines()]


def test_each_format_validates_against_the_source_and_loads_in_lerobot(outputs, example_root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    for fmt, out in outputs.items():
        validate(out, source=example_root)
        info = json.loads((out / "meta" / "info.json").read_text())
        ds = LeRobotDataset(f"local/{fmt}", root=out, video_backend="pyav")
        item = ds[len(ds) // 2]
        has_hirobot, has_language = fmt != "lerobot-language", fmt != "hirobot"
        assert (FEATURE in info["features"]) == (FEATURE in item) == has_hirobot, fmt
        assert (lang.EVENTS in info["features"]) == (lang.EVENTS in item) == has_language, fmt
        assert ds.meta.has_language_columns == has_language
        assert json.loads((out / "meta" / "hub_pgen.json").read_text())["format"] == fmt
        card = (out / "README.md").read_text().split("## Provenance")[0]
        assert ("`task_index_high_level`" in card) == has_hirobot and ("`language_events`" in card) == has_language
        # the load snippet's comment names what the format has (the mix table once overwrote the format)
        snippet = (out / "README.md").read_text().split("## Load it")[1]
        assert ("item['task_index_high_level'] indexes ds.meta.tasks" in snippet) == has_hirobot, fmt
        if has_language:
            assert info["features"][lang.PERSISTENT] == {"dtype": "language", "shape": [1], "names": None}
            assert [t["function"]["name"] for t in info["tools"]] == ["say"]
            assert ds.meta.tools == info["tools"]
        else:
            assert "tools" not in info


def test_the_columns_have_lerobots_canonical_arrow_types(outputs):
    from lerobot.datasets.language import language_events_arrow_type, language_persistent_arrow_type

    schema = pq.read_schema(next((outputs["both"] / "data").glob("chunk-*/file-*.parquet")))
    assert schema.field(lang.PERSISTENT).type == language_persistent_arrow_type()
    assert schema.field(lang.EVENTS).type == language_events_arrow_type()
    hf = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert hf[lang.EVENTS] == lang.hf_feature(lang.EVENTS)


def test_hf_feature_metadata_is_what_datasets_itself_writes():
    import datasets
    from lerobot.datasets.language import language_events_column_feature, language_persistent_column_feature

    want = datasets.Features({lang.PERSISTENT: language_persistent_column_feature(),
                              lang.EVENTS: language_events_column_feature()}).to_dict()
    assert want == {c: lang.hf_feature(c) for c in lang.COLUMNS}


def test_subtasks_and_dialogues_sit_on_the_parquets_own_timestamps(outputs, example_root):
    out = outputs["both"]
    table = data_table(out)
    eps = table.column("episode_index").to_numpy()
    frames = table.column("frame_index").to_numpy()
    stamps = table.column("timestamp").to_numpy()
    events = language_rows(table, lang.EVENTS)
    per_episode = persistent_by_episode(table)
    skills = load_skills_json(example_root)
    high = data_table(out).column(FEATURE).to_numpy()
    # every subtask row starts where task_index_high_level's segment starts, at that frame's exact timestamp
    starts = {(int(e), float(stamps[i])) for i, e in enumerate(eps)
              if high[i] >= 0 and (i == 0 or eps[i - 1] != e or high[i - 1] != high[i])}
    rows = [(e, r) for e, rs in per_episode.items() for r in rs]
    assert rows and all(r["style"] == "subtask" and r["camera"] is None for _, r in rows)
    assert {(e, r["timestamp"]) for e, r in rows} >= starts
    annotated = {int(k) for k in skills["episodes"]} if isinstance(skills.get("episodes"), dict) else None
    if annotated is not None:
        assert {e for e, _ in rows} <= annotated
    # one interjection + say pair per dialogue, on the sample's first frame, nothing elsewhere
    recs = [r for r in records(out) if r["status"] == "ok"]
    where = {(int(e), int(f)): i for i, (e, f) in enumerate(zip(eps, frames))}
    for r in recs:
        i = where[(r["episode_index"], r["frame_start"])]
        assert float(stamps[i]) == float(np.float32(r["timestamp"]))
        ev = events[i]
        assert {"role": "user", "content": r["user_prompt"], "style": "interjection", "camera": None,
                "tool_calls": None} in ev
        say = [x for x in ev if lang.is_say(x)]
        assert len(say) == 1 and say[0]["tool_calls"][0]["function"]["arguments"] == {"text": r["robot_utterance"]}
        assert say[0]["role"] == "assistant" and say[0]["content"] is None and say[0]["style"] is None
    assert sum(len(ev) > 0 for ev in events) == len(recs)
    prov = json.loads((out / "meta" / "hub_pgen.json").read_text())
    assert prov["language"]["dialogues"] == len(recs) and prov["language"]["subtask_rows"] == len(rows)


def test_lerobot_language_format_leaves_tasks_stats_and_episodes_as_the_source_had_them(outputs, example_root):
    out = outputs["lerobot-language"]
    for rel in ("meta/tasks.parquet", "meta/stats.json"):
        assert (out / rel).read_bytes() == (example_root / rel).read_bytes()
    for path in (example_root / "meta" / "episodes").glob("chunk-*/file-*.parquet"):
        assert (out / path.relative_to(example_root)).read_bytes() == path.read_bytes()
    assert FEATURE not in pq.read_schema(next((out / "data").glob("chunk-*/file-*.parquet"))).names
    assert all(r[FEATURE] is None for r in records(out))
    # the same language columns as the default format's
    assert data_table(out).select(list(lang.COLUMNS)) == data_table(outputs["both"]).select(list(lang.COLUMNS))


def test_hirobot_format_has_no_language_columns(outputs):
    names = pq.read_schema(next((outputs["hirobot"] / "data").glob("chunk-*/file-*.parquet"))).names
    assert not set(lang.COLUMNS) & set(names) and names[-1] == FEATURE
    both = data_table(outputs["both"])
    assert data_table(outputs["hirobot"]) == both.drop_columns(list(lang.COLUMNS))


def test_format_is_part_of_the_configuration(outputs, example_root, capsys):
    before = tree_hashes(outputs["both"])
    assert run(example_root, outputs["both"], "--format", "hirobot") == 4
    err = capsys.readouterr().err
    assert "format: 'both' -> 'hirobot'" in err
    assert tree_hashes(outputs["both"]) == before


def test_format_with_input_jsonl_is_a_usage_error(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("")
    for fmt in ("hirobot", "both"):  # even the default, when given: the user meant something by it
        assert main(["--input-jsonl", str(src), "--backend", "template", "--format", fmt, "-q"]) == 2
        assert "--format shapes a dataset" in capsys.readouterr().err
    assert main(["--root", str(tmp_path), "--format", "lerobot", "-q"]) == 2
    assert "invalid choice: 'lerobot'" in capsys.readouterr().err


def test_summary_json_and_dry_run_name_the_format_and_the_language_rows(example_root, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--root", str(example_root), "--output-dir", str(out), "--backend", "template", "--format",
            "lerobot-language"]
    assert main([*args, "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plan_report"]["format"] == "lerobot-language"
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["output_format"] == "lerobot-language" and result["new_tasks"] == 0
    assert result["language"]["dialogues"] == result["ok"] == 25 and result["language"]["subtask_rows"] == 25
    assert result["frames_labelled"] == 245  # the frames the dialogues cover, as with the seed's column
    assert main(args) == 0  # already complete: the summary from the provenance
    shown = capsys.readouterr().out
    assert "lerobot-language" in shown and "25 dialogue(s) (interjection + say), 25 subtask(s)" in shown
    assert "new tasks rows" not in shown and "245 of 298" in shown


# --- the helper that resolves task_index_high_level ------------------------------------------------


def test_high_level_tasks_resolves_items_from_lerobot_and_from_the_folder(outputs):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = outputs["both"]
    ds = LeRobotDataset("local/both", root=out, video_backend="pyav")
    tasks, from_root = HighLevelTasks.from_dataset(ds), HighLevelTasks.from_root(out)
    assert dict(tasks) == dict(from_root) and len(tasks) == json.loads(
        (out / "meta" / "hub_pgen.json").read_text())["counts"]["new_tasks"]
    by_frame = {(r["episode_index"], r["frame_start"]): r for r in records(out) if r["status"] == "ok"}
    rec = next(iter(by_frame.values()))
    i = int(ds.meta.episodes[rec["episode_index"]]["dataset_from_index"]) + rec["frame_start"]
    hl = tasks.for_item(ds[i])
    assert (hl.user_prompt, hl.robot_utterance, hl.skill) == (rec["user_prompt"], rec["robot_utterance"],
                                                               rec["skill_current"])
    assert (hl.scenario_type, hl.response_type) == (rec["scenario_type"], rec["response_type"])
    minus_one = next(j for j in range(len(ds)) if int(ds.hf_dataset[j][FEATURE]) == -1)
    assert tasks.for_item(ds[minus_one]) is None
    with pytest.raises(KeyError, match="names no generated row"):
        tasks.lookup(0)  # an original task's index
    with pytest.raises(ValueError, match="not a hub-pgen output with the hirobot format"):
        HighLevelTasks.from_root(outputs["lerobot-language"])


# --- a source that already has language columns ---------------------------------------------------


def annotate_with_lerobot(root: Path, staged: dict[int, dict[str, list[dict]]]) -> None:
    """What ``lerobot-annotate`` leaves behind: its own staging → writer → info.json path."""
    from lerobot.annotations.steerable_pipeline.executor import Executor
    from lerobot.annotations.steerable_pipeline.reader import iter_episodes
    from lerobot.annotations.steerable_pipeline.staging import EpisodeStaging
    from lerobot.annotations.steerable_pipeline.writer import LanguageColumnsWriter

    staging = root.parent / "lerobot-staging"
    for e, modules in staged.items():
        for module, rows in modules.items():
            EpisodeStaging(staging, e).write(module, rows)
    LanguageColumnsWriter().write_all(list(iter_episodes(root)), staging, root)
    Executor._ensure_annotation_metadata_in_info(root)


def frame_ts(root: Path, episode: int, frame: int) -> float:
    t = data_table(root)
    mask = (t.column("episode_index").to_numpy() == episode) & (t.column("frame_index").to_numpy() == frame)
    return float(t.column("timestamp").to_numpy()[mask][0])


@pytest.fixture(scope="module")
def annotated(example_root, outputs, tmp_path_factory):
    """The example dataset annotated by lerobot's own pipeline: episode 0 has its own subtasks and a
    dialogue on a frame where hub-pgen puts one too; episode 1 a plan and a VQA pair elsewhere."""
    src = tmp_path_factory.mktemp("annotated") / "dataset"
    shutil.copytree(example_root, src)
    ours = {(r["episode_index"], r["frame_start"]) for r in records(outputs["both"]) if r["status"] == "ok"}
    f0 = min(f for e, f in ours if e == 0)
    f1 = next(f for f in range(5, 40) if (1, f) not in ours)
    t0, t1 = frame_ts(src, 0, f0), frame_ts(src, 1, f1)
    user = {"role": "user", "content": "Actually, wait a moment.", "style": "interjection", "timestamp": t0}
    say = {"role": "assistant", "content": None, "style": None, "timestamp": t0,
           "tool_calls": [{"type": "function", "function": {"name": "say", "arguments": {"text": "Waiting."}}}]}
    annotate_with_lerobot(src, {
        0: {"plan": [{"role": "assistant", "content": "reach the cube", "style": "subtask", "timestamp": 0.0},
                     {"role": "assistant", "content": "lift it", "style": "subtask", "timestamp": t1}],
            "interjections": [user, say]},
        1: {"plan": [{"role": "assistant", "content": "1. pick 2. place", "style": "plan", "timestamp": 0.0}],
            "vqa": [{"role": "user", "content": "How many cubes?", "style": "vqa", "timestamp": t1,
                     "camera": "observation.images.up"},
                    {"role": "assistant", "content": json.dumps({"label": "cube", "count": 1}), "style": "vqa",
                     "timestamp": t1, "camera": "observation.images.up"}]},
    })
    return src, (0, f0), (1, f1)


def test_a_sources_language_rows_are_kept_and_conflicts_are_reported(annotated, tmp_path, capsys):
    src, (e0, f0), (e1, f1) = annotated
    before = data_table(src)
    out = tmp_path / "out"
    assert run(src, out) == 0
    err = capsys.readouterr().err
    validate(out, source=src)  # includes: every source row still on its frame
    after = data_table(out)
    eps = after.column("episode_index").to_numpy()
    frames = after.column("frame_index").to_numpy()
    pers = persistent_by_episode(after)
    ev = language_rows(after, lang.EVENTS)
    # episode 0 keeps lerobot-annotate's subtasks only; episode 1 gets hub-pgen's beside its plan row
    assert [r["content"] for r in pers[0]] == ["reach the cube", "lift it"]
    assert pers[1][0]["style"] == "plan" and {r["style"] for r in pers[1][1:]} == {"subtask"}
    # the frame that had lerobot-annotate's dialogue keeps it alone
    i0 = int(np.flatnonzero((eps == e0) & (frames == f0))[0])
    assert [r["content"] for r in ev[i0] if r["style"] == "interjection"] == ["Actually, wait a moment."]
    i1 = int(np.flatnonzero((eps == e1) & (frames == f1))[0])
    assert sorted(r["role"] for r in ev[i1]) == ["assistant", "user"] and all(r["style"] == "vqa" for r in ev[i1])
    prov = json.loads((out / "meta" / "hub_pgen.json").read_text())
    lang_prov = prov["language"]
    assert lang_prov["episodes_with_source_subtasks"] == [0]
    assert lang_prov["dialogues_not_added"] == [] and prov["counts"]["kept_source_dialogues"] == 1
    assert lang_prov["kept_source_rows"] == {"persistent": 3, "events": 4}
    assert "kept the source's language rows: 3 persistent, 4 events" in err
    assert "a sampled frame already has a dialogue in the source's language_events" in err
    assert "episode(s) already had subtask rows" in err
    # the frame with lerobot-annotate's dialogue got no sample (no model time spent on it), so the seed's
    # column has no generated dialogue starting there either; every other dialogue is in both formats
    recs = [r for r in records(out) if r["status"] == "ok"]
    assert (e0, f0) not in {(r["episode_index"], r["frame_start"]) for r in recs}
    assert lang_prov["dialogues"] == len(recs) == prov["counts"]["samples"]
    assert before.num_rows == after.num_rows


def test_rerunning_on_a_lerobot_language_output_adds_no_row_twice(outputs, tmp_path, capsys):
    first = outputs["lerobot-language"]
    # the same sampling: every sampled frame already has its dialogue, nothing to do, nothing written
    again = tmp_path / "again"
    assert run(first, again, "--format", "lerobot-language") == 3
    err = capsys.readouterr().err
    assert "every sampled frame (25) already has a dialogue in the source's language_events" in err
    assert "--sampling interval" in err and not again.exists() and not Path(f"{again}.partial").exists()
    # denser sampling: the frames that had a dialogue keep it, the others get one; no subtask twice
    denser = tmp_path / "denser"
    assert run(first, denser, "--format", "both", "--sampling", "interval", "--sample-interval", "0.1") == 0
    validate(denser, source=first)
    table = data_table(denser)
    events = language_rows(table, lang.EVENTS)
    old_events = language_rows(data_table(first), lang.EVENTS)
    assert all(old in new for old_rows, new in zip(old_events, events) for old in old_rows)
    assert all(sum(r["style"] == "interjection" for r in ev) <= 1 for ev in events)
    assert persistent_by_episode(table) == persistent_by_episode(data_table(first))
    prov = json.loads((denser / "meta" / "hub_pgen.json").read_text())
    assert prov["counts"]["kept_source_dialogues"] == 25 and prov["language"]["subtask_rows"] == 0
    assert prov["language"]["already_there"] == 25 and prov["language"]["dialogues"] == prov["counts"]["ok"] > 0
    # where both formats are written they agree on every generated dialogue's frame
    high = HighLevelTasks.from_root(denser)
    col = table.column(FEATURE).to_numpy()
    for r in (r for r in records(denser) if r["status"] == "ok"):
        i = next(i for i, (e, f) in enumerate(zip(table.column("episode_index").to_pylist(),
                                                    table.column("frame_index").to_pylist()))
                 if (e, f) == (r["episode_index"], r["frame_start"]))
        said = [x["content"] for x in events[i] if x["style"] == "interjection"]
        assert said == [high.lookup(int(col[i])).user_prompt]


def _rewrite(path: Path, column: str, change) -> None:
    t = pq.read_table(path)
    rows = t.column(column).to_pylist()
    change(rows)
    array = pa.array(rows, type=lang.text_type(column)).cast(lang.arrow_type(column))  # tool_calls as JSON text
    t = t.set_column(t.column_names.index(column), column, array)
    pq.write_table(t, path)


@pytest.mark.parametrize("damage, message", [
    ("persistent_differs", "language_persistent differs between frames"),
    ("undeclared", "are not declared in meta/info.json"),
    ("camera_on_subtask", "must have camera null"),
    ("unreadable_tool_call", "cannot be read as lerobot language rows"),
])
def test_a_broken_source_language_column_stops_before_anything_happens(outputs, tmp_path, capsys, damage, message):
    src = tmp_path / "src"
    shutil.copytree(outputs["lerobot-language"], src)
    path = next((src / "data").glob("chunk-*/file-*.parquet"))
    if damage == "persistent_differs":
        _rewrite(path, lang.PERSISTENT, lambda rows: rows[3].pop())
    elif damage == "undeclared":
        info = json.loads((src / "meta" / "info.json").read_text())
        del info["features"][lang.EVENTS]
        (src / "meta" / "info.json").write_text(json.dumps(info))
    elif damage == "camera_on_subtask":
        def cam(rows):
            for frame in rows:
                for r in frame:
                    r["camera"] = "observation.images.up"
        _rewrite(path, lang.PERSISTENT, cam)
    else:
        def garble(rows):
            for r in next(frame for frame in rows if frame):
                if r["tool_calls"]:
                    r["tool_calls"] = ["{not json"]
        _rewrite(path, lang.EVENTS, garble)
    out = tmp_path / "out"
    assert run(src, out, "--format", "lerobot-language") == 3
    err = capsys.readouterr().err
    assert message in err and "TIP:" in err
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_validate_finds_language_rows_that_break_lerobots_rules(outputs, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(outputs["both"], out)
    assert problems(out) == []
    path = next(p for p in sorted((out / "data").glob("chunk-*/file-*.parquet")))

    def drop_say(rows):
        i = next(i for i, r in enumerate(rows) if r)
        rows[i] = [r for r in rows[i] if r["style"] == "interjection"]

    _rewrite(path, lang.EVENTS, drop_say)
    found = problems(out)
    assert any("an interjection without a say call" in p for p in found)
    assert any("is not in language_events as an interjection + say pair" in p for p in found)
    _rewrite(path, lang.PERSISTENT, lambda rows: rows[-1].clear())
    assert any("language_persistent differs between frames" in p for p in problems(out))
    info = json.loads((out / "meta" / "info.json").read_text())
    info["features"][lang.PERSISTENT]["dtype"] = "string"
    (out / "meta" / "info.json").write_text(json.dumps(info))
    assert any("must be declared with dtype 'language'" in p for p in problems(out))


@pytest.mark.parametrize("change", ["none", "content", "timestamp", "tool_call_text", "extra_row", "null_list"])
@pytest.mark.parametrize("typed", ["canonical", "inferred"])  # hub-pgen's types; lerobot's writer's (inferred)
def test_read_file_finds_any_difference_between_an_episodes_frames(change, typed):
    """The vectorised check against a per-frame Python comparison: a difference anywhere in a row
    (down to a tool call's argument) is found, and the frames it names are the right ones."""
    say = lambda text: {"type": "function", "function": {"name": "say", "arguments": {"text": text}}}  # noqa: E731
    rows = [{"role": "assistant", "content": "pick", "style": "subtask", "timestamp": 0.0, "camera": None,
             "tool_calls": None},
            {"role": "assistant", "content": "place", "style": "subtask", "timestamp": 1.5, "camera": None,
             "tool_calls": [say("ok")]}]
    frames = [[dict(r) for r in rows] for _ in range(4)] + [[dict(rows[0])] for _ in range(3)]
    if change == "content":
        frames[2][1]["content"] = "plaice"
    elif change == "timestamp":
        frames[3][1]["timestamp"] = 1.5000002  # the next float32 after 1.5
    elif change == "tool_call_text":
        frames[1][1]["tool_calls"] = [say("ok!")]
    elif change == "extra_row":
        frames[6].append(dict(rows[1]))
    elif change == "null_list":
        frames[5] = None
    if typed == "canonical":
        col = pa.array([None if f is None else [{**r, "tool_calls": None if r["tool_calls"] is None else
                                                 [json.dumps(c) for c in r["tool_calls"]]} for r in f]
                        for f in frames], type=lang.text_type(lang.PERSISTENT)).cast(lang.arrow_type(lang.PERSISTENT))
    else:
        col = pa.array(frames)
    table = pa.table({"episode_index": [0, 0, 0, 0, 1, 1, 1], "frame_index": [0, 1, 2, 3, 0, 1, 2],
                      lang.PERSISTENT: col})
    if change == "none":
        got = lang.read_file(table).persistent
        assert got[0] == [lang.normalize_row(r, lang.PERSISTENT) for r in rows] and len(got[1]) == 1
        return
    bad = {"content": "episode 0's language_persistent differs between frames 0 and 2",
           "timestamp": "episode 0's language_persistent differs between frames 0 and 3",
           "tool_call_text": "episode 0's language_persistent differs between frames 0 and 1",
           "extra_row": "episode 1's language_persistent differs between frames 0 and 2",
           "null_list": "episode 1's language_persistent differs between frames 0 and 1"}[change]
    with pytest.raises(lang.LanguageProblem, match=bad):
        lang.read_file(table)


def test_validate_finds_a_dialogue_whose_words_or_moment_differ_from_its_record(outputs, tmp_path):
    """Each generated dialogue is checked against its record by a digest of its two texts and by the
    frame's timestamp (the records are not read back per data file): one changed word, or a timestamp
    not the frame's, is found and named."""
    out = tmp_path / "out"
    shutil.copytree(outputs["both"], out)
    syn = out / "meta" / "syn_annotations.jsonl"
    lines = syn.read_text(encoding="utf-8").splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if json.loads(line)["status"] == "ok")
    rec = json.loads(lines[first])
    where = f"episode {rec['episode_index']} frame {rec['frame_start']}"
    for change, message in [({"robot_utterance": rec["robot_utterance"] + " Now."},
                             "is not in language_events as an interjection + say pair"),
                            ({"user_prompt": rec["user_prompt"].replace(" ", "  ", 1)},
                             "is not in language_events as an interjection + say pair"),
                            ({"timestamp": rec["timestamp"] + 0.5}, "is not the frame's"),
                            ({"timestamp": "soon"}, "is not the frame's")]:
        syn.write_text("".join(lines[:first] + [json.dumps({**rec, **change}) + "\n"] + lines[first + 1:]),
                       encoding="utf-8")
        found = [p for p in problems(out) if where in p]
        assert len(found) == 1 and message in found[0], (change, found)
    syn.write_text("".join(lines), encoding="utf-8")
    assert problems(out) == []


def test_expected_dialogues_of_a_file_in_any_order_the_later_record_of_a_frame_counts():
    """A D_syn file in plan order is taken as it is (no copy sorted); another is sorted, the later record
    of a frame counts, in the place of the first, and places no frame can have are always missing."""
    from hub_pgen.write.validate_language import Expected

    keys = np.array([2 << 32 | 5, 1 << 32 | 3, 2 << 32 | 5, 1 << 32 | 1], dtype=np.int64)
    e = Expected(keys, np.array([10, 20, 30, 40], dtype=np.int64), np.zeros(4, dtype=np.float32), [(-1, 0)])
    assert [(e.episode(i), e.frame(i)) for i in range(3)] == [(1, 1), (1, 3), (2, 5)]
    assert e.digest.tolist() == [40, 20, 30]  # (2, 5): the later record's
    assert e.of_episodes([1, 2], width=10) == [2, 1, 0]  # the file's order: (2, 5) came first
    assert e.of_episodes([1], width=2) == [0]  # frame 3 is past a file of 2 frames
    e.done[1] = True
    assert e.left() == [(2, 5), (1, 1), (-1, 0)] and len(e) == 3
    in_order = Expected(np.sort(keys[1:]), np.array([1, 2, 3], dtype=np.int64), np.zeros(3, dtype=np.float32), [])
    assert in_order.place is None and in_order.of_episodes([2, 1], width=10) == [0, 1, 2]


@pytest.mark.parametrize("n", [0, 1, 7])
def test_dialogue_events_are_the_rows_of_dialogue_rows_made_as_columns(n):
    """A data file's frames without a row of the source's get their say call and interjection as Arrow
    columns at once: the same array, value for value and type for type, as those rows made one by one."""
    prompts = [f"pick \"it\" {i} \\ é {chr(0x1F600)}" for i in range(n)]
    replies = [f"ok {i}\nsaid" for i in range(n)]
    rows = [sorted(lang.dialogue_rows(p, r), key=lang.event_key) for p, r in zip(prompts, replies)]
    made = lang.dialogue_events(prompts, replies)
    made.validate(full=True)
    assert made.equals(lang.to_text_arrow(rows, lang.EVENTS))
    assert lang.as_canonical(made, lang.EVENTS).equals(lang.to_arrow(rows, lang.EVENTS))
    with pytest.raises(ValueError, match="prompts for"):
        lang.dialogue_events(prompts, replies + ["one more"])


def test_a_files_events_mix_the_sources_rows_and_the_runs_in_frame_order():
    """Frames with the source's events take the rows one by one, the others as columns: the column
    is the one the rows alone give, every frame in its place."""
    from hub_pgen.write.language import LanguageCounts, LanguagePlan, language_columns

    table = pa.table({"episode_index": pa.array([0] * 6 + [1] * 4, pa.int64()),
                      "frame_index": pa.array(list(range(6)) + list(range(4)), pa.int64()),
                      "timestamp": pa.array([i / 10 for i in range(6)] + [i / 10 for i in range(4)], pa.float32())})
    vqa = {"role": "user", "content": "what is here?", "style": "vqa", "camera": "observation.images.up",
           "tool_calls": None}
    said = lang.dialogue_rows("the source's", "own")
    source_events = [[], [vqa], [], [said[1], said[0]], [], [], [vqa], [], [], []]
    table = table.append_column(lang.EVENTS, lang.to_arrow(source_events, lang.EVENTS))
    ours = {0: ((0, ("a", "b")), (1, ("c", "d")), (3, ("e", "f")), (5, ("g", "h"))), 1: ((0, ("i", "j")),)}
    counts = LanguageCounts()
    _, events = language_columns(table, LanguagePlan({}, ours), counts)
    expect = [lang.dialogue_rows("a", "b"), [vqa, *lang.dialogue_rows("c", "d")], [], [said[1], said[0]], [],
              lang.dialogue_rows("g", "h"), lang.dialogue_rows("i", "j") + [vqa], [], [], []]
    assert events.equals(lang.to_arrow([sorted(rows, key=lang.event_key) for rows in expect], lang.EVENTS))
    assert (counts.dialogues, counts.kept_event_rows, counts.dialogues_not_added) == (4, 4, ["episode 0 frame 3"])


def test_validate_reads_a_files_events_a_slice_at_a_time_and_finds_the_same(outputs, tmp_path, monkeypatch):
    """The events are read EVENT_SLICE frames at a time (a run's file has a dialogue on most frames):
    damage in several slices, and dialogues that are not where their records say, are found and said
    in the same order whatever the slice (one frame, three, the whole file)."""
    from hub_pgen.write import validate_language as validate_mod

    out = tmp_path / "out"
    shutil.copytree(outputs["both"], out)
    path = next(p for p in sorted((out / "data").glob("chunk-*/file-*.parquet")))

    def damage(rows):
        with_rows = [i for i, r in enumerate(rows) if r]
        for i in (with_rows[0], with_rows[len(with_rows) // 2], with_rows[-1]):
            rows[i] = [r for r in rows[i] if r["style"] == "interjection"]  # the say call gone
        rows[with_rows[1]], rows[with_rows[2]] = rows[with_rows[2]], rows[with_rows[1]]  # two dialogues swapped

    _rewrite(path, lang.EVENTS, damage)
    syn = out / "meta" / "syn_annotations.jsonl"
    lines = syn.read_text(encoding="utf-8").splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if json.loads(line)["status"] == "ok")
    rec = json.loads(lines[last])
    syn.write_text("".join(lines[:last] + [json.dumps({**rec, "timestamp": rec["timestamp"] + 0.5}) + "\n"]
                           + lines[last + 1:]), encoding="utf-8")
    whole = problems(out)
    assert sum("an interjection without a say call" in p for p in whole) == 3
    assert sum("is not in language_events as an interjection + say pair" in p for p in whole) == 5
    assert sum("is not the frame's" in p for p in whole) == 1
    for size in (1, 3):
        monkeypatch.setattr(validate_mod, "EVENT_SLICE", size)
        assert problems(out) == whole, size
