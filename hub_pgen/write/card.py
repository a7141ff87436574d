"""The dataset card (``README.md``) of the new dataset: Hub metadata, provenance, examples.

Model and dataset text is data, never markup: every dialogue, skill name, task string, repo id and
count lands through :mod:`hub_pgen.textsafe` (``for_markdown_cell`` in a table, ``for_markdown`` in
a line, ``for_markdown_code`` in a code span), so a generated ``![x](http://host/p.png)``,
``<script>``, ``|`` or line break shows as those characters and changes nothing else. The YAML front
matter is huggingface_hub's (:class:`~huggingface_hub.DatasetCardData`), never concatenated text; a
link is made only of a repo id that is one (``owner/name``).
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hub_pgen import fsio, layout
from hub_pgen.data import JournalRecord
from hub_pgen.skills import origin_text
from hub_pgen.textsafe import for_markdown, for_markdown_cell, for_markdown_code

escape = for_markdown_cell  # a table cell (the card's tables: provenance, quality, examples)
# what the Hub accepts as a repo id (huggingface_hub's validate_repo_id): only such an id becomes a link
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


def render_card(provenance: dict[str, Any], examples: Iterable[JournalRecord], *, limit: int = 8,
                repo_id: str | None = None, branch: str | None = None) -> str:
    """The card. ``repo_id``/``branch``: where it is being pushed (default: the run's ``--push-to``
    and ``--branch``); without either the load snippet loads the local folder.

    A pushed card names no local path: the source folder and a local model folder appear by name only
    (as in the provenance), and the counts are the provenance's, written after the dataset was."""
    src = provenance.get("source", {})
    src_repo = src.get("repo_id")
    gen = provenance.get("generation", {})
    counts = provenance.get("counts", {})
    mix = provenance.get("mix", {})
    lines = ["---", _front_matter(), "---", ""]
    lines.append("# Synthetic user prompts and robot replies (Hi Robot `pgen`)")
    lines.append("")
    if isinstance(src_repo, str) and _REPO_ID.match(src_repo) and ".." not in src_repo:
        origin = f"[{for_markdown(src_repo)}](https://huggingface.co/datasets/{src_repo})"
    else:
        origin = for_markdown_code(src_repo or src.get("root", "?"))
    parts = layout.FORMATS.get(provenance.get("format", "hirobot"), ("hirobot",))
    made = (f"made by hub-pgen {for_markdown(provenance.get('tool', {}).get('version', ''))}. "
            "For each sampled moment of each annotated skill, a vision-language model (`pgen` in "
            "Hi Robot, Shi et al. 2025) imagined a user prompt that would lead to that skill and the robot's reply.")
    hirobot = (f"Each distinct dialogue is a new row of `meta/tasks.parquet`; `{layout.FEATURE}` points at it "
               f"(`{layout.NO_TASK}` = no dialogue: frame outside every skill, or generation failed).")
    language = ("lerobot's language columns carry the same: each skill is a `subtask` row of "
                "`language_persistent`, each dialogue the user's `interjection` and the robot's `say` call in "
                "`language_events` on the frame the model saw (render them with "
                "`lerobot.datasets.language_render.render_sample`).")
    if parts == ("language",):
        intro = f"This dataset is {origin} with lerobot's language columns, {made} {language}"
    else:
        both = " and lerobot's language columns" if "language" in parts else ""
        intro = (f"This dataset is {origin} with a new per-frame feature, `{layout.FEATURE}`{both}, {made} "
                 f"{hirobot}" + (f" {language[0].upper()}{language[1:]}" if "language" in parts else ""))
    lines.append(intro + " Every other file and column is the source's, unchanged; videos are the source's files.")
    lines += ["", "## Provenance", "", "| | |", "|---|---|"]
    rows = [
        ("source", src_repo or src.get("root")),
        ("source revision", src.get("sha") or src.get("revision")),
        ("backend", gen.get("backend")),
        ("model", gen.get("model")),
        ("prompt template hash", gen.get("prompt_template")),
        ("skills from", origin_text(provenance.get("skills"))),
        ("sampling", gen.get("sampling")),
        ("configuration fingerprint", provenance.get("fingerprint")),
        ("samples", counts.get("samples")),
        ("generated", counts.get("ok")),
        ("failed", counts.get("failed")),
        ("new tasks rows", counts.get("new_tasks")),
        ("frames with a dialogue", f"{counts['frames_labelled']} of {counts['frames']}"
         if "frames" in counts and "frames_labelled" in counts else None),
    ]
    lines += [f"| {escape(k)} | {escape(v) if v is not None else '—'} |" for k, v in rows]
    quality = provenance.get("quality") or {}
    if quality.get("samples"):
        lines += ["", "## Quality measures", "", "| measure | value |", "|---|---|"]
        for key, label in (("distinct_dialogues", "distinct dialogues"), ("distinct_2_prompts", "distinct-2, prompts"),
                           ("distinct_2_replies", "distinct-2, replies"), ("degenerate", "degenerate strings"),
                           ("skill_copied", "prompts copying the skill"), ("near_duplicates", "near-duplicate prompts"),
                           ("refusals", "refusals")):
            lines.append(f"| {label} | {escape(quality.get(key))} |")
        verified = provenance.get("verify") or {}
        if verified.get("checked"):
            lines.append(f"| verifier agreement (--verify) | {escape(verified.get('agreement'))} of "
                         f"{escape(verified.get('checked'))} |")
    if mix:
        lines += ["", "## Scenario and response mix (paper, appendix A.1)", ""]
        for kind in ("scenario_type", "response_type"):
            counts_text = ", ".join(f"{for_markdown(k)}: {for_markdown(v)}" for k, v in mix.get(kind, {}).items())
            lines.append(f"- **{kind}** — {counts_text}")
    ok = list(itertools.islice((r for r in examples if r.status == "ok"), limit))  # the first ones: read no further
    if ok:
        lines += ["", "## Examples", "", "| skill | scenario / response | user prompt | robot reply |", "|---|---|---|---|"]
        for r in ok:
            lines.append(
                f"| {escape(r.skill_current)} | {escape(r.scenario_type)} / {escape(r.response_type)} | "
                f"{escape(r.user_prompt)} | {escape(r.robot_utterance)} |"
            )
    params = provenance.get("parameters") or {}
    if params:
        lines += ["", "<details><summary>All parameters of the run</summary>", "", "```json",
                  # one JSON value per indented line: nothing in it can close the fence
                  json.dumps(params, indent=2, sort_keys=True, default=str), "```", "", "</details>"]
    repo = repo_id or params.get("push_to")
    branch = branch if repo_id else params.get("branch")
    if repo:
        load = f"ds = LeRobotDataset({json.dumps(repo)}" + (f", revision={json.dumps(branch)})" if branch else ")")
    else:
        load = 'ds = LeRobotDataset("local/dataset", root="path/to/this/folder")'
    lines += [
        "",
        "## Load it",
        "",
        "```python",
        "from lerobot.datasets.lerobot_dataset import LeRobotDataset",
        load,
        "item = ds[0]" + (f"  # item['{layout.FEATURE}'] indexes ds.meta.tasks" if "hirobot" in parts
                          else "  # item['language_events'], item['language_persistent']"),
        "```",
        "",
        f"`meta/syn_annotations.jsonl` holds every generated sample (D_syn), and `{layout.PROVENANCE_PATH}` "
        "the full parameters of the run.",
        "",
        "## Review",
        "",
        *([f"This run wrote no review page (`--no-review`): `hub-pgen report` on the dataset's folder writes "
           f"`{layout.REPORT_PATH}`.", ""] if provenance.get("review") is False else [
        f"`{layout.REPORT_PATH}` is a review page of the samples, one self-contained HTML file: per episode the "
        "skill timeline with each sample on it, the frames the model saw, each dialogue or failure, the quality "
        "measures and the mix. Download it and open it in a browser"
        + (": " + for_markdown_code(f"hf download {shlex.quote(str(repo))} {layout.REPORT_PATH} --repo-type dataset"
                                    + (f" --revision {shlex.quote(str(branch))}" if branch else "")) + "."
           if repo else "."),
        ""]),
    ]
    return "\n".join(lines)


