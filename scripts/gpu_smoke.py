#!/usr/bin/env python
"""The Python steps of ``scripts/gpu_smoke.sh`` (run that, not this): environment check, model
folder, example dataset, and the final check + results file.

    python scripts/gpu_smoke.py env [--tiny]
    python scripts/gpu_smoke.py model DIR [--tiny] [--spec qwen2_5_vl_7b]
    python scripts/gpu_smoke.py dataset DIR [--tiny]
    python scripts/gpu_smoke.py report --work WORK --steps STEPS.tsv [--json FILE]

``model`` writes what a Hub checkout of the model holds (sharded bf16 safetensors + index, config,
generation config, tokenizer, processor, chat template), from the published Qwen2.5-VL-7B (or
Qwen2-VL-7B) hyperparameters in ``scripts/bench_gpu.py`` ``SPECS`` with random weights made
directly on the GPU; ``--tiny`` the tiny test architecture on CPU, through the same code.
``report`` reads nothing but JSON and the files hub-pgen wrote (no torch), so it runs even when an
earlier step broke.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEATURE = "task_index_high_level"
GPU_SPEC = "qwen2_5_vl_7b"
TINY_FAMILY = "qwen2_5_vl"


def _bench_gpu() -> Any:
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "scripts" / "bench_gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _line(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


# --- env ------------------------------------------------------------------------------------------


def cmd_env(args: argparse.Namespace) -> int:
    """Versions of what the run uses; with a GPU expected, fail early (exit 2) when there is none."""
    import importlib.metadata as md

    versions = {}
    for name in ("torch", "transformers", "accelerate", "tokenizers", "xgrammar", "av", "pyarrow", "numpy"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    import av  # noqa: F401  (the import, not just the metadata, is what hub-pgen needs)
    import torch
    import xgrammar  # noqa: F401

    info: dict[str, Any] = {"python": sys.version.split()[0], **versions,
                            "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        info.update(gpu=torch.cuda.get_device_name(), gpu_total_gib=round(total / 2**30, 1),
                    gpu_free_gib=round(free / 2**30, 1), cuda=torch.version.cuda)
    _line(**info)
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2))
    if not args.tiny and not torch.cuda.is_available():
        print("gpu_smoke: torch sees no CUDA device; on a machine without one run "
              "`bash scripts/gpu_smoke.sh --tiny`", file=sys.stderr)
        return 2
    return 0


# --- model ----------------------------------------------------------------------------------------


def cmd_model(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    if (out / ".complete").is_file():
        _line(step="model", reused=str(out))
        return 0
    shutil.rmtree(out, ignore_errors=True)  # an interrupted save: start clean

    import torch
    import transformers

    from hub_pgen.testing import tiny_qwen, tiny_tokenizer

    t0 = time.perf_counter()
    if args.tiny:
        family: str = TINY_FAMILY
        tokenizer = tiny_tokenizer.build_tokenizer()
        processor = tiny_tokenizer.build_processor(family, tokenizer)  # type: ignore[arg-type]
        config = tiny_qwen.tiny_config(family, tokenizer)  # type: ignore[arg-type]
        device, dtype, shard = "cpu", torch.float32, "200KB"  # small shards: the index path too
    else:
        specs = _bench_gpu().SPECS
        if args.spec not in specs:
            print(f"gpu_smoke: unknown --spec {args.spec!r}; choose from {', '.join(specs)}", file=sys.stderr)
            return 2
        spec = specs[args.spec]
        family = spec["family"]
        # the real vocabulary: special tokens get the published ids (151643...), grammar masks cost
        # what they cost with the real tokenizer
        tokenizer = tiny_tokenizer.build_tokenizer(regular_vocab=tiny_tokenizer.QWEN_REGULAR_VOCAB)
        processor = tiny_tokenizer.build_processor(family, tokenizer,  # type: ignore[arg-type]
                                              min_pixels=spec["min_pixels"], max_pixels=spec["max_pixels"])
        ids = tiny_tokenizer.token_ids(tokenizer)
        tokens = {k: ids[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                      "vision_end_token_id")}
        text = {**spec["text"], "bos_token_id": ids["bos_token_id"], "eos_token_id": ids["eos_token_id"],
                "pad_token_id": ids["pad_token_id"]}
        config_cls = transformers.Qwen2VLConfig if family == "qwen2_vl" else transformers.Qwen2_5_VLConfig
        config = config_cls(text_config=text, vision_config=spec["vision"], **tokens)
        device, dtype, shard = args.device, torch.bfloat16, "4GB"  # ~ the published checkpoints' shards
    tokenizer_s = time.perf_counter() - t0

    t = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):  # random init right where it lives: seconds, not minutes, for 8B params
        model = transformers.AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.generation_config = tiny_qwen.generation_config(tokenizer)
    model.eval()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    params = sum(p.numel() for p in model.parameters())
    init_s = time.perf_counter() - t

    t = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, max_shard_size=shard)  # safetensors, sharded + index, as on the Hub
    processor.save_pretrained(out)
    save_s = time.perf_counter() - t
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    (out / ".complete").write_text("ok\n")
    _line(step="model", family=family, spec=None if args.tiny else args.spec, params=params,
          dtype=str(dtype).removeprefix("torch."), device=device, bytes=size,
          files=sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")),
          tokenizer_s=round(tokenizer_s, 2), init_s=round(init_s, 2), save_s=round(save_s, 2))
    return 0


# --- dataset --------------------------------------------------------------------------------------


def dataset_spec(tiny: bool, as_is: bool = False) -> Any:
    """``as_is``: the same dataset without meta/skills.json, as public datasets come (the model labels it)."""
    from hub_pgen.example import ExampleSpec

    skills = "none" if as_is else "regular"
    if tiny:  # 3 episodes x 5 skills = 15 samples at 64x48
        return ExampleSpec(n_episodes=3, frames_per_episode=30, skills=skills)
    # 640x480 like the svla_so101 cameras, 2 AV1 cameras, 2 data/video files (4 + 1 episodes);
    # 5 + 5 + 5 + 4 + 5 = 24 segment samples = 3 full batches of 8
    return ExampleSpec(n_episodes=5, frames_per_episode=(48, 54, 60, 45, 51), width=640, height=480,
                       skills=skills)


def cmd_dataset(args: argparse.Namespace) -> int:
    from hub_pgen.example import build_example_dataset, episode_lengths

    out = Path(args.dir)
    spec = dataset_spec(args.tiny, args.as_is)
    if (out / "meta" / "info.json").is_file():  # built aside and renamed: there means complete
        _line(step="dataset", reused=str(out))
        return 0
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    build_example_dataset(out, spec)
    _line(step="dataset", episodes=spec.n_episodes, frames=sum(episode_lengths(spec)),
          size=f"{spec.width}x{spec.height}", cameras=list(spec.cameras), codec=spec.codec,
          seconds=round(time.perf_counter() - t, 2))
    return 0


# --- report ---------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def output_problems(work: Path, result: Any) -> list[str]:
    """What is wrong with a finished run's output, beyond what ``hub-pgen validate`` checks."""
    out = work / "out"
    problems = []
    if not isinstance(result, dict):
        return ["hub-pgen --json printed no result object"]
    if result.get("state") != "written":
        problems.append(f"result state is {result.get('state')!r}, not 'written'")
    samples, ok = result.get("samples") or 0, result.get("ok") or 0
    if samples <= 0:
        problems.append("the plan had no samples")
    if ok <= 0:
        problems.append(f"no sample produced a dialogue (0 of {samples}); failures: {result.get('failures')}")
    info = _read_json(out / "meta" / "info.json")
    if not isinstance(info, dict) or FEATURE not in info.get("features", {}):
        problems.append(f"{out}/meta/info.json lacks the {FEATURE} feature")
    try:
        rows = (out / "meta" / "syn_annotations.jsonl").read_text().splitlines()
    except OSError:
        rows = []
    if len(rows) != samples:
        problems.append(f"meta/syn_annotations.jsonl has {len(rows)} records for {samples} samples")
    return problems


