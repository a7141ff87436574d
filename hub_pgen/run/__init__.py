"""The run: check → prepare → lock → engine → finish (``hub_pgen.run.driver``).

    from hub_pgen.run import run, merge, RunResult
    result = run(RunConfig(root="dataset", backend="template"))

The modules, in the order a run goes through them: ``prepare`` (source, skills, plan, fingerprint),
``dry_run`` (what ``--dry-run`` says), ``driver`` (:func:`run`, :func:`merge`: the folder, the lock,
the backend), ``labelling`` (``--skills annotate`` inside a run), ``generation`` (the journal, and an
``engine``: ``local_engine``, ``ray_engine``, each running ``steps``), ``finish`` (quality, filters,
verify, ``provenance``, write, validate, rename), ``result``. ``label`` is ``hub-pgen label``; ``shards``
splits a plan among the machines of a job.

Nothing is imported until it is used (``import hub_pgen.run`` costs nothing): ``hub_pgen.config``
checks ``--engine`` against :mod:`hub_pgen.run.engine`, which must not import the driver.

The package is also the public ``hub_pgen.run``: calling it runs the job (``hub_pgen.run(config)`` is
:func:`hub_pgen.run.driver.run`). A package and a function cannot share the name ``hub_pgen.run`` any
other way (importing the package sets the attribute); type checkers see ``hub_pgen.run.run``, the
same function, typed (docs/design.md).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub_pgen.run.driver import merge, run
    from hub_pgen.run.prepare import Prepared
    from hub_pgen.run.result import RunResult

# name -> the module that defines it (names of modules in this package are never exported: importing
# the module would replace the attribute)
_EXPORTS = {"run": "driver", "merge": "driver", "Prepared": "prepare", "RunResult": "result"}

__all__ = ["Prepared", "RunResult", "merge", "run"]  # = _EXPORTS


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _CallablePackage(types.ModuleType):
    """``hub_pgen.run(config, ...)`` is ``hub_pgen.run.run(config, ...)``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