def _front_matter() -> str:
    """The Hub metadata, as huggingface_hub writes it (anything dataset-derived added here one day is
    quoted by its YAML dumper, never pasted into the text)."""
    from huggingface_hub import DatasetCardData

    return DatasetCardData(
        license="other",
        tags=["LeRobot", "hub-pgen", "hi-robot", "synthetic-dialogue"],
        task_categories=["robotics"],
        configs=[{"config_name": "default", "data_files": "data/*/*.parquet"}],
    ).to_yaml()


def refresh_card(folder: Path, *, repo_id: str | None, branch: str | None) -> str:
    """Render ``folder/README.md`` again from its provenance and D_syn records for where it is going
    (the push target may not be the one the run was started with). Returns the card."""
    from hub_pgen.provenance_file import read_provenance
    from hub_pgen.records_file import iter_records

    prov = read_provenance(folder)
    # D_syn, a line at a time: the card reads its first ok records, not the file into memory
    examples = (r for _, r in iter_records(folder / layout.SYN_ANNOTATIONS_PATH))
    card = render_card(prov, examples, repo_id=repo_id, branch=branch)
    path = folder / layout.CARD_PATH
    if not path.is_file() or path.read_text(encoding="utf-8") != card:
        fsio.write_atomic(path, card)
    return card