def where_problems(work: Path, mode: str) -> list[str]:
    """The run's log names the device and dtype it used: a GPU run on cuda in bfloat16."""
    result = _read_json(work / "result.json")
    line = result.get("runs_on") if isinstance(result, dict) else None
    if not line:
        return ["the run's result does not name the model's device and dtype (runs_on)"]
    want = ("on device cpu", "dtype float32") if mode == "tiny" else ("on device cuda", "dtype bfloat16")
    return [f"the run says {line!r}, not {' / '.join(want)}" for w in want if w not in line][:1]


def as_is_problems(work: Path) -> list[str]:
    """The dataset without skills: auto labelled it with the model, then wrote dialogues."""
    result = _read_json(work / "result-as-is.json")
    if not isinstance(result, dict):
        return ["the run on the dataset without skills printed no result object"]
    skills = result.get("skills") or {}
    problems = []
    if skills.get("source") != "annotate" or skills.get("requested") != "auto":
        problems.append(f"the dataset without skills was not labelled by --skills auto (skills: {skills})")
    if not skills.get("labelled"):
        problems.append("the model labelled no episode of the dataset without skills")
    if not result.get("ok"):
        problems.append("no dialogue on the dataset without skills")
    return problems


def cmd_report(args: argparse.Namespace) -> int:
    work = Path(args.work)
    steps = []
    for line in Path(args.steps).read_text().splitlines():
        name, rc, seconds, *note = line.split("\t")
        steps.append({"step": name, "rc": int(rc), "seconds": float(seconds), **({"note": note[0]} if note else {})})
    result = _read_json(work / "result.json")
    failed = [s for s in steps if s["rc"] != 0]
    problems = [f"step {s['step']} exited {s['rc']}" for s in failed]
    if not failed and any(s["step"] == "validate" for s in steps):
        problems += output_problems(work, result) + where_problems(work, args.mode)
    if not failed and any(s["step"] == "validate-as-is" for s in steps):
        problems += as_is_problems(work)
    elif not failed:
        problems.append("the run stopped before validate")
    report: dict[str, Any] = {
        "mode": args.mode,
        "verdict": "FAIL" if problems else "PASS",
        "problems": problems,
        "warnings": [w for w in [_read_text(work / "install_note.txt")] if w],
        "total_s": round(sum(s["seconds"] for s in steps), 1),
        "steps": steps,
        "env": _read_json(work / "env.json"),
        "command": _read_text(work / "command.txt"),
    }
    if isinstance(result, dict):
        report["result"] = {k: result.get(k) for k in ("samples", "ok", "failed", "generated", "new_tasks",
                                                        "elapsed_s", "state", "failures")}
    as_is = _read_json(work / "result-as-is.json")
    if isinstance(as_is, dict):
        report["result_as_is"] = {k: as_is.get(k) for k in ("samples", "ok", "failed", "elapsed_s", "skills")}
    report["model_line"] = result.get("runs_on") if isinstance(result, dict) else None
    if args.gpu_mem_mib:
        report["gpu_memory_used_max_mib"] = args.gpu_mem_mib
    rows = []
    try:
        rows = [json.loads(r) for r in (work / "out" / "meta" / "syn_annotations.jsonl").read_text().splitlines()[:2]]
    except (OSError, ValueError):
        pass
    report["examples"] = [{k: r.get(k) for k in ("skill_current", "scenario_type", "response_type", "user_prompt",
                                                 "robot_utterance", "status", "error")} for r in rows]
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    for r in report["examples"]:
        print(f"  example [{r['status']}] {r['scenario_type']}/{r['response_type']}: "
              f"{str(r['user_prompt'])[:80]!r} -> {str(r['robot_utterance'])[:60]!r}")
    if isinstance(result, dict):
        print(f"  hub-pgen: {result.get('samples')} samples, {result.get('ok')} ok, {result.get('failed')} failed, "
              f"{result.get('elapsed_s', 0):.1f} s inside the run")
    for w in report["warnings"]:
        print(f"  warning: {w}")
    for p in problems:
        print(f"  problem: {p}")
    print(f"gpu_smoke {args.mode}: {report['verdict']} in {report['total_s']} s"
          + (f" ({'; '.join(problems)})" if problems else ""))
    return 0 if not problems else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env")
    e.add_argument("--tiny", action="store_true")
    e.add_argument("--json")
    m = sub.add_parser("model")
    m.add_argument("dir")
    m.add_argument("--tiny", action="store_true")
    m.add_argument("--spec", default=GPU_SPEC, help="a scripts/bench_gpu.py SPECS name (default: %(default)s)")
    m.add_argument("--device", default="cuda")
    d = sub.add_parser("dataset")
    d.add_argument("dir")
    d.add_argument("--tiny", action="store_true")
    d.add_argument("--as-is", action="store_true", help="without meta/skills.json (the model labels it)")
    r = sub.add_parser("report")
    r.add_argument("--work", required=True)
    r.add_argument("--steps", required=True, help="TSV lines: step, exit code, seconds[, note]")
    r.add_argument("--mode", default="gpu")
    r.add_argument("--gpu-mem-mib", type=int)
    r.add_argument("--json")
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return {"env": cmd_env, "model": cmd_model, "dataset": cmd_dataset, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
