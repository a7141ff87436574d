"""``hub-pgen``: the command line. Parses into a :class:`RunConfig`, calls the library, and turns
exceptions into exit codes and ``TIP:`` lines in one place (:func:`main`).

    hub-pgen --repo-id lerobot/svla_so101_pickplace --push-to user/new
    hub-pgen --root DIR --output-dir OUT --backend template
    hub-pgen demo [--output-dir OUT]
    hub-pgen validate DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hub_pgen import __version__
from hub_pgen.errors import HubPgenError, UsageError

logger = logging.getLogger("hub_pgen")

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70


def build_parser(prog: str = "hub-pgen") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Generate Hi Robot-style user prompts and robot replies (pgen) for a skill-annotated "
        "LeRobot v3.0 dataset, and write them as a new, versioned LeRobot dataset.",
        epilog="Subcommands: 'hub-pgen demo' runs everything offline on a generated example; "
        "'hub-pgen validate DIR' checks a dataset folder against the output contract.",
    )
    p.add_argument("--version", action="version", version=f"hub-pgen {__version__}")
    src = p.add_argument_group("source (one of)")
    src.add_argument("--root", type=Path, help="LeRobot v3.0 dataset folder on disk")
    src.add_argument("--repo-id", help="dataset repo on the Hugging Face Hub, e.g. lerobot/svla_so101_pickplace")
    src.add_argument("--revision", help="branch, tag or commit of --repo-id (default: the v3.0 tag, else main)")
    src.add_argument("--input-jsonl", type=Path, help="D_labeled JSONL file (output is the D_syn JSONL alone)")
    out = p.add_argument_group("output")
    out.add_argument("--output-dir", type=Path,
                     help="folder of the new dataset (default: hub-pgen-out/<name>-pgen-<fingerprint>)")
    out.add_argument("--dry-run", action="store_true", help="print the plan and the cost; generate nothing")
    out.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    plan = p.add_argument_group("plan")
    plan.add_argument("--sampling", choices=("segment", "interval", "frame"), default="segment",
                      help="one sample per skill segment (default), every --sample-interval seconds, or every frame")
    plan.add_argument("--sample-interval", type=float, metavar="S", help="seconds between samples (--sampling interval)")
    plan.add_argument("--episodes", help="subset of episodes, e.g. 0,3-5")
    plan.add_argument("--image-keys", help="comma-separated camera keys to show the model (default: all, in info.json order)")
    plan.add_argument("--num-image-views-per-sample", type=int, metavar="N", help="show the first N cameras")
    plan.add_argument("--max-pixels", type=int, help="bound each image to this many pixels (aspect kept)")
    plan.add_argument("--seed", type=int, default=0, help="seeds the scenario/response schedule and sampling")
    plan.add_argument("--scenario-mix", help="scenario weights, e.g. negative_task=2,direct_request=1 (default: all equal)")
    plan.add_argument("--response-mix", help="response weights, e.g. confirmation=1,clarification=1")
    gen = p.add_argument_group("generation")
    gen.add_argument("--backend", choices=("transformers", "template"), default="transformers",
                     help="transformers: a Qwen-VL model (default); template: offline, no model")
    gen.add_argument("--model", action="append", help="Hub id or local folder of a Qwen-VL model (repeatable: last wins)")
    gen.add_argument("--model-revision", help="revision of --model on the Hub")
    gen.add_argument("--batch-size", type=int, default=1)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy and deterministic (default)")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--max-new-tokens", type=int, default=256)
    gen.add_argument("--no-constrained", dest="constrained", action="store_false",
                     help="turn off JSON-schema constrained decoding")
    gen.add_argument("--max-retries", type=int, default=2, help="retries of a sample whose output is not valid")
    gen.add_argument("--device", help="cuda, cuda:1, cpu, ... (default: cuda when available)")
    gen.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), help="default: bfloat16 on GPU, float32 on CPU")
    gen.add_argument("--attn-implementation", help="e.g. sdpa, flash_attention_2, eager")
    gen.add_argument("--trust-remote-code", action="store_true", help="allow model code from the Hub (off by default)")
    push = p.add_argument_group("push")
    push.add_argument("--push-to", metavar="OWNER/NAME", help="push the new dataset to this Hub dataset repo")
    push.add_argument("--branch", help="push to this branch (created from main if absent); main is left untouched")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--tag-version", action="store_true",
                      help="with --branch: also move the repo's v3.0 tag to the pushed commit")
    log = p.add_argument_group("logging")
    log.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    log.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def config_from_args(args: argparse.Namespace):
    from hub_pgen.config import DEFAULT_MODEL, RunConfig
    from hub_pgen.plan.planner import parse_episode_list
    from hub_pgen.plan.taxonomy import RESPONSE_TYPES, SCENARIO_TYPES, parse_mix

    try:
        scenario_mix = parse_mix(args.scenario_mix, SCENARIO_TYPES, flag="--scenario-mix") if args.scenario_mix else None
        response_mix = parse_mix(args.response_mix, RESPONSE_TYPES, flag="--response-mix") if args.response_mix else None
    except ValueError as e:
        raise UsageError(str(e)) from None
    keys = tuple(k.strip() for k in args.image_keys.split(",") if k.strip()) if args.image_keys else None
    return RunConfig(
        root=args.root,
        repo_id=args.repo_id,
        revision=args.revision,
        input_jsonl=args.input_jsonl,
        output_dir=args.output_dir,
        sampling=args.sampling,
        sample_interval=args.sample_interval,
        episodes=parse_episode_list(args.episodes),
        image_keys=keys,
        num_image_views=args.num_image_views_per_sample,
        max_pixels=args.max_pixels,
        seed=args.seed,
        scenario_mix=scenario_mix,
        response_mix=response_mix,
        backend=args.backend,
        model=args.model[-1] if args.model else DEFAULT_MODEL,
        model_revision=args.model_revision,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        constrained=args.constrained,
        max_retries=args.max_retries,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        attn_implementation=args.attn_implementation,
        trust_remote_code=args.trust_remote_code,
        push_to=args.push_to,
        branch=args.branch,
        private=args.private,
        tag_version=args.tag_version,
    )


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record is logged, not when the handler was made: a
    later ``main()`` in the same process (tests, notebooks) may have swapped it, and the old one closed."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger("hub_pgen")
    root.setLevel(level)
    if root.handlers:
        return
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[hub-pgen %(asctime)s] %(levelname)s %(message)s", "%H:%M:%S"))
    handler.setLevel(logging.WARNING if not verbose else logging.DEBUG)
    root.addHandler(handler)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        from hub_pgen.demo import main as demo_main

        return _guarded(lambda: demo_main(argv[1:]), argv)
    if argv and argv[0] == "validate":
        from hub_pgen.validate import main as validate_main

        return _guarded(lambda: validate_main(argv[1:]), argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return _guarded(lambda: run_main(args), argv)


def run_main(args: argparse.Namespace) -> int:
    from hub_pgen import pipeline
    from hub_pgen.progress import RichReporter, make_reporter, quiet_library_progress
    from hub_pgen.report import print_summary, write_step_summary

    config = config_from_args(args)
    reporter = make_reporter(quiet=args.quiet or args.json)
    if not isinstance(reporter, RichReporter):
        quiet_library_progress()
    try:
        result = pipeline.run(config, reporter=reporter, dry_run=args.dry_run)
        if config.push_to and result.state in ("written", "already-complete"):
            from hub_pgen.push import push_result

            result = push_result(result, config, reporter)
    finally:
        reporter.close()
    if args.json:
        from hub_pgen.report import result_json

        print(json.dumps(result_json(result), indent=2, sort_keys=True, default=str))
    elif not args.quiet:
        print_summary(result)
    write_step_summary(result, config)
    return 0


def _guarded(fn, argv: Sequence[str]) -> int:
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        return fn()
    except HubPgenError as e:
        _error(str(e), e.hint)
        if os.environ.get("HUB_PGEN_DEBUG"):
            traceback.print_exc()
        return e.exit_code
    except KeyboardInterrupt:
        print(
            "\nhub-pgen: interrupted. Every finished sample is in the journal (OUT.partial/journal.jsonl).\n"
            f"TIP: rerun the same command to resume: hub-pgen {' '.join(argv)}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as e:  # the one place unexpected errors are turned into an exit code
        _error(f"internal error: {type(e).__name__}: {e}",
               "rerun with HUB_PGEN_DEBUG=1 for the traceback, and report it with the command you ran")
        if os.environ.get("HUB_PGEN_DEBUG"):
            traceback.print_exc()
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _error(message: str, hint: str | None) -> None:
    print(f"hub-pgen: error: {message}", file=sys.stderr)
    if hint:
        print(f"TIP: {hint}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
