#!/usr/bin/env python
"""The answer parser on its worst case, before and after issue 20: an answer of N opening braces.

The old parser (copied below as the baseline) tried a JSON decode from every ``{`` and, on failure,
walked to the matching brace from there: quadratic in the braces. The new one scans once and decodes
at most ``MAX_DECODES`` balanced spans. Both run in this invocation on the same inputs; the cap on an
answer's length (``DIALOGUE_ANSWER_CHARS``) is lifted for the new parser so the scan itself is measured,
and the capped path (what a run does) is timed too (CPU time, the least of --repeat runs). Figures are reported as ratios: old / new at each
size, and each parser's time at 2N over its time at N (4 is quadratic, 2 linear).

    python scripts/bench_parse.py [--sizes 1000,2000,4000,8000,16000] [--big 1000000] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# --- the parser before issue 20 (hub_pgen/generate/parse.py at 29d26e2), the search part only ----------

_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def old_objects_in(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    pos = text.find("{")
    while pos != -1:
        obj, end = _old_decode_at(decoder, text, pos)
        if isinstance(obj, dict):
            out.append(obj)
            pos = text.find("{", end)
        else:
            pos = text.find("{", pos + 1)
    return out


def _old_decode_at(decoder: json.JSONDecoder, text: str, pos: int) -> tuple[Any, int]:
    try:
        return decoder.raw_decode(text, pos)
    except json.JSONDecodeError:
        pass
    end = _old_balanced_end(text, pos)
    if end is None:
        return None, pos
    try:
        return json.loads(_TRAILING_COMMA.sub(r"\1", text[pos:end])), end
    except json.JSONDecodeError:
        return None, pos


def _old_balanced_end(text: str, pos: int) -> int | None:
    depth, in_string, escaped = 0, False, False
    for i in range(pos, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


# --- measuring -----------------------------------------------------------------------------------------


def best_of(fn, text: str, repeat: int) -> float:
    """The least CPU time of ``repeat`` runs (CPU time, not wall time: a busy machine skews it less)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn(text)
        best = min(best, time.process_time() - t0)
    return max(best, 1e-6)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,2000,4000,8000,16000", help="answers of this many braces (old and new)")
    p.add_argument("--big", type=int, default=1_000_000, help="a size for the new parser alone (the old: hours)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from hub_pgen.errors import GenerationError
    from hub_pgen.generate.parse import DIALOGUE_ANSWER_CHARS, _Search, extract_object

    def new(text: str) -> None:
        _Search().candidates(text)  # the search extract_object runs, without the length cap

    def capped(text: str) -> None:
        try:
            extract_object(text)
        except GenerationError:
            pass

    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        text = "{" * n
        old_s, new_s = best_of(old_objects_in, text, 1 if n > 8000 else args.repeat), best_of(new, text, args.repeat)
        rows.append({"braces": n, "old_s": old_s, "new_s": new_s, "old_over_new": old_s / new_s})
    for prev, row in zip(rows, rows[1:]):
        scale = row["braces"] / prev["braces"]
        row["old_growth"] = row["old_s"] / prev["old_s"]
        row["new_growth"] = row["new_s"] / prev["new_s"]
        row["size_growth"] = scale
    # the new parser alone on sizes up to --big (each x2 of the one before), where its times are not noise
    scaling = []
    for n in [args.big // 2 ** k for k in range(4, -1, -1)]:
        scaling.append({"braces": n, "new_s": best_of(new, "{" * n, args.repeat)})
    for prev, row in zip(scaling, scaling[1:]):
        row["new_growth"] = row["new_s"] / prev["new_s"]
    big = "{" * args.big
    big_s = scaling[-1]["new_s"]
    cap_s = best_of(capped, big, args.repeat)
    # the old parser's time on the big answer, extrapolated quadratically from its largest measured size
    last = rows[-1]
    old_big = last["old_s"] * (args.big / last["braces"]) ** 2
    result = {"rows": rows, "new_scaling": scaling, "big": {"braces": args.big, "new_s": big_s, "capped_s": cap_s,
                                    "old_s_extrapolated": old_big, "old_over_new": old_big / big_s,
                                    "cap_chars": DIALOGUE_ANSWER_CHARS}}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'braces':>9} {'old/new':>9} {'old x(2N)/N':>12} {'new x(2N)/N':>12}")
    for row in rows:
        growth = (f"{row['old_growth']:12.2f} {row['new_growth']:12.2f}" if "old_growth" in row else f"{'':>12} {'':>12}")
        print(f"{row['braces']:>9,} {row['old_over_new']:9.0f} {growth}")
    print("new alone: " + ", ".join(f"{r['braces']:,}: x{r['new_growth']:.2f}" for r in scaling[1:]))
    print(f"{args.big:,} braces: new scan {big_s:.2f} s (old, extrapolated: {old_big / 3600:.1f} h, "
          f"{old_big / big_s:,.0f}x); with the {DIALOGUE_ANSWER_CHARS:,}-character cap: {cap_s * 1e6:.0f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
