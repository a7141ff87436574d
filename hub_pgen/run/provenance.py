"""``meta/hub_pgen.json``: what made a result, with nothing local or secret in it (it gets pushed).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hub_pgen import __version__, layout
from hub_pgen.config import RunConfig
from hub_pgen.data import JournalRecord
from hub_pgen.errors import SourceError
from hub_pgen.generate.base import Backend, is_local_model
from hub_pgen.generate.prompt import prompt_template_hash
from hub_pgen.generate.registry import get_backend
from hub_pgen.journal import status_codes
from hub_pgen.plan.table import type_pairs
from hub_pgen.plan.taxonomy import mix_report

if TYPE_CHECKING:
    from hub_pgen.run.prepare import Prepared

logger = logging.getLogger(__name__)


def provenance(config: RunConfig, prep: Prepared, backend: Backend | None, journal: Mapping[str, JournalRecord],
               started_at: str) -> dict[str, Any]:
    src = prep.source
    ok = int(np.count_nonzero(status_codes(journal, prep.samples) == 0))  # from the index: nothing read
    total = len(prep.samples) + len(prep.bad_lines)
    params = config.parameters()
    params.pop("output_dir", None)
    # no local paths in a file that gets pushed: a folder is named by its last component
    for key in ("root", "input_jsonl", "skills_file"):
        if params.get(key):
            params[key] = Path(params[key]).name
    model = public_model_name(config.model) if get_backend(config.backend).uses_model and config.model else None
    if "model" in params:
        params["model"] = model
    params = _public_parameters(params)
    return {
        "tool": {"name": "hub-pgen", "version": __version__},
        "created_at": started_at,
        "fingerprint": prep.fingerprint,
        "identity": prep.identity,
        "source": {
            "repo_id": src.repo_id if src else None,
            "sha": src.revision if src else None,
            "requested_revision": config.revision,
            "root": src.root.name if src and not src.repo_id else None,
        },
        "generation": {
            "backend": config.backend,
            "model": model,
            "model_source": (None if model is None else "local folder" if model != config.model
                             else "server" if get_backend(config.backend).can_serve else "hub"),
            "backend_details": _public_details(backend.describe(), config) if backend is not None else None,
            "prompt_template": prompt_template_hash(config.prompt_template),
            "sampling": config.sampling,
            "sample_interval": config.sample_interval,
            "cameras": list(prep.cameras),
        },
        "parameters": params,
        "counts": {"samples": total, "ok": ok, "failed": total - ok,
                   # planned frames left to the dialogue the source already had there (not generated)
                   "kept_source_dialogues": len(prep.plan.taken) if prep.plan is not None else 0},
        "mix": mix_report(type_pairs(prep.samples)),
        "notices": list(prep.notices),
    }


def _public_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the provenance, card and review page show them (they get pushed): a command
    (``--serve-command``) by its redacted form, every other string without tokens or URL credentials
    (hub_pgen.redact; the README's rule). The run itself used them as given."""
    from hub_pgen.redact import redact_command, redact_value

    out = {k: redact_value(v) for k, v in params.items()}
    if isinstance(params.get("serve_command"), str):
        out["serve_command"] = redact_command(params["serve_command"])
    return out


def public_model_name(model: str) -> str:
    """A Hub id as it is; a local model folder by its folder name only (the path is the user's business,
    and the provenance and card get pushed)."""
    return Path(model).expanduser().name if is_local_model(model) else model


def public_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity as written to files (run.json, provenance): a local model folder by name only.
    The fingerprint is made from the full identity, so two folders of the same name still differ."""
    backend = identity.get("backend")
    if isinstance(backend, dict) and isinstance(backend.get("model"), str):
        identity = {**identity, "backend": {**backend, "model": public_model_name(backend["model"])}}
    return identity


def _public_details(details: dict[str, Any], config: RunConfig) -> dict[str, Any]:
    ident = details.get("identity")
    if isinstance(ident, dict) and config.model and ident.get("model") == config.model:
        details = {**details, "identity": {**ident, "model": public_model_name(config.model)}}
    return details


def skills_provenance(prep: Prepared, config: RunConfig | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"source": prep.skills.origin,
                           "episodes_with_skills": sum(1 for ep in prep.skills.skills.episodes.values() if ep.skills),
                           "skills": sum(len(ep.skills) for ep in prep.skills.skills.episodes.values())}
    if config is not None:
        out["requested"] = config.skills  # auto that came to labelling says so
    path = prep.skills.path
    if path is not None and prep.source is not None and Path(path).resolve() != (
            prep.source.root / layout.SKILLS_PATH).resolve():
        out["skills_file"] = Path(path).name  # --skills-file: by name (the path is the user's business)
    if prep.skills.origin == "annotate":
        out["labelled_by"] = prep.identity.get("backend", {}).get("backend") or "model"
    if prep.skill_records is not None:
        records = prep.skill_records.values()
        out.update(labelled=sum(r.status == "ok" for r in records),
                   failed=sorted(r.episode_index for r in records if r.status != "ok"),
                   repaired=sum(1 for r in records if r.repairs), file=layout.SKILL_ANNOTATIONS_PATH)
    return out


def retry_history(output: Path, retry_ids: set[str], journal: Mapping[str, JournalRecord], at: str) -> list[dict]:
    """Every --retry-failed pass over this result: when, how many were retried, how many recovered."""
    history: list[dict] = []
    prov_path = output / layout.PROVENANCE_PATH
    if prov_path.is_file():
        from hub_pgen.provenance_file import read_provenance

        try:
            history = list(read_provenance(output).get("retried", []))
        except SourceError as e:
            logger.warning("the earlier --retry-failed passes are not kept: %s", e.message)
            history = []
    recovered = sum(1 for sid in retry_ids if journal.get(sid) is not None and journal[sid].status == "ok")
    return history + [{"at": at, "retried": len(retry_ids), "recovered": recovered}]
