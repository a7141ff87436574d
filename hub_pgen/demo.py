"""hub-pgen demo: the whole pipeline, offline, on a generated LeRobot v3.0 example.

No Hub and no GPU needed: it builds a small pick-and-place dataset (two AV1 cameras, several
episodes per file, skills with a gap and an unannotated episode), runs hub-pgen on it with the
``template`` backend (or a model you name), validates the result, and shows a few dialogues.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from hub_pgen import layout
from hub_pgen.textsafe import say


def run_demo(output_dir: Path, *, backend: Literal["template", "transformers"] = "template", model: str | None = None,
             device: str | None = None, episodes: int = 6, quiet: bool = False) -> int:
    """Build the example under ``output_dir/source`` (once), run hub-pgen on it into
    ``output_dir/dataset``, validate the result, and say how to load it. The command line
    (hub_pgen.cli.demo) has checked the arguments and set up logging."""
    from hub_pgen.config import DEFAULT_MODEL, RunConfig
    from hub_pgen.example import ExampleSpec, build_example_dataset
    from hub_pgen.progress import make_reporter
    from hub_pgen.report import print_summary
    from hub_pgen.run import run
    from hub_pgen.write.validate import validate

    source = output_dir / "source"
    if not (source / layout.INFO_PATH).is_file():
        build_example_dataset(source, ExampleSpec(n_episodes=episodes))
    config = RunConfig(root=source, output_dir=output_dir / "dataset", backend=backend,
                       model=model or DEFAULT_MODEL, device=device)
    if not quiet:
        say("hub-pgen demo: the example has flaws on purpose (a skill that ends past its episode, a gap "
              "between skills, an episode without skills), so the WARNING below is expected.", file=sys.stderr)
    reporter = make_reporter(quiet=quiet)
    try:
        result = run(config, reporter=reporter)
    finally:
        reporter.close()
    assert result.output is not None, "a run that wrote a dataset names its folder"
    validate(result.output, source=source)
    if not quiet:
        print_summary(result)
        say(f"\nhub-pgen validate {result.output} --source {source}: valid")
        say(f"\nLoad it with lerobot:\n  LeRobotDataset('local/demo', root='{result.output}')")
    return 0
