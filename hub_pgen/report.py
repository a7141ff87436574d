"""What a finished run tells people: the terminal summary, ``--json``, and the GitHub Actions job summary.

Every value from the data, the model or a server is shown through :mod:`hub_pgen.textsafe`: one line
per value on a terminal (:func:`~hub_pgen.textsafe.inline`; rich cells as plain ``Text``, never
console markup), literal Markdown in the job summary.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from dataclasses import asdict
from typing import Any

from hub_pgen import layout
from hub_pgen.run.result import RunResult
from hub_pgen.textsafe import for_markdown_cell, for_markdown_code, inline, say, well_formed


def result_json(result: RunResult) -> dict[str, Any]:
    d = asdict(result)
    d["failures"] = [{"sample_id": r.sample_id, "error": r.error} for r in result.failures]
    d["examples"] = [{"sample_id": r.sample_id, "skill": r.skill_current, "user_prompt": r.user_prompt,
                      "robot_utterance": r.robot_utterance} for r in result.examples]
    d["output"] = str(result.output) if result.output else None
    d["report"] = str(result.report) if result.report else None
    d["exit_code"] = 0
    return d


def _failure_reasons(result: RunResult, limit: int = 5) -> list[tuple[str, int]]:
    reasons = Counter((r.error or "unknown").split(":")[0] for r in result.failures)
    return reasons.most_common(limit)


def _quality_line(q: dict[str, Any]) -> str:
    return (f"{q['distinct_dialogues']} distinct of {q['samples']}; distinct-2 prompts {q['distinct_2_prompts']:.2f}, "
            f"replies {q['distinct_2_replies']:.2f}; prompt chars {q['prompt_chars']['median']:g} median; "
            f"{q['degenerate']} degenerate, {q['skill_copied']} copy the skill, {q['refusals']} refusals")


def _skills_line(skills: dict[str, Any]) -> str:
    from hub_pgen.skills import origin_text

    line = f"{origin_text(skills)}: {skills.get('skills', 0)} skill(s) in {skills.get('episodes_with_skills', 0)} episode(s)"
    if skills.get("source") == "annotate":
        line += f"; {len(skills.get('failed', []))} episode(s) not labelled, {skills.get('repaired', 0)} repaired"
    return line


def print_summary(result: RunResult) -> None:
    if result.state == "dry-run":
        _print_plan(result.plan_report or {})
        return
    if result.kind == "skills":
        _print_labels(result)
        return
    rows: list[tuple[str, str]] = [
        ("result", result.state),
        ("output", str(result.output)),
        ("samples", str(result.samples)),
        ("generated ok", str(result.ok) + (f"  ({result.filtered['count']} filtered out, "
                                           f"{result.ok - result.filtered['count']} kept)"
                                           if result.filtered and result.filtered.get("count") else "")),
        ("failed", str(result.failed) + ("  (rerun with --retry-failed to try them again)" if result.failed else "")),
        ("resumed from journal", str(result.resumed)),
        ("sent to the backend this run", str(result.generated)),
        *([("model", result.runs_on)] if result.runs_on else []),
        *([("format", result.output_format)] if result.output_format else []),
        *([("skills from", _skills_line(result.skills))] if result.skills else []),
        *([("shard", f"{result.shard['index']} of {result.shard['count']} ({len(result.shard['episodes'])} "
                     "episode(s)): when every shard is done, hub-pgen merge their folders into the dataset")]
          if result.shard else []),
        *([("new tasks rows", str(result.new_tasks))]
          if result.output_format != "lerobot-language" and not result.shard else []),
        *([("language rows added", f"{result.language['dialogues']} dialogue(s) (interjection + say), "
                                   f"{result.language['subtask_rows']} subtask(s)")] if result.language else []),
        *([("frames with a dialogue", f"{result.frames_labelled} of {result.frames}" if result.frames else "—")]
          if not result.shard else []),
        *([("quality", _quality_line(result.quality))] if result.quality and result.quality.get("samples") else []),
        *([("verified", f"agreement {result.verify['agreement']:.0%} ({result.verify['agree']} of "
                        f"{result.verify['checked']}; {result.verify['unanswered']} unanswered)")]
          if result.verify and result.verify.get("checked") else []),
        *([("filtered", f"{result.filtered['count']}: " + "; ".join(
            f"{n} {r}" for r, n in result.filtered["by_reason"].items()))]
          if result.filtered and result.filtered.get("count") else []),
        *([("review", f"{result.report}  (open it in a browser)")] if result.report else []),
        ("fingerprint", result.fingerprint),
        ("seconds", f"{result.elapsed_s:.1f}"),
    ]
    for kind, counts in (result.mix or {}).items():
        rows.append((kind, ", ".join(f"{k} {v}" for k, v in counts.items())))
    for reason, n in _failure_reasons(result):
        rows.append(("failure", f"{n} × {reason}"))
    if result.retried:
        rows.append(("retried failures", str(result.retried)))
    for line in result.notices:
        rows.append(("warning", line))
    if result.push is not None:
        rows.append(("pushed", getattr(result.push, "url", str(result.push))))
    _table("hub-pgen summary", rows)
    if result.examples:
        say("\nA few generated dialogues:")
        for r in result.examples:  # model text: one line each, whatever it holds
            say(f"  [{inline(r.skill_current)}] ({inline(r.scenario_type)}/{inline(r.response_type)})")
            say(f"    user:  {inline(r.user_prompt)}\n    robot: {inline(r.robot_utterance)}")


def _print_labels(result: RunResult) -> None:
    """``hub-pgen label``: what was labelled, and how to use it."""
    skills = result.skills or {}
    rows = [("result", result.state), ("output", str(result.output)),
            ("episodes", str(result.samples)), ("labelled", str(result.ok)),
            ("not labelled", str(result.failed) + ("  (rerun with --retry-failed to ask again)" if result.failed else "")),
            ("skills", f"{skills.get('skills', 0)} in {skills.get('episodes_with_skills', 0)} episode(s); "
                       f"{skills.get('repaired', 0)} episode(s) repaired"),
            *[("warning", line) for line in result.notices],
            ("next", f"add --skills-file {result.output}/{layout.SKILLS_PATH} to the runs (and shards) that use them"),
            ("fingerprint", result.fingerprint), ("seconds", f"{result.elapsed_s:.1f}")]
    _table("hub-pgen labels", rows)


_PLAN_LABELS = {"episodes_without_skills": "episodes without skills (indices)",
                "model_calls": "model calls (one per sample and try)"}


def _print_plan(report: dict[str, Any]) -> None:
    rows = []
    prompts = report.get("prompts") or {}
    for key, value in report.items():
        if key == "prompts":
            continue
        if key == "cost" and isinstance(value, dict):
            rows += _cost_rows(value)
            continue
        if key == "mix" and isinstance(value, dict):
            for kind, counts in value.items():
                rows.append((kind.replace("_", " "), ", ".join(f"{k} {v}" for k, v in counts.items())))
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "(none)"
        elif value is None:
            value = "—"
        rows.append((_PLAN_LABELS.get(key, key.replace("_", " ")), str(value)))
    _table("hub-pgen plan (dry run: nothing generated)", rows)
    for scenario, shown in prompts.items():
        say(f"\n--- prompt for {inline(scenario)} ({inline(shown['sample_id'])}; images: "
            f"{inline(', '.join(shown['images']) or 'none')}) ---")
        # indented: a line of the data's (a skill name's line break) cannot pass for a log line, nor for an
        # Actions workflow command, which starts a line with '::'
        say("\n".join("  " + line for line in shown["prompt"].split("\n")))


def _cost_rows(cost: dict[str, Any]) -> list[tuple[str, str]]:
    if "image_tokens_per_sample" not in cost:
        return [("cost", cost.get("note", "—"))]
    seconds = float(cost.get("gpu_seconds_estimate") or 0)
    template = cost["input_tokens_per_sample"] - cost["image_tokens_per_sample"] - cost["text_tokens_per_sample"]
    rows = [("tokens per sample", f"{cost['input_tokens_per_sample']:,} in = {cost['image_tokens_per_sample']:,} image "
                                  f"({cost['image_tokens_from']}) + {cost['text_tokens_per_sample']:,} text "
                                  f"({cost['text_tokens_from']}) + {template} of the chat template; about "
                                  f"{cost['output_tokens_per_sample']} out"),
            ("model calls in all", f"{cost['model_calls']:,} ({cost['input_tokens']:,} input tokens)"),
            ("GPU time (estimate)", f"{seconds / 3600:.1f} h ({seconds:,.0f} s) at {cost['gpu_rate_assumed']}")]
    if cost.get("note"):
        rows.append(("note", cost["note"]))
    return rows


def _table(title: str, rows: list[tuple[str, str]]) -> None:
    rows = [(inline(k), inline(v)) for k, v in rows]  # one row a line: no value can forge another
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for k, v in rows:
            table.add_row(Text(k), Text(v))  # Text: a '[link=…]' in a value is not console markup
        Console().print(table)
        return
    say(title)
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        say(f"  {k.ljust(width)}  {v}")


_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~/%+-]*)?$")


def write_step_summary(result: RunResult, config: Any) -> None:
    """In GitHub Actions, a Markdown job summary: counts, failures, mix, link to the pushed repo.

    Model, dataset and server text is literal Markdown (:func:`~hub_pgen.textsafe.for_markdown_cell`),
    and the pushed repo is a link only when the server's URL is a plain http(s) one. The file is the
    runner's (``GITHUB_STEP_SUMMARY``, a path it makes for each step, not one from the data): it is
    appended to as given, links followed, as every Actions step does."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    e = for_markdown_cell  # model text is data, never markup
    lines = ["## hub-pgen", "", "| | |", "|---|---|"]
    source = config.repo_id or (config.root and config.root.name) or config.input_jsonl
    for k, v in (("source", source), ("result", result.state), ("samples", result.samples), ("ok", result.ok),
                 ("failed", result.failed), ("resumed", result.resumed), ("new tasks rows", result.new_tasks),
                 ("frames with a dialogue", f"{result.frames_labelled} of {result.frames}"),
                 ("fingerprint", result.fingerprint)):
        lines.append(f"| {e(k)} | {e(v)} |")
    if result.push is not None:
        url = getattr(result.push, "url", None)
        lines.append(f"| pushed | [{e(config.push_to)}]({url}) |" if isinstance(url, str) and _URL.match(url)
                     else f"| pushed | {e(config.push_to)} |")
    for kind, counts in (result.mix or {}).items():
        lines += ["", f"**{e(kind)}**: " + ", ".join(f"{e(k)} {v}" for k, v in counts.items())]
    if result.failures:
        lines += ["", "### Failures", ""]
        lines += [f"- {for_markdown_code(r.sample_id)}: {e(r.error)}" for r in result.failures[:20]]
    if result.report is not None:
        lines += ["", f"The review page of every sample, `{layout.REPORT_PATH}`, is in this run's `pgen-report-*` "
                      "artifact (pgen.yml uploads it): download it and open it in a browser."]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(well_formed("\n".join(lines) + "\n"))
