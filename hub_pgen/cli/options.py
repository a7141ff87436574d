"""The main run's flags (``hub-pgen --root DIR ...``), which ``label`` also parses: :func:`build_parser`,
with the usage, the subcommands' summary, the exit codes and the environment in ``--help``.

    hub-pgen --repo-id lerobot/svla_so101_pickplace --push-to user/new
    hub-pgen --root DIR --output-dir OUT --backend template
    hub-pgen demo [--output-dir OUT]
    hub-pgen validate DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hub_pgen import __version__, layout
from hub_pgen.cli.parser import Parser, add_json, add_logging, add_push, add_source

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
  GITHUB_STEP_SUMMARY                              (GitHub Actions) a Markdown job summary goes here
  ARROW_DEFAULT_MEMORY_POOL                        Arrow's allocator (default here: system, which gives memory back)
  MALLOC_ARENA_MAX                                 glibc's heaps for threads (default here: 2)
  MALLOC_MMAP_THRESHOLD_                           glibc maps blocks from this size (default here: 131072, fixed)"""


def build_parser(prog: str = "hub-pgen") -> Parser:
    from hub_pgen.config import DEFAULT_MODEL
    from hub_pgen.generate.registry import BACKENDS
    from hub_pgen.generate.schema import DEFAULT_MAX_NEW_TOKENS
    from hub_pgen.skills import SOURCES as SKILL_SOURCES

    p = Parser(
        prog=prog,
        usage=USAGE,
        description="Generate Hi Robot-style user prompts and robot replies (pgen) for a skill-annotated "
        "LeRobot v3.0 dataset, and write them as a new, versioned LeRobot dataset.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --retry must not silently mean --retry-failed
    )
    p.add_argument("--version", action="version", version=f"hub-pgen {__version__}")
    src = add_source(p)
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
    add_json(out, "print the result as JSON on stdout (errors too: state, exit_code, error, tip)")
    out.add_argument("--wait", action="store_true",
                     help="if another run is writing the same output folder, wait for it instead of stopping")
    out.add_argument("--no-review", dest="review", action="store_false",
                     help="write no review page (meta/hub_pgen_report.html) with the dataset; hub-pgen report OUT "
                          "writes it later")
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
    add_push(p)
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
    add_logging(p.add_argument_group("logging"))
    return p
