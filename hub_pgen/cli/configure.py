"""Flags → :class:`~hub_pgen.config.RunConfig`: the checks between flags that argparse cannot say
(``--show-prompt`` needs ``--dry-run``, ``--num-shards`` needs ``--shard-index``, ...), each a
:class:`UsageError` naming the flags; then the config, whose own validation names its fields.
Also what the ``--job`` path checks before it submits (hub_pgen.jobs takes it as a parameter).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hub_pgen import layout
from hub_pgen.errors import UsageError

if TYPE_CHECKING:
    from hub_pgen.config import RunConfig


def config_from_args(args: argparse.Namespace) -> RunConfig:
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
