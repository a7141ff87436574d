"""``hub-pgen``: the command line. Parses into a :class:`RunConfig`, calls the library, and turns
exceptions into exit codes and ``TIP:`` lines in one place (:func:`main`).

    hub-pgen --repo-id lerobot/svla_so101_pickplace --push-to user/new
    hub-pgen --root DIR --output-dir OUT --backend template
    hub-pgen demo [--output-dir OUT]
    hub-pgen validate DIR
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hub_pgen import __version__, layout
from hub_pgen.errors import HubPgenError, UsageError
from hub_pgen.textsafe import for_terminal, json_text, say

logger = logging.getLogger("hub_pgen")

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70


USAGE = """%(prog)s (--root DIR | --repo-id OWNER/NAME | --input-jsonl FILE) [options]
       %(prog)s demo [--output-dir DIR] [--backend template|transformers] [--model M]
       %(prog)s validate DIR [--source SRC]
       %(prog)s report OUT [--output FILE] [--rrd FILE] [--episodes LIST] [--max-cards N]
       %(prog)s merge SHARD... (--root DIR | --repo-id OWNER/NAME) [--output-dir OUT] [--push-to OWNER/NAME]
       %(prog)s label (--root DIR | --repo-id OWNER/NAME) [--output-dir OUT] [model options]"""

EPILOG = """subcommands:
  demo                  build a small example dataset and run the whole job on it, offline
  validate DIR          check a dataset folder against the output contract (the push runs it first)
  report OUT            write the review page of a result again (every run writes OUT/meta/hub_pgen_report.html);
                        --rrd FILE also exports a Rerun recording
  merge SHARD...        write the dataset of a sharded job (--num-shards/--shard-index) from its shards
  label                 let the model label each episode's skills into OUT/meta/skills.json, once, for the
                        runs (and shards) that then use it with --skills-file

skills (--skills auto: meta/skills.json, else lerobot's subtask rows in language_persistent, else the
model labels them first, as --skills annotate does); meta/skills.json has times in seconds from the
episode's start, a frame at t belongs to the skill with start <= t < end:
  {"coarse_description": "pick up the cube and place it in the bin",
   "skill_to_task_index": {"pick up the cube": 0},
   "episodes": {"0": {"episode_index": 0, "description": "...",
                      "skills": [{"name": "pick up the cube", "start": 0.0, "end": 2.5}, ...]}}}
  The README's 'meta/skills.json' section has the details.

exit codes:
  0 ok, 2 bad arguments, 3 bad input data, 4 output folder problem (in use, another
  configuration, not writable), 5 model loading (or an optional package missing), 6 Hub or
  model server, 7 validation failed, 8 every sample failed (written, not pushed: --retry-failed),
  9 (--job --follow) the job ended ERROR/CANCELED, 130 interrupted (rerun the same command to resume), 70 internal error

