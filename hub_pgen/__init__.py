"""hub-pgen: Hi Robot-style synthetic dialogue generation (pgen) for LeRobot v3.0 datasets.

A skill-annotated LeRobot dataset goes in; a new, versioned LeRobot dataset comes out whose every
frame carries ``task_index_high_level``, pointing at a generated (user prompt, robot reply) row of
``meta/tasks.parquet``. The pipeline's stages are subpackages: ``source`` → ``plan`` → ``frames`` →
``generate`` → ``journal`` → ``write`` → ``push``; ``run`` drives them, ``cli`` is the command line.

The public API (nothing heavy is imported by ``import hub_pgen``: each name loads its module when it
is first used, as huggingface_hub's ``__init__`` does)::

    import hub_pgen
    result = hub_pgen.run(hub_pgen.RunConfig(root="dataset", backend="template"))
    hub_pgen.validate(result.output)
    tasks = hub_pgen.HighLevelTasks.from_root(result.output)

``run`` (the job; also the package of its steps), ``merge`` (a sharded job's dataset), ``RunConfig``,
``RunResult``, ``validate`` (the output contract), ``HighLevelTasks`` (the dialogues, for training).
Everything else is internal and may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from hub_pgen import run
    from hub_pgen.config import RunConfig
    from hub_pgen.run.driver import merge
    from hub_pgen.run.result import RunResult
    from hub_pgen.train import HighLevelTasks
    from hub_pgen.write.validate import validate

# name -> (module, attribute; None: the module itself)
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "run": ("hub_pgen.run", None),
    "merge": ("hub_pgen.run.driver", "merge"),
    "RunConfig": ("hub_pgen.config", "RunConfig"),
    "RunResult": ("hub_pgen.run.result", "RunResult"),
    "validate": ("hub_pgen.write.validate", "validate"),
    "HighLevelTasks": ("hub_pgen.train", "HighLevelTasks"),
}

__all__ = ["HighLevelTasks", "RunConfig", "RunResult", "__version__", "merge", "run", "validate"]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'hub_pgen' has no attribute {name!r}")
    module = importlib.import_module(target[0])
    value = module if target[1] is None else getattr(module, target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
