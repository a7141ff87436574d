"""hub-pgen demo: the whole pipeline, offline, on a generated LeRobot v3.0 example.

No Hub and no GPU needed: it builds a small pick-and-place dataset (two AV1 cameras, several
episodes per file, skills with a gap and an unannotated episode), runs hub-pgen on it with the
``template`` backend (or a model you name), validates the result, and shows a few dialogues.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hub_pgen import layout
from hub_pgen.textsafe import say


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="hub-pgen demo", description=__doc__.splitlines()[0])
    p.add_argument("--output-dir", type=Path, default=Path("demo-out"),
                   help="where the example source and the new dataset go (default: demo-out)")
    p.add_argument("--backend", choices=("template", "transformers"), default="template",
                   help="template: offline, no model (default); transformers: the Qwen-VL model given by --model")
    p.add_argument("--model", help="with --backend transformers (required): a local Qwen-VL folder or Hub id")
    p.add_argument("--device", help="with --backend transformers: cpu, cuda, cuda:N or auto")
    p.add_argument("--episodes", type=int, default=6, help="episodes in the generated example (default: 6)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress and no summary (warnings and errors still go to stderr)")
    args = p.parse_args(argv)
    if args.backend == "transformers" and not args.model:
        from hub_pgen.errors import UsageError

        raise UsageError("hub-pgen demo --backend transformers needs --model (the demo downloads nothing by itself)",
                         hint="e.g. --model Qwen/Qwen2.5-VL-3B-Instruct, or a local model folder")

    from hub_pgen.run import run
    from hub_pgen.cli import setup_logging
    from hub_pgen.config import DEFAULT_MODEL, RunConfig
    from hub_pgen.example import ExampleSpec, build_example_dataset
    from hub_pgen.progress import make_reporter
    from hub_pgen.report import print_summary
    from hub_pgen.write.validate import validate

    setup_logging(False)
    source = args.output_dir / "source"
    if not (source / layout.INFO_PATH).is_file():
        build_example_dataset(source, ExampleSpec(n_episodes=args.episodes))
    config = RunConfig(root=source, output_dir=args.output_dir / "dataset", backend=args.backend,
                       model=args.model or DEFAULT_MODEL, device=args.device)
    if not args.quiet:
        say("hub-pgen demo: the example has flaws on purpose (a skill that ends past its episode, a gap "
              "between skills, an episode without skills), so the WARNING below is expected.", file=sys.stderr)
    reporter = make_reporter(quiet=args.quiet)
    try:
        result = run(config, reporter=reporter)
    finally:
        reporter.close()
    validate(result.output, source=source)
    if not args.quiet:
        print_summary(result)
        say(f"\nhub-pgen validate {result.output} --source {source}: valid")
        say(f"\nLoad it with lerobot:\n  LeRobotDataset('local/demo', root='{result.output}')")
    return 0
