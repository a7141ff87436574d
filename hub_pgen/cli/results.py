"""What every run does with its result (the main run, ``label``, ``merge``): refuse a result with no
dialogue (exit 8), push, print the summary or the JSON, write the Actions job summary; and the checks
before the work that the three share (a ``--push-to`` token, model options the backend ignores)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from hub_pgen.cli.options import build_parser
from hub_pgen.errors import UsageError
from hub_pgen.textsafe import json_text, say

logger = logging.getLogger("hub_pgen")


def require_push_token(push_to: str | None, dry_run: bool = False) -> None:
    """``--push-to`` needs a token; without one the run would generate everything and fail at the end."""
    if not push_to:
        return
    from huggingface_hub import get_token

    if get_token():
        return
    if dry_run:
        logger.warning("--push-to %s: no Hugging Face token is set (HF_TOKEN or `hf auth login`): the real run "
                       "would stop before it starts", push_to)
        return
    raise UsageError(f"--push-to {push_to} needs a Hugging Face token with write access, and none is set",
                     hint="set HF_TOKEN to a token with write access (https://huggingface.co/settings/tokens), or run "
                          "`hf auth login`; nothing has run yet")


def run_and_report(args: argparse.Namespace, work: Any) -> int:
    """``work(reporter) -> (config, result)``; then what every run does with its result: refuse a result
    with no dialogue, push, print the summary (or JSON), write the Actions job summary."""
    from hub_pgen.progress import RichReporter, make_reporter, quiet_library_progress
    from hub_pgen.report import print_summary, write_step_summary

    reporter = make_reporter(quiet=args.quiet or args.json)
    if not isinstance(reporter, RichReporter):
        quiet_library_progress()
    try:
        config, result = work(reporter)
        if result.state in ("written", "already-complete") and result.samples and not result.ok:
            nothing_generated(result, config)
        if config.push_to and result.state in ("written", "already-complete"):
            from hub_pgen.push import push_result

            result = push_result(result, config, reporter)
    finally:
        reporter.close()
    if args.json:
        from hub_pgen.report import result_json

        say(json_text(result_json(result), indent=2, sort_keys=True, default=str))
    elif not args.quiet:
        print_summary(result)
    write_step_summary(result, config)
    return 0


def warn_unused_model_options(args: argparse.Namespace, config: Any) -> None:
    """A model flag the chosen backend does not read is said, not silently dropped."""
    from hub_pgen.generate.registry import MODEL_OPTIONS, get_backend

    spec = get_backend(config.backend)
    parser = build_parser()
    given = [o for o in MODEL_OPTIONS if o not in spec.options and o != "model"
             and hasattr(args, o) and getattr(args, o) != parser.get_default(o)]
    if args.model and "model" not in spec.options:
        given.insert(0, "model")
    if given:
        logger.warning("--backend %s %s: %s ignored", config.backend,
                       "runs no model" if not spec.uses_model else "does not use them",
                       ", ".join("--" + o.replace("_", "-") for o in given))


def nothing_generated(result: Any, config: Any) -> None:
    """Every sample failed: the result is written (and kept for --retry-failed) but is no dataset to push."""
    from collections import Counter

    from hub_pgen.errors import NothingGeneratedError

    reasons = Counter((r.error or "unknown").split(":")[0] for r in result.failures).most_common(2)
    raise NothingGeneratedError(
        f"every one of the {result.samples} samples failed ({'; '.join(f'{n} x {r}' for r, n in reasons)}); "
        f"the result in {result.output} has no dialogue (-1 on every frame)"
        + (" and was not pushed" if config.push_to else ""),
        hint="see the failures' error and raw_text in meta/syn_annotations.jsonl; fix the cause (model, "
             "--max-new-tokens, the input), then rerun the same command with --retry-failed",
    )
