"""``hub-pgen label``: the first of the Hi Robot pipeline's two steps on its own — the model labels each
episode's skills, and the result is a small folder, not a dataset:

    OUT/meta/skills.json            the skills, in the seed's format (what --skills-file reads)
    OUT/meta/hub_pgen_skills.jsonl  each episode's answer, repairs and failures
    OUT/meta/hub_pgen.json          provenance (``kind: "skills"``)

One machine labels once; then any number of runs reuse the labels with ``--skills-file
OUT/meta/skills.json`` — the shards of one job above all, which cannot label (every shard needs every
episode's skills to plan the type schedule). It is ``--skills annotate``'s labelling, step for step:
the same contact sheets, schema, repairs and journal (a killed run resumes without asking twice,
``--retry-failed`` asks the failed episodes again), the same folder rules (locked, versioned by a
fingerprint of what shapes the labels, renamed into place when complete). A dataset on the Hub
brings down its data files and the labelled camera's videos only.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from hub_pgen import faults, fsio, layout
from hub_pgen.config import RunConfig, fingerprint
from hub_pgen.errors import OutputError, UnsafePathError, UsageError
from hub_pgen.progress import NullReporter, Reporter
from hub_pgen.provenance_file import read_provenance
from hub_pgen.run.folder import claimed

KIND = "skills"
# what shapes the labels (the rest of a run's identity shapes only the dialogues)
IDENTITY_KEYS = ("source", "episodes", "seed", "backend", "temperature", "top_p", "constrained", "max_retries",
                 "skills")


def label(config: RunConfig, *, backend: Any = None, reporter: Reporter | None = None, dry_run: bool = False,
          wait: bool = False, retry_failed: bool = False) -> Any:
    """Label the skills of ``config``'s source (its ``skills`` is taken as ``annotate``)."""
    from hub_pgen.generate.registry import get_backend
    from hub_pgen.run.dry_run import labelling_cost, output_state
    from hub_pgen.run.labelling import label_episodes
    from hub_pgen.run.prepare import check_local_source, make_backend, prepare, resolve_for_plan, say_where
    from hub_pgen.run.result import RunResult
    from hub_pgen.skills import SkillSet, to_json
    from hub_pgen.write import output as out_mod

    t0 = time.monotonic()
    reporter = reporter or NullReporter()
    if config.input_jsonl is not None:
        raise UsageError("hub-pgen label labels a dataset's episodes; --input-jsonl samples carry their skills",
                         hint="give --root DIR or --repo-id OWNER/NAME")
    config = replace(config, skills="annotate", skills_file=None)
    spec = get_backend(config.backend)
    check_local_source(config)
    stops = None
    if backend is None and dry_run:  # the run's own checks, less what only a real run needs
        config, stops = resolve_for_plan(config, spec)
    elif backend is None:
        spec.check(config)
        config = spec.resolve(config)
    prep = prepare(config, reporter)
    identity = {k: prep.identity.get(k) for k in IDENTITY_KEYS} | {"kind": KIND}
    fp = fingerprint(identity)
    prep = replace(prep, identity=identity, fingerprint=fp)
    paths = out_mod.OutputPaths.for_output(config.output_dir
                                           or out_mod.default_output_dir(prep.source_name, fp, kind=KIND))
    source_root = prep.source.root if prep.source is not None else None
    if dry_run:
        report = {"kind": KIND, "fingerprint": fp, **labelling_cost(config, prep),
                  "backend": config.backend, "output": str(paths.output),
                  "output_state": output_state(paths, prep, source_root),
                  **({"real_run": stops} if stops else {})}
        report.pop("samples", None)
        return RunResult("dry-run", None, fp, plan_report=report, elapsed_s=time.monotonic() - t0)
    first = out_mod.inspect_output(paths, fingerprint=fp, identity=identity, source_root=source_root)
    if retry_failed and first not in ("complete", "resume"):
        raise UsageError(f"--retry-failed: {paths.output} holds no labels of this configuration to retry",
                         hint="give the --output-dir of the earlier hub-pgen label run, or drop --retry-failed")
    with claimed(paths, wait=wait) as claim:
        made = None
        try:
            state = out_mod.inspect_output(paths, fingerprint=fp, identity=identity, source_root=source_root)
            if state == "complete" and not (retry_failed and _failed(paths.output)):
                out_mod.cleanup_work(paths)
                reporter.stage("done", f"{paths.output} already holds these labels")
                return _result("already-complete", paths.output, fp, read_provenance(paths.output), t0)
            if state == "stale":
                out_mod.discard_state(paths)
            reporter.stage("load", f"backend {config.backend}" + (f", model {config.model}" if spec.uses_model else ""))
            if backend is None:
                backend = made = make_backend(config)
                say_where(backend, reporter)
                start = getattr(backend, "start", None)
                if start is not None:
                    start(paths.work / layout.SERVERS_NAME, lambda msg: reporter.stage("serve", msg))
            started = claim.start(fp, identity)
            prep, result = label_episodes(config, prep, paths, backend, reporter, retry_failed=retry_failed,
                                                   from_output=state == "complete")
            prep = replace(prep, skills=SkillSet(result.skills, "annotate"))
            prov = _provenance(config, prep, backend, started)
            staging = out_mod.fresh_staging(paths)
            try:
                (staging / "meta").mkdir(parents=True, exist_ok=True)
                _write_json(staging / layout.SKILLS_PATH, to_json(result.skills))
                with fsio.create(staging / layout.SKILL_ANNOTATIONS_PATH) as fh:
                    for _, record in sorted(result.records.items()):
                        fh.write(fsio.jsonl_line(record.to_json()))
                _write_json(staging / layout.PROVENANCE_PATH, prov)
            except OSError as e:
                shutil.rmtree(staging, ignore_errors=True)  # OUT.partial keeps run.json and the labels' journal
                if isinstance(e, UnsafePathError):
                    raise
                raise OutputError(f"cannot write the labels under {staging}: {e.strerror or e}", path=staging,
                                  hint="free disk space or fix permissions, then rerun the same command: the labels "
                                       "are kept in its journal") from e
            faults.point("finalize")
            out_mod.finalize(paths, replace=state == "complete")
            return _result("written", paths.output, fp, prov, t0, notices=prep.notices)
        finally:
            close = getattr(made, "close", None)
            if close is not None:
                close()


