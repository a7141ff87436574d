"""The review as one self-contained HTML file.

No script, no external resource: the page's Content-Security-Policy allows only inline styles and
``data:`` images, so it opens offline, from a file, or from any server, and a model string that
escaped escaping still could not run or fetch anything. Every string that came from a model, a
dataset or a user goes through :func:`esc` (text and attribute values alike); ids are rebuilt from
a safe alphabet.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from hub_pgen import __version__, layout
from hub_pgen.data import JournalRecord
from hub_pgen.plan.planner import format_episode_list
from hub_pgen.review.model import EpisodeView, Review
from hub_pgen.review.thumbs import Thumb

RAW_TEXT_LIMIT = 4000  # characters of a failure's raw model answer shown (the record has all of it)
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def anchor(sample_id: str) -> str:
    return "s-" + _UNSAFE_ID.sub("_", sample_id)


STYLE = """
:root{--ok:#1a7f37;--bad:#cf222e;--flt:#9a6700;--mut:#57606a;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328}
header,main>section,nav{padding:12px 24px}header{background:var(--bg);border-bottom:1px solid var(--line)}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:18px 0 6px}h3{font-size:15px;margin:12px 0 4px}
.meta{color:var(--mut)}table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid var(--line);padding:3px 8px;text-align:left}
th{background:var(--bg)}td.n{text-align:right;font-variant-numeric:tabular-nums}
.alarm{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 10px;margin:6px 0}
.notice{color:var(--mut)}.grid{display:flex;flex-wrap:wrap;gap:24px}
nav a{margin-right:10px;white-space:nowrap}
.timeline{position:relative;height:58px;background:#fff;border:1px solid var(--line);border-radius:4px;margin:6px 0 2px}
.lane{position:absolute;top:0;left:0;right:0;height:30px;background:repeating-linear-gradient(45deg,#e4e4e4 0 6px,#fff 6px 12px)}
.seg{position:absolute;top:0;height:30px;background:#ddf4ff;border-right:1px solid #54aeff;overflow:hidden;
  white-space:nowrap;text-overflow:ellipsis;font-size:12px;padding:6px 4px}
.seg:nth-child(even){background:#b6e3ff}.banner{margin-top:6px;font-weight:600;color:#7d4e00}
ul.warnings{margin:4px 0;padding-left:20px;color:#7d4e00}
.nodlg{position:absolute;top:32px;height:8px;background:var(--bad);opacity:.55}
.mk{position:absolute;top:42px;width:12px;height:12px;margin-left:-6px;border-radius:50%;background:var(--ok);
  border:2px solid #fff;text-decoration:none}
.mk.failed{background:var(--bad)}.mk.filtered{background:var(--flt)}
.legend{font-size:12px;color:var(--mut)}.legend i{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid var(--line);border-left:5px solid var(--ok);border-radius:6px;padding:8px 10px;width:430px;background:#fff}
.card.failed{border-left-color:var(--bad)}.card.filtered{border-left-color:var(--flt)}
.card:target{outline:3px solid #0969da}
#only-failed:target~main article.card:not(.failed),#only-failed:target~main section.episode:not(:has(article.card.failed)){display:none}
#only-filtered:target~main article.card:not(.filtered),#only-filtered:target~main section.episode:not(:has(article.card.filtered)){display:none}
#only-flagged:target~main article.card:not(.flagged),#only-flagged:target~main section.episode:not(:has(article.card.flagged)){display:none}
#only-disagrees:target~main article.card:not(.disagrees),#only-disagrees:target~main section.episode:not(:has(article.card.disagrees)){display:none}
.imgs{display:flex;gap:6px;flex-wrap:wrap}figure{margin:0}figcaption{font-size:11px;color:var(--mut)}
img.thumb{display:block;width:192px;height:auto;border-radius:3px;background:#eee}
.noimg{width:192px;min-height:72px;background:#fff0f0;color:var(--bad);font-size:11px;padding:4px;overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:max-content 1fr;gap:1px 8px;margin:6px 0}dt{color:var(--mut)}
dd{margin:0;overflow-wrap:anywhere}.say{margin:4px 0;padding:4px 8px;border-radius:8px;overflow-wrap:anywhere}
.flag{display:inline-block;margin:2px 4px 2px 0;padding:0 6px;border-radius:8px;background:#fff8c5;
  border:1px solid #d4a72c;font-size:12px}.user{background:#f1f8ff}.robot{background:#effbef}
.status{font-weight:600;font-size:12px;text-transform:uppercase}.ok .status{color:var(--ok)}
.failed .status{color:var(--bad)}.filtered .status,.filtered .err{color:var(--flt)}
.err{color:var(--bad)}pre{white-space:pre-wrap;word-break:break-word;background:var(--bg);padding:6px;max-height:240px;overflow:auto}
"""


def render_parts(review: Review, thumbs: dict[str, list[Thumb]]) -> Iterator[str]:
    """The page in pieces, an episode's section a piece (joined, the page), made one piece at a time, so a page of 1,000 cards (~10 MB, twice that as text with one non-Latin-1
    character) is never held whole, nor twice (issue 23)."""
    prov = review.provenance
    counts = review.counts()
    shown = len(review.cards)
    flagged = {r.sample_id: _flags(r) for r in review.cards}  # once a card
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>hub-pgen review: {esc(review.name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        "".join(f'<span id="only-{k}"></span>' for k in FILTERS),  # :target switches of the card filter
        _header(review, counts, shown),
        "<main>",
        _summary(review, counts),
        _nav(review, flagged),
    ]
    yield "\n".join(head)
    for ep in review.episodes:
        yield "\n" + _episode(ep, review, thumbs, flagged)
    yield "\n" + _provenance(prov)
    yield "\n</main></body></html>"


def _header(review: Review, counts: dict[str, int], shown: int) -> str:
    prov = review.provenance
    gen = prov.get("generation", {})
    model = gen.get("model") or "(no model)"
    lines = []
    if review.scope is not None:
        lines.append(f"Episode(s) {format_episode_list(review.scope)} only, {len(review.episodes)} of {review.total_episodes}: "
                     "every figure on this page is theirs (the dataset's own page has all of them).")
    if shown < counts["samples"]:
        bad = review.tally.bad
        bad_shown = sum(1 for r in review.cards if r.status != "ok")
        first = (f"every failed and filtered one ({bad})" if bad_shown == bad
                 else f"{bad_shown} of the {bad} failed and filtered ones")
        dots = (f"; the timelines mark those {shown} only" if not review.tally.mark_all else "")
        lines.append(f"Showing {shown} of {counts['samples']} samples as cards: {first} first, then ok ones spread "
                     f"evenly{dots} (every sample is in {layout.SYN_ANNOTATIONS_PATH}).")
    notes = "".join(f'<div class="banner">{esc(line)}</div>' for line in lines)
    if review.problems:
        items = "".join(f"<li>{esc(p)}</li>" for p in review.problems[:10])
        more = f"<li>… and {len(review.problems) - 10} more</li>" if len(review.problems) > 10 else ""
        notes += (f'<div class="alarm">⚠ This folder does not pass <code>hub-pgen validate</code> '
                  f"({len(review.problems)} problem(s)): what this page shows may not be what a loader sees."
                  f"<ul>{items}{more}</ul></div>")
    return (f"<header><h1>hub-pgen review: {esc(review.name)}</h1>"
            f"<div class=\"meta\">from {esc(review.source_name)} · {esc(prov.get('created_at', ''))} · hub-pgen "
            f"{esc(prov.get('tool', {}).get('version', ''))} · backend {esc(gen.get('backend', '?'))} · model {esc(model)}"
            f" · format {esc(prov.get('format', 'hirobot'))} · fingerprint {esc(prov.get('fingerprint', ''))}</div>"
            f"{notes}</header>")


def _table(rows: Sequence[Sequence[Any]], head: Sequence[str] | None = None) -> str:
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
    for row in rows:
        cells = []
        for v in row:
            cls = ' class="n"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{esc(_fmt(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def _summary(review: Review, counts: dict[str, int]) -> str:
    prov = review.provenance
    pc = prov.get("counts", {})
    frames = sum(ep.length for ep in review.episodes)
    without = sum(b - a for ep in review.episodes for a, b in ep.no_dialogue)
    generated = counts["ok"] + counts["filtered"]
    rows = [("samples", counts["samples"]), ("dialogues generated", generated),
            ("kept in the dataset", counts["ok"]), ("filtered out", counts["filtered"]), ("failed", counts["failed"]),
            ("frames with a dialogue", f"{frames - without:,} of {frames:,}")]
    if review.scope is None:
        if pc.get("kept_source_dialogues"):
            rows.append(("frames that kept the source's dialogue", pc["kept_source_dialogues"]))
        if pc.get("new_tasks") is not None:
            rows.append(("new tasks.parquet rows", pc.get("new_tasks")))
        skills = prov.get("skills") or {}
        if skills:
            from hub_pgen.skills import origin_text

            rows.append(("skills from", f"{origin_text(skills)}: {skills.get('skills', '?')} skill(s) in "
                                        f"{skills.get('episodes_with_skills', '?')} episode(s)"))
    out = ['<section id="summary"><h2>Summary</h2><div class="grid"><div><h3>Counts</h3>', _table(rows), "</div>"]

    # the run's page: the run's own measures of these records (measured once); hub-pgen report measures
    # the records as it reads them (an edited file, or --episodes, shows what it holds)
    quality = review.measured
    sampling = (prov.get("generation") or {}).get("sampling")
    alarms = quality.alarms(sampling)
    q = quality.as_dict()
    if q["samples"]:
        qrows = [("distinct dialogues", f"{q['distinct_dialogues']} of {q['samples']}"),
                 ("distinct-1 / distinct-2 of prompts", f"{q['distinct_1_prompts']:.2f} / {q['distinct_2_prompts']:.2f}"),
                 ("distinct-1 / distinct-2 of replies", f"{q['distinct_1_replies']:.2f} / {q['distinct_2_replies']:.2f}"),
                 ("prompt characters (min / median / max)", _spread(q["prompt_chars"])),
                 ("reply characters (min / median / max)", _spread(q["reply_chars"])),
                 ("degenerate strings", q["degenerate"]), ("prompts copying the skill", q["skill_copied"]),
                 ("near-duplicates in an episode", q["near_duplicates"]), ("refusals", q["refusals"])]
        out += [f"<div><h3>Quality of the {q['samples']} generated dialogues (before filters)</h3>", _table(qrows),
                "</div>"]
    verify = prov.get("verify")
    if verify:
        # the records' own verdicts; a dataset written before they were recorded: the run's figures
        v = review.tally.verdict_summary() or (verify if review.scope is None else None)
        if v is not None:
            agreement = v.get("agreement")
            vrows = [("mode", verify.get("mode")), ("checked", v.get("checked")), ("agree", v.get("agree")),
                     ("disagree", v.get("disagree")), ("unanswered", v.get("unanswered")),
                     ("agreement", f"{agreement:.1%}" if isinstance(agreement, (int, float)) else "n/a")]
            out += ["<div><h3>Verifier (--verify)</h3>", _table(vrows), "</div>"]
    out.append("</div>")
    for a in alarms:
        out.append(f'<div class="alarm">⚠ {esc(a)}</div>')
    out.append(_mix(review))
    filtered = review.tally.filtered
    if filtered:
        out += ["<h3>Filtered out, by reason</h3>", _table(filtered.most_common())]
    failures = review.tally.failures
    if failures:
        out += ["<h3>Failures, by reason</h3>", _table(failures.most_common())]
    notices = [n for n in prov.get("notices", []) or [] if n not in alarms and n not in quality_alarms(prov)]
    if notices and review.scope is None:
        out.append("<h3>Input warnings</h3><ul class=\"warnings\">"
                   + "".join(f"<li>{esc(n)}</li>" for n in notices) + "</ul>")
    out.append("</section>")
    return "".join(out)


def quality_alarms(prov: dict[str, Any]) -> list[str]:
    """The alarms the run raised (they are in the provenance's notices too, and shown above)."""
    from hub_pgen.quality import Quality

    quality = Quality.from_dict(prov.get("quality"))
    return quality.alarms((prov.get("generation") or {}).get("sampling")) if quality is not None else []


def _spread(d: Any) -> str:
    if not isinstance(d, dict):
        return ""
    return " / ".join(_fmt(d.get(k)) for k in ("min", "median", "max"))


def _mix(review: Review) -> str:
    """Scenario and response types: asked (what the plan assigned to every sample) against obtained
    (the types of the dialogues kept in the dataset)."""
    asked, got = review.tally.asked, review.tally.got
    out = ['<div class="grid">']
    for kind in ("scenario_type", "response_type"):
        names = sorted(set(asked[kind]) | set(got[kind]))
        ta, tg = sum(asked[kind].values()) or 1, sum(got[kind].values()) or 1
        rows = [(n, asked[kind][n], f"{asked[kind][n] / ta:.0%}", got[kind][n], f"{got[kind][n] / tg:.0%}")
                for n in names]
        out += [f"<div><h3>Mix: {esc(kind)}</h3>", _table(rows, (kind, "asked", "share", "obtained", "share")),
                "</div>"]
    out.append('</div><p class="meta">asked: the types the plan gave each sample; obtained: the types of the '
               "dialogues kept in the dataset (not failed, not filtered out).</p>")
    return "".join(out)


def _nav(review: Review, flagged: dict[str, list[str]]) -> str:
    """Links to the episodes, and the card filter: a link to ``#only-failed`` (say) makes that empty
    element the page's :target, and the stylesheet then hides every other card (and every episode
    left without one). No script: the page's policy allows none."""
    cards = review.cards
    n = {k: sum(1 for r in cards if k in _classes(r, flagged[r.sample_id])) for k in FILTERS}
    show = " ".join([f'<a href="#summary">all ({len(cards)})</a>']
                      + [f'<a href="#only-{k}">{esc(label)} ({n[k]})</a>' for k, label in FILTERS.items() if n[k]])
    out = f"<nav><b>Show cards:</b> {show}</nav>"
    if len(review.episodes) >= 2:
        links = " ".join(f'<a href="#ep-{ep.index}">episode {ep.index}</a>' for ep in review.episodes)
        out += f"<nav><b>Episodes:</b> {links}</nav>"
    return out


FILTERS = {"failed": "failed", "filtered": "filtered out", "flagged": "flagged by the quality measures",
           "disagrees": "the verifier read another skill"}


def _flags(r: JournalRecord) -> list[str]:
    """What the quality measures say of a sample's dialogue (none for a failure: it has none)."""
    from hub_pgen.quality import flags

    return flags(r) if r.status != "failed" and r.user_prompt is not None else []


def _classes(r: JournalRecord, flags: list[str]) -> list[str]:
    out: list[str] = [r.status]
    if flags:
        out.append("flagged")
    if r.verified is not None and not r.verified.get("agrees"):
        out.append("disagrees")
    return out


def _pct(x: float, total: float) -> str:
    return f"{max(0.0, min(100.0, 100.0 * x / total)):.3f}%" if total > 0 else "0%"


def _episode(ep: EpisodeView, review: Review, thumbs: dict[str, list[Thumb]], flagged: dict[str, list[str]]) -> str:
    total = ep.length
    statuses = ep.statuses
    head = (f'<section class="episode" id="ep-{ep.index}"><h2>Episode {ep.index}</h2>'
            f'<div class="meta">{esc(ep.task)} · {ep.length} frames, {ep.duration:.2f} s · '
            f"{ep.samples} sample(s): {statuses.get('ok', 0)} ok, {statuses.get('failed', 0)} failed, "
            f"{statuses.get('filtered', 0)} filtered</div>")
    tl = ['<div class="timeline"><div class="lane">']
    for s in ep.skills:
        start, end = s.start * ep.fps, min(s.end * ep.fps, total)
        if end <= start:
            continue
        span = (f"{s.start:.2f}-{s.end:.2f} s" if s.end <= ep.duration + 1e-6 else
                f"{s.start:.2f}-{ep.duration:.2f} s; skills.json says it ends at {s.end:.2f} s, past the episode")
        tl.append(f'<div class="seg" style="left:{_pct(start, total)};width:{_pct(end - start, total)}" '
                  f'title="{esc(s.name)} ({span})">{esc(s.name)}</div>')
    tl.append("</div>")
    for a, b in ep.no_dialogue:
        tl.append(f'<div class="nodlg" style="left:{_pct(a, total)};width:{_pct(b - a, total)}" '
                  f'title="frames {a}-{b - 1}: no dialogue (-1)"></div>')
    for m in ep.markers:
        link = f' href="#{anchor(m.sample_id)}"' if m.shown else ""
        tl.append(f'<a class="mk {esc(m.status)}"{link} style="left:{_pct(m.frame_index + 0.5, total)}" '
                  f'title="{esc(m.sample_id)}: {esc(m.status)} · {esc(m.skill)}"></a>')
    tl.append("</div>")
    legend = ('<div class="legend">top: the skills of meta/skills.json (hatched: no skill); below:'
              '<i style="background:var(--bad);opacity:.55"></i>'
              f"frames without a dialogue, -1 ({esc(review.frames_from)})"
              '<i style="background:var(--ok);border-radius:50%"></i>ok<i style="background:var(--bad);'
              'border-radius:50%"></i>failed<i style="background:var(--flt);border-radius:50%"></i>filtered</div>')
    cards = [_card(r, thumbs.get(r.sample_id, []), flagged[r.sample_id]) for r in ep.cards]
    return "".join([head, *tl, legend, '<div class="cards">', *cards, "</div></section>"])


def _card(r: JournalRecord, thumbs: list[Thumb], flags: list[str]) -> str:
    figs = []
    for t in thumbs:
        if t.data is not None:
            b64 = base64.b64encode(t.data).decode("ascii")
            figs.append(f'<figure><img class="thumb" alt="{esc(t.label)}" src="data:{t.mime};base64,{b64}">'
                        f"<figcaption>{esc(t.label)}</figcaption></figure>")
        else:
            figs.append(f'<figure><div class="noimg">frame unavailable: {esc(t.error)}</div>'
                        f"<figcaption>{esc(t.label)}</figcaption></figure>")
    where = f"frame {r.frame_index}" if r.frame_index is not None else ""
    if r.timestamp is not None:
        where += f" ({r.timestamp:.2f} s)"
    if r.frame_start is not None and r.frame_end is not None:
        where += (f"; dialogue on frames {r.frame_start}-{r.frame_end - 1}" if r.status == "ok" else
                  f"; frames {r.frame_start}-{r.frame_end - 1} keep -1")
    rows = [("task", r.task_description), ("skill", r.skill_current),
            ("history", " → ".join(r.skill_history) or "(first skill)"),
            ("asked", f"{r.scenario_type} / {r.response_type}"), ("where", where)]
    if r.task_index_high_level is not None and r.task_index_high_level >= 0:
        rows.append(("task index", str(r.task_index_high_level)))
    if r.verified is not None:
        read = r.verified.get("skill")
        rows.append(("verifier read", (f"{read} (agrees)" if r.verified.get("agrees") else
                                       f"{read} (disagrees)" if read is not None else "no usable answer")))
    if r.attempts and r.attempts > 1:
        rows.append(("attempts", str(r.attempts)))
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    body = []
    body += [f'<span class="flag">{esc(f)}</span>' for f in flags]
    if r.user_prompt is not None or r.robot_utterance is not None:
        body.append(f'<p class="say user"><b>User:</b> {esc(r.user_prompt)}</p>')
        body.append(f'<p class="say robot"><b>Robot:</b> {esc(r.robot_utterance)}</p>')
    if r.status != "ok":
        body.append(f'<p class="err">{esc(r.error or "unknown error")}</p>')
        if r.raw_text:
            raw = r.raw_text if len(r.raw_text) <= RAW_TEXT_LIMIT else (
                r.raw_text[:RAW_TEXT_LIMIT] + f"\n… ({len(r.raw_text) - RAW_TEXT_LIMIT:,} more characters in the record)")
            body.append(f"<details><summary>raw model answer</summary><pre>{esc(raw)}</pre></details>")
    for e in r.earlier:
        body.append(f'<p class="notice">earlier try: {esc(e.get("error"))}</p>')
    return (f'<article class="card {esc(" ".join(_classes(r, flags)))}" id="{anchor(r.sample_id)}">'
            f'<div><span class="status">{esc(r.status)}</span> <code>{esc(r.sample_id)}</code></div>'
            f'<div class="imgs">{"".join(figs)}</div><dl>{dl}</dl>{"".join(body)}</article>')


def _provenance(prov: dict[str, Any]) -> str:
    text = json.dumps(prov, indent=2, sort_keys=True, ensure_ascii=False)
    return (f'<section id="provenance"><details><summary><b>Provenance</b> ({esc(layout.PROVENANCE_PATH)})</summary>'
            f"<pre>{esc(text)}</pre></details><p class=\"meta\">Made by hub-pgen {esc(__version__)}: "
            f"<code>hub-pgen report OUT</code> writes it again.</p></section>")
