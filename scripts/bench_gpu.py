#!/usr/bin/env python
"""Throughput of the transformers pgen backend on a GPU: samples/s by batch size and camera count.

Real-size Qwen2-VL-7B and Qwen2.5-VL-7B architectures (published hyperparameters, written below)
with random weights — no download — and a Qwen-style tokenizer padded to the real vocabulary, driven
through ``TransformersBackend.generate`` itself (processor, chat template, left padding, logits
processors, decoding). Every row generates exactly ``--new-tokens`` tokens (EOS ignored through
``min_new_tokens``), so rows are comparable; random weights never write valid JSON, which does not
matter for speed. ``--constrained`` instead runs the JSON grammar (no forced length) to show its
cost. ``--tiny`` runs the tiny test models on CPU as a smoke check.

    python scripts/bench_gpu.py                           # both 7B configs, batch 1/4/8/16, 1 and 3 cameras
    python scripts/bench_gpu.py --models qwen2_5_vl_7b --batch-sizes 1,8 --json out.json
    python scripts/bench_gpu.py --tiny --batch-sizes 1,2 --cameras 1
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Published config.json values (Qwen/Qwen2-VL-7B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct).
_TEXT_7B = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
}
SPECS: dict[str, dict[str, Any]] = {
    "qwen2_vl_7b": {
        "family": "qwen2_vl",
        "text": {**_TEXT_7B, "max_position_embeddings": 32768},
        "vision": {
            "depth": 32,
            "embed_dim": 1280,
            "hidden_size": 3584,
            "num_heads": 16,
            "mlp_ratio": 4,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "hidden_act": "quick_gelu",
        },
        "min_pixels": 56 * 56,
        "max_pixels": 28 * 28 * 16384,
    },
    "qwen2_5_vl_7b": {
        "family": "qwen2_5_vl",
        "text": {**_TEXT_7B, "max_position_embeddings": 128000},
        "vision": {
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": 3584,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31],
            "hidden_act": "silu",
            "tokens_per_second": 2,
        },
        "min_pixels": 56 * 56,
        "max_pixels": 28 * 28 * 1280,
    },
    # Qwen/Qwen3-VL-30B-A3B-Instruct (MoE: 128 experts, 8 active): ~31B parameters, ~3.3B active
    "qwen3_vl_30b_a3b": {
        "family": "qwen3_vl_moe",
        "text": {
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "num_hidden_layers": 48,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "head_dim": 128,
            "vocab_size": 151936,
            "rms_norm_eps": 1e-6,
            "hidden_act": "silu",
            "max_position_embeddings": 262144,
            "num_experts": 128,
            "num_experts_per_tok": 8,
            "moe_intermediate_size": 768,
            "decoder_sparse_step": 1,
            "tie_word_embeddings": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20],
                                "mrope_interleaved": True},
        },
        "vision": {
            "depth": 27,
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_heads": 16,
            "out_hidden_size": 2048,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [8, 16, 24],
            "hidden_act": "gelu_pytorch_tanh",
        },
        "min_pixels": 64 * 64,
        "max_pixels": 32 * 32 * 1280,
    },
}
CONFIG_CLASSES = {"qwen2_vl": "Qwen2VLConfig", "qwen2_5_vl": "Qwen2_5_VLConfig", "qwen3_vl": "Qwen3VLConfig",
                  "qwen3_vl_moe": "Qwen3VLMoeConfig"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument(
        "--models", default=",".join(SPECS), help=f"comma list of {', '.join(SPECS)} (default: all)"
    )
    p.add_argument("--batch-sizes", default="1,4,8,16", help="comma list (default: 1,4,8,16)")
    p.add_argument("--cameras", default="1,3", help="images per sample, comma list (default: 1,3)")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--new-tokens", type=int, default=80, help="tokens generated per sample (default: 80)")
    p.add_argument("--repeats", type=int, default=3, help="timed generate calls per row (median kept)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per row first")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--attn-implementation", default="sdpa")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    p.add_argument(
        "--constrained",
        action="store_true",
        help="decode with the JSON grammar (answers end when the JSON closes; no forced length)",
    )
    p.add_argument("--tiny", action="store_true", help="the tiny random test models on CPU: a smoke check")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


# --- models ---------------------------------------------------------------------------------------


def build_real(name: str, device: str, dtype: Any) -> Any:
    """A real-size random-weight model and its processor, made directly on ``device``."""
    import torch
    import transformers

    from hub_pgen.generate.qwen import LoadedModel, LoadOptions
    from hub_pgen.testing import tiny_qwen, tiny_tokenizer

    spec = SPECS[name]
    tokenizer = tiny_tokenizer.build_tokenizer(regular_vocab=tiny_tokenizer.QWEN_REGULAR_VOCAB)
    processor = tiny_tokenizer.build_processor(
        spec["family"], tokenizer, min_pixels=spec["min_pixels"], max_pixels=spec["max_pixels"]
    )
    ids = tiny_tokenizer.token_ids(tokenizer)
    tokens = {
        k: ids[k]
        for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    }
    text = {
        **spec["text"],
        "bos_token_id": ids["bos_token_id"],
        "eos_token_id": ids["eos_token_id"],
        "pad_token_id": ids["pad_token_id"],
    }
    config_cls = getattr(transformers, CONFIG_CLASSES[spec["family"]])
    extra = {"tie_word_embeddings": False} if spec["family"] == "qwen3_vl_moe" else {}
    config = config_cls(text_config=text, vision_config=spec["vision"], **tokens, **extra)
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.generation_config = tiny_qwen.generation_config(tokenizer)
    model.eval()
    options = LoadOptions(f"random:{name}", None, device, str(dtype).removeprefix("torch."), None, False)
    return LoadedModel(model, processor, options, None)


def build_tiny(name: str, cache: Path) -> Any:
    from hub_pgen.generate.qwen import LoadOptions, load_model
    from hub_pgen.testing import tiny_model_dir

    folder = tiny_model_dir(cache, SPECS[name]["family"])
    return load_model(LoadOptions(str(folder), None, "cpu", "float32", None, False))


# --- measuring ------------------------------------------------------------------------------------


def make_requests(n: int, cameras: int, height: int, width: int) -> list[Any]:
    import numpy as np
    from PIL import Image

    from hub_pgen.data import GenerationRequest, Sample
    from hub_pgen.generate.prompt import construct_prompt
    from hub_pgen.plan.taxonomy import assign_types

    rng = np.random.default_rng(0)
    out = []
    for i, (scenario, response) in enumerate(assign_types(n, seed=0)):
        sample = Sample(
            sample_id=f"bench-{i}",
            episode_index=0,
            episode_id="0",
            frame_index=i,
            timestamp=float(i),
            skill_current="robot arm picks up pink lego brick",
            skill_history=("robot arm moves towards pink lego brick",),
            task_description="put the pink lego brick into the transparent box",
            scenario_type=scenario,
            response_type=response,
        )
        images = tuple(
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(cameras)
        )
        out.append(GenerationRequest(sample, construct_prompt(sample), images, seed=i))
    return out


def measure(name: str, loaded: Any, args: argparse.Namespace, batch: int, cameras: int) -> dict[str, Any]:
    import torch

    from hub_pgen.generate.qwen import GenerationOptions, TransformersBackend

    cuda = loaded.options.device.startswith("cuda")
    counted: list[int] = []

    def generate(**kw: Any) -> Any:
        if not args.constrained:  # a fixed length: EOS is masked until new_tokens are out
            kw["generation_config"] = copy.deepcopy(kw["generation_config"])
            kw["generation_config"].min_new_tokens = args.new_tokens
        out = loaded.model.generate(**kw)
        counted.append(int(out.shape[1] - kw["input_ids"].shape[1]))
        return out

    options = GenerationOptions(max_new_tokens=args.new_tokens, constrained=args.constrained, max_retries=0)
    backend = TransformersBackend(loaded, options, generate_fn=generate)
    requests = make_requests(batch, cameras, args.height, args.width)
    times: list[float] = []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        backend.generate(requests)
        if cuda:
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    row = {
        "model": name + ("-tiny" if args.tiny else ""),
        "batch_size": batch,
        "cameras": cameras,
        "new_tokens": statistics.median(counted[args.warmup :]) if counted else None,
        "seconds_per_batch": round(seconds, 4),
        "samples_per_s": round(batch / seconds, 3),
        "oom_split": backend.batch_cap is not None,
    }
    if cuda:
        row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = [
        "model",
        "cameras",
        "batch_size",
        "new_tokens",
        "seconds_per_batch",
        "samples_per_s",
        "peak_gib",
        "oom_split",
    ]
    cols = [c for c in cols if any(c in r for r in rows)]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.rjust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).rjust(widths[c]) for c in cols))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.tiny:
        torch.set_num_threads(min(2, torch.get_num_threads()))
        device, dtype = args.device or "cpu", torch.float32
    else:
        device = args.device or "cuda"
        if device.startswith("cuda") and not torch.cuda.is_available():
            print("bench_gpu: no CUDA device; use --tiny for a CPU smoke check", file=sys.stderr)
            return 2
        dtype = getattr(torch, args.dtype)
    cache = Path(os.environ.get("HUB_PGEN_BENCH_CACHE") or tempfile.mkdtemp(prefix="hub-pgen-bench-"))
    env = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
    }
    import transformers

    env["transformers"] = transformers.__version__
    rows: list[dict[str, Any]] = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in SPECS:
            print(f"bench_gpu: unknown model {name!r}; choose from {', '.join(SPECS)}", file=sys.stderr)
            return 2
        loaded = build_tiny(name, cache) if args.tiny else build_real(name, device, dtype)
        if not args.tiny and args.attn_implementation:
            loaded.model.set_attn_implementation(args.attn_implementation)
        for cameras in ints(args.cameras):
            for batch in ints(args.batch_sizes):
                row = measure(name, loaded, args, batch, cameras)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        del loaded
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    print_table(rows)
    result = {"env": env, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
