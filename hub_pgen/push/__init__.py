"""Push stage: a finished dataset folder to the Hugging Face Hub (:mod:`hub_pgen.push.hub`).

:func:`push_result` is what the CLI calls after a run whose folder is complete; the work is in
:func:`hub_pgen.push.hub.push_dataset`, which tests and other callers use directly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub_pgen.push.hub import PushResult, RetryPolicy, check_complete, push_dataset

if TYPE_CHECKING:
    from hub_pgen.config import RunConfig
    from hub_pgen.progress import Reporter
    from hub_pgen.run.result import RunResult

__all__ = ["PushResult", "RetryPolicy", "check_complete", "push_dataset", "push_result"]


def push_result(result: RunResult, config: RunConfig, reporter: Reporter | Any = None) -> RunResult:
    """Validate the run's output folder against the contract, push it, and return the run result
    with ``push`` filled in. ``--tag-version`` can only add tagging (main pushes always tag)."""
    from hub_pgen.write.validate import validate

    if result.output is None or config.push_to is None:
        return result
    if reporter is not None:
        where = config.push_to + (f"@{config.branch}" if config.branch else "")
        reporter.stage("push", f"{result.output} -> {where}")
    from hub_pgen.errors import HubError

    try:
        pushed = push_dataset(
            result.output,
            config.push_to,
            branch=config.branch,
            private=config.private,
            tag_version=True if config.tag_version else None,
            validate=validate,
        )
    except HubError as e:  # the dataset is there and valid: say so, and that a rerun only pushes
        raise HubError(f"{e}; the dataset itself is complete and valid in {result.output}",
                       repo_id=getattr(e, "repo_id", None),
                       hint=(e.hint + "; then " if e.hint else "") + "rerun the same command: it finds the dataset "
                            "complete, generates nothing, and pushes it") from e
    return replace(result, push=pushed)
