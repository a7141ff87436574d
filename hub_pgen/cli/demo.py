"""``hub-pgen demo [--output-dir DIR] [--backend template|transformers] [--model M]``: the whole job,
offline, on a generated example dataset (:func:`hub_pgen.demo.run_demo`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hub_pgen.cli.logs import setup_logging
from hub_pgen.cli.parser import Parser
from hub_pgen.errors import UsageError


def build_parser() -> Parser:
    from hub_pgen import demo

    p = Parser(prog="hub-pgen demo", description=(demo.__doc__ or "").splitlines()[0])
    p.add_argument("--output-dir", type=Path, default=Path("demo-out"),
                   help="where the example source and the new dataset go (default: demo-out)")
    p.add_argument("--backend", choices=("template", "transformers"), default="template",
                   help="template: offline, no model (default); transformers: the Qwen-VL model given by --model")
    p.add_argument("--model", help="with --backend transformers (required): a local Qwen-VL folder or Hub id")
    p.add_argument("--device", help="with --backend transformers: cpu, cuda, cuda:N or auto")
    p.add_argument("--episodes", type=int, default=6, help="episodes in the generated example (default: 6)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress and no summary (warnings and errors still go to stderr)")
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if args.backend == "transformers" and not args.model:
        raise UsageError("hub-pgen demo --backend transformers needs --model (the demo downloads nothing by itself)",
                         hint="e.g. --model Qwen/Qwen2.5-VL-3B-Instruct, or a local model folder")
    from hub_pgen.demo import run_demo

    setup_logging(False)
    return run_demo(args.output_dir, backend=args.backend, model=args.model, device=args.device,
                    episodes=args.episodes, quiet=args.quiet)
