"""``hub-pgen label (--root DIR | --repo-id OWNER/NAME) [--output-dir OUT] [model options]``: the model
labels each episode's skills into ``OUT/meta/skills.json`` (hub_pgen.label), once, for the runs that
then use it with ``--skills-file``. It parses the main run's flags and refuses those that shape
dialogues, shards or pushes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hub_pgen.cli.configure import config_from_args
from hub_pgen.cli.logs import setup_logging
from hub_pgen.cli.options import build_parser
from hub_pgen.cli.results import run_and_report, warn_unused_model_options
from hub_pgen.errors import UsageError

# what shapes dialogues, shards or pushes, not labels: refused by `hub-pgen label` when given
LABEL_REFUSED = ("input_jsonl", "output_format", "num_shards", "shard_index", "sampling", "sample_interval",
                 "scenario_mix", "response_mix", "min_chars", "dedupe", "verify", "drop_degenerate", "prompt_file",
                 "show_prompt", "max_new_tokens", "engine", "ray_address", "workers", "push_to", "branch", "private",
                 "tag_version", "job", "follow", "job_timeout", "job_install", "skills_file")


def main(argv: Sequence[str]) -> int:
    parser = build_parser(prog="hub-pgen label")
    args = parser.parse_args(list(argv))
    setup_logging(args.verbose)
    return label_main(args, parser)


def label_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``hub-pgen label``: the model labels each episode's skills into a folder (hub_pgen.label)."""
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
    warn_unused_model_options(args, config)
    return run_and_report(args, lambda reporter: (config, label.label(
        config, reporter=reporter, dry_run=args.dry_run, wait=args.wait, retry_failed=args.retry_failed)))