def _failed(output: Path) -> bool:
    from hub_pgen.skills.labelling import load_records

    return any(r.status != "ok" for r in load_records(output / layout.SKILL_ANNOTATIONS_PATH,
                                                      fingerprint=None).values())


def _provenance(config: RunConfig, prep: Any, backend: Any, started: str) -> dict[str, Any]:
    from hub_pgen.run.provenance import provenance, skills_provenance

    base = provenance(config, prep, backend, {}, started)
    params = {k: v for k, v in base["parameters"].items()
              if k in ("root", "repo_id", "revision", "episodes", "image_keys", "num_image_views", "seed",
                       "min_skill_seconds", "backend", "model", "model_revision", "temperature", "top_p",
                       "constrained", "max_retries", "batch_size")}
    skills = skills_provenance(prep)
    return {"kind": KIND, "tool": base["tool"], "created_at": started, "fingerprint": prep.fingerprint,
            "identity": prep.identity, "source": base["source"],
            "labelling": {"backend": config.backend, "model": base["generation"]["model"],
                          "camera": prep.cameras[0] if prep.cameras else None},
            "parameters": params, "skills": skills, "counts": {
                "episodes": len(prep.skill_records or {}), "labelled": skills.get("labelled", 0),
                "failed": len(skills.get("failed", []))},
            "notices": list(prep.notices), "use": f"--skills-file {layout.SKILLS_PATH} of this folder"}


def _result(state: str, output: Path, fp: str, prov: dict[str, Any], t0: float, notices: tuple[str, ...] = ()) -> Any:
    from hub_pgen.run.result import RunResult

    counts = prov.get("counts") or {}
    return RunResult(state, output, fp, samples=counts.get("episodes", 0), ok=counts.get("labelled", 0),
                     failed=counts.get("failed", 0), elapsed_s=time.monotonic() - t0, notices=notices,
                     skills=prov.get("skills"), kind=KIND)


def _write_json(path: Path, obj: Any) -> None:
    fsio.write_new(path, fsio.json_text(obj, indent=2, sort_keys=True))