environment:
  HF_TOKEN, HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE   the Hugging Face Hub (huggingface_hub's own)
  HUB_PGEN_DEBUG=1                                 print tracebacks of errors
  GITHUB_STEP_SUMMARY                              (GitHub Actions) a Markdown job summary goes here"""


SUBCOMMANDS = ("demo", "validate", "report", "merge", "label")


class _Parser(argparse.ArgumentParser):
    """Bad arguments are a :class:`UsageError` (exit 2 with a TIP, and JSON with --json), not a bare exit."""

    def error(self, message: str):  # type: ignore[override]
        import difflib
        import re

        hint = f"see {self.prog} --help"
        unknown = re.findall(r"(--[\w-]+)", message) if "unrecognized arguments" in message else []
        flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        # an abbreviation first (--retry → --retry-failed), else the closest spelling (--fromat → --format)
        close = [next((f for f in flags if f.startswith(u.split("=")[0])), None)
                 or next(iter(difflib.get_close_matches(u.split("=")[0], flags, n=1)), None) for u in unknown]
        close = [c for c in close if c]
        words = re.findall(r"unrecognized arguments: (\S+)", message)
        command = difflib.get_close_matches(words[0], SUBCOMMANDS, n=1) if words and not words[0].startswith("-") \
            else []
        if command:  # `hub-pgen lable ...`: a subcommand misspelt
            hint = f"did you mean hub-pgen {command[0]} ...? ({hint})"
        elif close:
            hint = f"did you mean {', '.join(close)}? ({hint})"
        raise UsageError(f"{message}", hint=hint)


def build_parser(prog: str = "hub-pgen") -> argparse.ArgumentParser:
    from hub_pgen.config import DEFAULT_MODEL
    from hub_pgen.generate.registry import BACKENDS
    from hub_pgen.generate.schema import DEFAULT_MAX_NEW_TOKENS
    from hub_pgen.skills import SOURCES as SKILL_SOURCES

    p = _Parser(
        prog=prog,
        usage=USAGE,
        description="Generate Hi Robot-style user prompts and robot replies (pgen) for a skill-annotated "
        "LeRobot v3.0 dataset, and write them as a new, versioned LeRobot dataset.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --retry must not silently mean --retry-failed
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
    out.add_argument("--format", dest="output_format", choices=tuple(layout.FORMATS), default=None,
                     help="both (default): task_index_high_level + tasks.parquet rows and lerobot's language columns; "
                          "hirobot: the former only; lerobot-language: the latter only")
    out.add_argument("--num-shards", type=int, default=1, metavar="N",
                     help="split the plan into N shards of whole episodes (one per machine); with --shard-index")
    out.add_argument("--shard-index", type=int, default=None, metavar="I",
                     help="generate shard I (0..N-1) only; the result is a shard folder for `hub-pgen merge`")
    out.add_argument("--dry-run", action="store_true", help="print the plan and the cost; generate nothing")
    out.add_argument("--json", action="store_true",
                     help="print the result as JSON on stdout (errors too: state, exit_code, error, tip)")
    out.add_argument("--wait", action="store_true",
                     help="if another run is writing the same output folder, wait for it instead of stopping")
    out.add_argument("--retry-failed", action="store_true",
                     help="generate the failed samples of an existing result (or journal) again, same configuration")
    sk = p.add_argument_group("skills")
    sk.add_argument("--skills", choices=SKILL_SOURCES, default="auto",
                    help="where each episode's skills come from: meta/skills.json (file), lerobot's subtask rows in "
                         "language_persistent (language), or the model labels them first (annotate); auto (default): "
                         "file, else language, else annotate (said up front, with the model calls it adds)")
    sk.add_argument("--skills-file", type=Path, metavar="FILE",
                    help="a skills.json elsewhere than the dataset's meta/ (e.g. the one a --skills annotate run wrote); "
                         "implies --skills file")
    sk.add_argument("--min-skill-seconds", type=float, default=None, metavar="S",
                    help="--skills annotate: the shortest skill (a shorter span joins its neighbour; default 1)")
    plan = p.add_argument_group("plan")
    plan.add_argument("--sampling", choices=("segment", "interval", "frame"), default="segment",
                      help="one sample per skill segment (default), every --sample-interval seconds, or every frame")
    plan.add_argument("--sample-interval", type=float, metavar="S", help="seconds between samples (--sampling interval)")
    plan.add_argument("--episodes", help="subset of episodes, e.g. 0,3-5")
    plan.add_argument("--image-keys", help="comma-separated camera keys to show the model (default: all, in info.json order)")
    plan.add_argument("--num-image-views-per-sample", type=int, metavar="N", help="show the first N cameras")
    plan.add_argument("--max-pixels", type=int, help="bound each image to this many pixels (aspect kept)")
    plan.add_argument("--seed", type=int, default=0,
                      help="seeds the scenario/response schedule and sampling (default: 0)")
    plan.add_argument("--scenario-mix", help="scenario weights, e.g. negative_task=2,direct_request=1 (default: all equal)")
    plan.add_argument("--response-mix", help="response weights, e.g. confirmation=1,clarification=1")
    gen = p.add_argument_group("generation")
    gen.add_argument("--backend", choices=tuple(BACKENDS),
                     help="; ".join(f"{name}: {spec.summary}" for name, spec in BACKENDS.items())
                     + " (default: transformers; openai with --base-url or --serve)")
    gen.add_argument("--model", action="append",
                     help=f"Hub id or local folder of a Qwen-VL model (repeatable: last wins; default: {DEFAULT_MODEL})")
    gen.add_argument("--model-revision", help="revision of --model on the Hub")
    flt = p.add_argument_group("filters (a filtered sample is recorded with its reason, its frames keep -1)")
    flt.add_argument("--min-chars", type=int, metavar="N", help="filter dialogues whose prompt or reply is shorter")
    flt.add_argument("--dedupe", action="store_true", help="filter a dialogue that repeats an earlier one of its episode")
    flt.add_argument("--verify", nargs="?", const="report", choices=("report", "filter"),
                     help="ask the model again which of the episode's skills each user prompt leads to; report the "
                          "agreement (--verify), or also filter the samples that disagree (--verify filter); "
                          "doubles the model calls")
    flt.add_argument("--drop-degenerate", action="store_true",
                     help="filter dialogues the quality measures call degenerate (punctuation, not words, repeats)")
    gen.add_argument("--prompt-file", type=Path, metavar="FILE",
                     help="your own pgen prompt: a template with the built-in one's placeholders ({skill_current}, "
                          "{task_description}, ...); part of the configuration")
    gen.add_argument("--show-prompt", action="store_true",
                     help="with --dry-run: print one rendered prompt per scenario type, with the images it shows")
    gen.add_argument("--batch-size", type=int, default=1, help="samples per generate() call (default: 1)")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy and deterministic (default: 0)")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling, in (0, 1] (default: 1)")
    gen.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                     help=f"token budget of one answer (default: {DEFAULT_MAX_NEW_TOKENS}); constrained answers "
                          "always close within it")
    gen.add_argument("--no-constrained", dest="constrained", action="store_false",
                     help="turn off JSON-schema constrained decoding")
    gen.add_argument("--max-retries", type=int, default=2,
                     help="retries of a sample whose output is not valid (default: 2)")
    gen.add_argument("--device", help="cpu, cuda, cuda:N, or auto (every GPU; default: cuda when available, else cpu)")
    gen.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), help="default: bfloat16 on GPU, float32 on CPU")
    gen.add_argument("--attn-implementation", help="e.g. sdpa, flash_attention_2, eager")
    gen.add_argument("--trust-remote-code", action="store_true", help="allow model code from the Hub (off by default)")
    srv = p.add_argument_group("server (--backend openai)")
    srv.add_argument("--base-url", metavar="URL",
                     help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vllm serve, SGLang, TGI, "
                          "transformers serve, Inference Endpoints); --model is the served name (default: the only "
                          "one it lists)")
    srv.add_argument("--api-key-env", metavar="VAR",
                     help="environment variable holding the API key (default: OPENAI_API_KEY, else HF_TOKEN)")
    srv.add_argument("--concurrency", type=int, default=16, help="requests in flight (default: 16)")
    srv.add_argument("--request-timeout", type=float, default=300.0, metavar="S",
                     help="seconds one request may take (default: 300)")
    srv.add_argument("--serve", choices=("vllm", "sglang"),
                     help="start the servers (vllm serve / sglang) for --model, one per visible GPU, and stop them "
                          "at the end (implies --backend openai)")
    srv.add_argument("--serve-command", metavar="TEMPLATE",
                     help='start servers with this command instead, e.g. "my-engine {model} --port {port}" '
                          "({model}, {port} and {gpus_per_server} are filled in)")
    srv.add_argument("--num-servers", type=int, metavar="N", help="servers to start (default: one per visible GPU)")
    srv.add_argument("--gpus-per-server", type=int, default=1, metavar="G",
                     help="GPUs of each started server, for tensor parallelism (default: 1)")
    srv.add_argument("--serve-timeout", type=float, default=900.0, metavar="S",
                     help="seconds a started server may take to answer /health (default: 900)")
    eng = p.add_argument_group("engine")
    eng.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="where generation runs: this process (default) or a Ray cluster (pip install \"hub-pgen[ray]\")")
    eng.add_argument("--ray-address", metavar="ADDR", help="--engine ray: join this cluster (default: a local one)")
    eng.add_argument("--workers", type=int, metavar="N",
                     help="--engine ray: model actors (default: one per GPU of the cluster; needed on a CPU-only one)")
    push = p.add_argument_group("push")
    push.add_argument("--push-to", metavar="OWNER/NAME", help="push the new dataset to this Hub dataset repo")
    push.add_argument("--branch", help="push to this branch (created from main if absent); main is left untouched")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--tag-version", action="store_true",
                      help="with --branch: also move the repo's v3.0 tag to the pushed commit")
    job = p.add_argument_group("Hugging Face Jobs")
    job.add_argument("--job", metavar="FLAVOR",
                     help="run this command on a Hugging Face Jobs machine (e.g. a10g-large, h200) instead of here; "
                          "needs --push-to; prints the job's id and URL (the README's 'Hugging Face Jobs')")
    job.add_argument("--follow", action="store_true",
                     help="stream the job's log until it ends; exit 0 if it COMPLETED, 9 if not")
    job.add_argument("--job-timeout", metavar="DURATION",
                     help="the job is stopped after this long: seconds, or with s/m/h/d (default: 2h)")
    job.add_argument("--job-install", action="append", metavar="SPEC",
                     help="what the job installs hub-pgen from, e.g. \"hub-pgen[transformers] @ git+https://github.com/"
                          "OWNER/hub-pgen@COMMIT\" (repeatable: later ones are installed beside it; default: the "
                          "source this hub-pgen was installed from)")
    log = p.add_argument_group("logging")
    log.add_argument("-q", "--quiet", action="store_true",
                     help="no progress output and no summary (warnings and errors still go to stderr)")
    log.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def config_from_args(args: argparse.Namespace):
    from hub_pgen.config import RunConfig
    from hub_pgen.plan.planner import parse_episode_list
    from hub_pgen.plan.taxonomy import RESPONSE_TYPES, SCENARIO_TYPES, parse_mix

    try:
        scenario_mix = parse_mix(args.scenario_mix, SCENARIO_TYPES, flag="--scenario-mix") if args.scenario_mix else None
        response_mix = parse_mix(args.response_mix, RESPONSE_TYPES, flag="--response-mix") if args.response_mix else None
    except ValueError as e:
        raise UsageError(str(e)) from None
    keys = tuple(k.strip() for k in args.image_keys.split(",") if k.strip()) if args.image_keys else None
    template = None
    if args.prompt_file is not None:
        from hub_pgen.generate.prompt import PROMPT_FILE_MAX_BYTES, PromptFileError, read_prompt_file

        try:  # bounded and never blocking: a FIFO, a device or a folder is refused before a byte is read
            template = read_prompt_file(args.prompt_file)
        except PromptFileError as e:
            raise UsageError(f"--prompt-file {args.prompt_file} {e}",
                             hint=f"give a UTF-8 text file of at most {PROMPT_FILE_MAX_BYTES // 1024} KiB") from None
    if args.show_prompt and not args.dry_run:
        raise UsageError("--show-prompt goes with --dry-run (it prints the prompts instead of running)",
                         hint="add --dry-run")
    if args.min_skill_seconds is not None and (args.skills in ("file", "language") or args.skills_file is not None):
        raise UsageError("--min-skill-seconds only applies to skills the model labels (--skills annotate, or auto "
                         "on a dataset without skills)", hint="drop --min-skill-seconds, or use --skills annotate")
    if args.num_shards > 1 and args.shard_index is None:
        raise UsageError(f"--num-shards {args.num_shards} needs --shard-index: which shard this machine generates "
                         "(without it every machine would generate shard 0)",
                         hint=f"--shard-index I with I in 0..{args.num_shards - 1}, one per machine; then hub-pgen "
                              "merge the shard folders")
    if args.input_jsonl is not None and args.output_format is not None:
        raise UsageError("--format shapes a dataset; --input-jsonl makes the D_syn JSONL alone",
                         hint="drop --format, or give a dataset source (--root or --repo-id)")
    return RunConfig(
        root=args.root,
        repo_id=args.repo_id,
        revision=args.revision,
        input_jsonl=args.input_jsonl,
        output_dir=args.output_dir,
        output_format=args.output_format or layout.DEFAULT_FORMAT,
        skills=args.skills,
        skills_file=args.skills_file,
        min_skill_seconds=1.0 if args.min_skill_seconds is None else args.min_skill_seconds,
        num_shards=args.num_shards,
        shard_index=args.shard_index or 0,
        min_chars=args.min_chars,
        dedupe=args.dedupe,
        drop_degenerate=args.drop_degenerate,
        verify=args.verify,
        prompt_template=template,
        prompt_file=args.prompt_file.name if args.prompt_file is not None else None,
        show_prompt=args.show_prompt,
        engine=args.engine,
        ray_address=args.ray_address,
        workers=args.workers,
        sampling=args.sampling,
        sample_interval=args.sample_interval,
        episodes=parse_episode_list(args.episodes),
        image_keys=keys,
        num_image_views=args.num_image_views_per_sample,
        max_pixels=args.max_pixels,
        seed=args.seed,
        scenario_mix=scenario_mix,
        response_mix=response_mix,
        backend=args.backend or ("openai" if args.base_url or args.serve or args.serve_command else "transformers"),
        model=args.model[-1] if args.model else None,
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
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        concurrency=args.concurrency,
        request_timeout=args.request_timeout,
        serve=args.serve,
        serve_command=args.serve_command,
        num_servers=args.num_servers,
        gpus_per_server=args.gpus_per_server,
        serve_timeout=args.serve_timeout,
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


class _SafeFormatter(logging.Formatter):
    """Every log line as the terminal will show it: control characters (an ESC sequence in a skill name
    or an answer, a bidi override) as visible escapes (hub_pgen.textsafe.for_terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        return for_terminal(super().format(record))


def setup_logging(verbose: bool) -> None:
    """Warnings and errors on stderr, also with ``-q`` (which silences progress and the summary: a CI
    log keeps what went wrong); ``-v``: everything."""
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger("hub_pgen")
    root.setLevel(level)
    if root.handlers:
        return
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, markup=False)
        handler.setFormatter(_SafeFormatter("%(message)s"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(_SafeFormatter("[hub-pgen %(asctime)s] %(levelname)s %(message)s", "%H:%M:%S"))
    handler.setLevel(logging.WARNING if not verbose else logging.DEBUG)
    root.addHandler(handler)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None, prog: str = "hub-pgen") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    if argv and argv[0] == "demo":
        from hub_pgen.demo import main as demo_main

        return _guarded(lambda: demo_main(argv[1:]), argv)
    if argv and argv[0] == "validate":
        from hub_pgen.write.validate import main as validate_main

        return _guarded(lambda: validate_main(argv[1:]), argv)

    if argv and argv[0] == "report":
        from hub_pgen.review import main as report_main

        return _guarded(lambda: report_main(argv[1:]), argv)

    if argv and argv[0] == "label":
        def parse_and_label() -> int:
            parser = build_parser(prog="hub-pgen label")
            args = parser.parse_args(argv[1:])
            setup_logging(args.verbose)
            return label_main(args, parser)

        return _guarded(parse_and_label, argv, as_json=as_json)

    if argv and argv[0] == "merge":
        def parse_and_merge() -> int:
            args = build_merge_parser().parse_args(argv[1:])
            setup_logging(args.verbose)
            return merge_main(args)

        return _guarded(parse_and_merge, argv, as_json=as_json)

    def parse_and_run() -> int:
        parser = build_parser(prog=prog)
        args = parser.parse_args(argv)
        setup_logging(args.verbose)
        from hub_pgen import jobs

        if args.job is not None:  # the same command on a Hugging Face Jobs machine
            return jobs.submit_main(args, argv, parser)
        jobs.check_unused(args)
        return run_main(args)

    return _guarded(parse_and_run, argv, as_json=as_json)


def _require_push_token(push_to: str | None, dry_run: bool = False) -> None:
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


def run_main(args: argparse.Namespace) -> int:
    from hub_pgen import run as runner

    config = config_from_args(args)
    _require_push_token(config.push_to, args.dry_run)
    _warn_unused_model_options(args, config)
    if not args.verbose:
        from huggingface_hub.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # its own retry chatter; hub-pgen says what failed and what to do
    return _run_and_report(args, lambda reporter: (config, runner.run(
        config, reporter=reporter, dry_run=args.dry_run, wait=args.wait, retry_failed=args.retry_failed)))


def _run_and_report(args: argparse.Namespace, work: Any) -> int:
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
            _nothing_generated(result, config)
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


# what shapes dialogues, shards or pushes, not labels: refused by `hub-pgen label` when given
LABEL_REFUSED = ("input_jsonl", "output_format", "num_shards", "shard_index", "sampling", "sample_interval",
                 "scenario_mix", "response_mix", "min_chars", "dedupe", "verify", "drop_degenerate", "prompt_file",
                 "show_prompt", "max_new_tokens", "engine", "ray_address", "workers", "push_to", "branch", "private",
                 "tag_version", "job", "follow", "job_timeout", "job_install", "skills_file")


def label_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``hub-pgen label``: the model labels each episode's skills into a folder (hub_pgen.run.label)."""
    from hub_pgen.run import label

    given = ["--" + dest.replace("_", "-") for dest in LABEL_REFUSED
             if getattr(args, dest, None) != parser.get_default(dest)]
    if args.skills not in ("auto", "annotate"):
        given.append(f"--skills {args.skills}")
    if given:
        raise UsageError(f"{', '.join(given)} do{'es' if len(given) == 1 else ''} not apply to hub-pgen label: it "
                         "labels each episode's skills, and writes no dialogue or dataset",
                         hint=f"drop {', '.join(given)}; then give the labels to the run that uses them: "
                              "hub-pgen ... --skills-file OUT/meta/skills.json")
    args.skills = "annotate"
    config = config_from_args(args)
    _warn_unused_model_options(args, config)
    return _run_and_report(args, lambda reporter: (config, label.label(
        config, reporter=reporter, dry_run=args.dry_run, wait=args.wait, retry_failed=args.retry_failed)))


def build_merge_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="hub-pgen merge",
        description="Write the dataset of a sharded job (hub-pgen ... --num-shards N --shard-index I on each machine) "
                    "from its shard folders, exactly as one machine would have written it. Every shard of the job "
                    "must be given, each once; the source is the one the shards ran on.",
        allow_abbrev=False,
    )
    p.add_argument("shards", nargs="+", type=Path, metavar="SHARD", help="the --output-dir of each finished shard run")
    src = p.add_argument_group("source (one of)")
    src.add_argument("--root", type=Path, help="the dataset folder the shards ran on")
    src.add_argument("--repo-id", help="the Hub dataset the shards ran on")
    src.add_argument("--revision", help="its revision (default: as the shards had it)")
    p.add_argument("--output-dir", type=Path, help="the new dataset's folder (default: hub-pgen-out/<name>-pgen-<fp>)")
    p.add_argument("--wait", action="store_true", help="wait for another run that holds the output folder")
    push = p.add_argument_group("push")
    push.add_argument("--push-to", metavar="OWNER/NAME")
    push.add_argument("--branch")
    push.add_argument("--private", action="store_true")
    push.add_argument("--tag-version", action="store_true")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def merge_main(args: argparse.Namespace) -> int:
    from hub_pgen import run as runner

    if (args.root is None) == (args.repo_id is None):
        raise UsageError("give the source the shards ran on: --root DIR or --repo-id OWNER/NAME (one of them)")
    _require_push_token(args.push_to)
    push = {"push_to": args.push_to, "branch": args.branch, "private": args.private, "tag_version": args.tag_version}
    return _run_and_report(args, lambda reporter: runner.merge(
        args.shards, root=args.root, repo_id=args.repo_id, revision=args.revision, output_dir=args.output_dir,
        push=push, reporter=reporter, wait=args.wait))


def _warn_unused_model_options(args: argparse.Namespace, config) -> None:
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


def _nothing_generated(result, config) -> None:
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


def _guarded(fn, argv: Sequence[str], *, as_json: bool = False) -> int:
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        return fn()
    except BrokenPipeError:
        # the reader of stdout went away (`hub-pgen --json | head`): the work is done and recorded; say
        # nothing more, and keep the interpreter's last flush from raising again
        _stdout_to_devnull()
        return 0
    except HubPgenError as e:
        _error(str(e), e.hint, e.exit_code, as_json)
        if os.environ.get("HUB_PGEN_DEBUG"):
            traceback.print_exc()
        return e.exit_code
    except KeyboardInterrupt:
        message = ("interrupted outside generation (reading the source, loading the model, or writing): nothing is "
                   "lost; any samples the run had finished are in its journal (OUT.partial/journal.jsonl).")
        import shlex

        hint = f"rerun the same command to resume: hub-pgen {shlex.join(argv)}"
        if as_json:
            _json_error(message, hint, EXIT_INTERRUPTED)
        say(f"\nhub-pgen: {message}\nTIP: {hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # the one place unexpected errors are turned into an exit code
        _error(f"internal error: {type(e).__name__}: {e}",
               "rerun with HUB_PGEN_DEBUG=1 for the traceback, and report it with the command you ran",
               EXIT_INTERNAL, as_json)
        if os.environ.get("HUB_PGEN_DEBUG"):
            traceback.print_exc()
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stdout_to_devnull() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a file (a test's capture)
        pass


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _error(message: str, hint: str | None, exit_code: int, as_json: bool = False) -> None:
    from hub_pgen.errors import scrub

    message, hint = scrub(message), scrub(hint) if hint else hint
    if as_json:
        _json_error(message, hint, exit_code)
    kind = "" if exit_code == EXIT_INTERRUPTED else "error: "  # an interrupt is the user's, not a failure
    say(f"hub-pgen: {kind}{message}", file=sys.stderr)  # control characters in it shown as escapes
    if hint:
        say(f"TIP: {hint}", file=sys.stderr)


def _json_error(message: str, hint: str | None, exit_code: int) -> None:
    """``--json``: the error on stdout as one JSON object, so a script reads errors as it reads results."""
    try:
        say(json_text({"state": "error", "exit_code": exit_code, "error": message, "tip": hint}, indent=2,
                      sort_keys=True), flush=True)
    except BrokenPipeError:  # nobody reads stdout any more: the exit code and stderr still say it
        _stdout_to_devnull()


if __name__ == "__main__":
    sys.exit(main())
