#!/usr/bin/env python
"""End-to-end hub-pgen on a GPU: the whole pipeline (source, plan, frames from AV1 videos,
generation, journal, write) with a real-size Qwen-VL architecture and random weights, by batch size.

Reports, per batch size, end-to-end samples/s and the seconds spent outside the model's
``generate`` (frames not hidden behind generation, journal, write), against the same plan's frames
decoded alone (``iter_sample_images`` with no model) in the same invocation: it shows how much of the
frames stage the decoding lanes hide behind the GPU. Random weights never write valid JSON, so every
sample is a recorded failure; each answer is a fixed ``--new-tokens`` long (EOS ignored), as in
``scripts/bench_gpu.py``, whose model builder this uses.

``--cache static`` measures transformers' static KV cache instead of its default dynamic one: the
script sets ``cache_implementation="static"`` on the generation config of each ``generate`` call
(nothing in hub_pgen changes). On CUDA, transformers then ``torch.compile``s the decode step itself
(``CompileConfig()``: inductor, mode "reduce-overhead"); on CPU it does not. Each row reports the
warm-up call's seconds (where the first compile lands) and the graphs dynamo compiled during the
timed run (recompiles for a new batch size or a longer cache).

    python scripts/bench_gpu_pipeline.py                      # Qwen2.5-VL-7B, 640x480, batch 1 and 16
    python scripts/bench_gpu_pipeline.py --cache static --batch-sizes 16,64   # the static-cache arm
    python scripts/bench_gpu_pipeline.py --tiny --episodes 2 --batch-sizes 1,4   # CPU smoke check
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bench_gpu() -> Any:
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "scripts" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="qwen2_5_vl_7b", help="a scripts/bench_gpu.py SPECS name")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--frames", type=int, default=240)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--new-tokens", type=int, default=80)
    p.add_argument("--sampling", default="segment", choices=("segment", "interval", "frame"))
    p.add_argument("--cameras", type=int, default=2, help="camera views per sample (1 or 2; default 2)")
    p.add_argument("--full-batches", type=int, default=0,
                   help="per batch size, only the first episodes that give this many full batches (0: all); "
                        "keeps batch 1 short and batch 64 full")
    p.add_argument("--peak-tflops", type=float, default=790.0,
                   help="the device's dense bf16 peak, for the compute-bound ceiling (H200: ~790)")
    p.add_argument("--cache", default="dynamic", choices=("dynamic", "static"),
                   help="KV cache of generate: transformers' default (dynamic) or "
                        "cache_implementation='static' (auto-compiled by transformers on CUDA)")
    p.add_argument("--tiny", action="store_true", help="tiny test model on CPU (smoke check)")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    import torch

    from hub_pgen import run as runner
    from hub_pgen.config import RunConfig
    from hub_pgen.example import build_example_dataset, svla_like_spec
    from hub_pgen.frames import iter_sample_images
    from hub_pgen.generate.qwen import GenerationOptions, TransformersBackend
    from hub_pgen.progress import NullReporter
    from hub_pgen.run.prepare import prepare

    bench = _bench_gpu()
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-pipeline-"))
    src = args.data_dir or work / "source"
    t0 = time.perf_counter()
    if not (src / "meta" / "info.json").is_file():
        build_example_dataset(src, svla_like_spec(n_episodes=args.episodes, frames=args.frames,
                                                  width=args.width, height=args.height))
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    if args.tiny:
        loaded = bench.build_tiny(args.model, work / "tiny")
    else:
        loaded = bench.build_real(args.model, "cuda", torch.bfloat16)
    load_s = time.perf_counter() - t0
    cuda = loaded.options.device.startswith("cuda")
    in_model = [0.0]

    def generate(**kw: Any) -> Any:
        kw["generation_config"] = copy.deepcopy(kw["generation_config"])
        kw["generation_config"].min_new_tokens = args.new_tokens
        if args.cache == "static":
            kw["generation_config"].cache_implementation = "static"
        start = time.perf_counter()
        out = loaded.model.generate(**kw)
        if cuda:
            torch.cuda.synchronize()
        in_model[0] += time.perf_counter() - start
        return out

    options = GenerationOptions(max_new_tokens=args.new_tokens, constrained=False, max_retries=0)
    ceiling = compute_ceiling(loaded, args)
    print(json.dumps({"ceiling": ceiling}), flush=True)
    rows: list[dict[str, Any]] = []
    frames_alone, n_images = None, 0

    def summary() -> dict[str, Any]:
        return {"model": args.model + ("-tiny" if args.tiny else ""),
                "device": torch.cuda.get_device_name() if cuda else "cpu",
                "dataset": {"episodes": args.episodes, "frames": args.frames,
                            "size": f"{args.width}x{args.height}", "build_s": round(build_s, 1)},
                "load_s": round(load_s, 1), "new_tokens": args.new_tokens, "sampling": args.sampling,
                "cache": args.cache, "compiled": hasattr(loaded.model, "_compiled_call"),
                "cameras": args.cameras, "ceiling": ceiling,
                "frames_alone_s": round(frames_alone or 0.0, 3), "images": n_images, "rows": rows}

    for bs in [int(x) for x in args.batch_sizes.split(",")]:
        config = RunConfig(root=src, output_dir=work / f"out-bs{bs}", batch_size=bs, backend="transformers",
                           model=loaded.options.model, sampling=args.sampling, max_new_tokens=args.new_tokens,
                           constrained=False, max_retries=0, num_image_views=args.cameras,
                           episodes=_episodes_for(src, args, bs) if args.full_batches else None)
        if frames_alone is None:  # the same plan's images, decoded with no model running
            prep = prepare(config, NullReporter())
            t = time.perf_counter()
            n_images = sum(len(imgs) for _, imgs in iter_sample_images(prep.samples, source=prep.source))
            frames_alone = time.perf_counter() - t
        backend = TransformersBackend(loaded, options, generate_fn=generate)
        t = time.perf_counter()
        backend.generate(list(_warmup_requests(bs, args.cameras)))  # kernels, allocator; static: compile
        warmup_s = time.perf_counter() - t
        in_model[0] = 0.0
        graphs = _compiled_graphs()
        t = time.perf_counter()
        result = runner.run(config, backend=backend)
        total = time.perf_counter() - t
        rate = result.samples / total
        rows.append({
            "batch_size": bs, "cache": args.cache, "warmup_s": round(warmup_s, 2),
            "graphs_compiled_in_run": _compiled_graphs() - graphs,
            "samples": result.samples, "seconds": round(total, 2),
            "samples_per_s": round(rate, 3), "in_generate_s": round(in_model[0], 2),
            "outside_generate_s": round(total - in_model[0], 2),
            "fraction_of_ceiling": round(rate / ceiling["samples_per_s"], 4),
        })
        print(json.dumps(rows[-1]), flush=True)
        if args.json:  # after every row: a run cut short by a timeout keeps the rows it finished
            args.json.write_text(json.dumps(summary(), indent=2))
    print(json.dumps(summary(), indent=2))
    return 0


def _compiled_graphs() -> int:
    """Graphs torch.compile (dynamo) has compiled in this process so far: with the static cache on CUDA,
    transformers compiles the decode step, and a new batch size or a longer cache compiles again."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _episodes_for(src: Path, args: argparse.Namespace, batch: int) -> tuple[int, ...]:
    """The first episodes whose samples fill ``args.full_batches`` batches of ``batch``."""
    from hub_pgen.config import RunConfig
    from hub_pgen.progress import NullReporter
    from hub_pgen.run.prepare import prepare

    prep = prepare(RunConfig(root=src, backend="template", sampling=args.sampling), NullReporter())
    per_episode: dict[int, int] = {}
    for sample in prep.samples:
        per_episode[sample.episode_index] = per_episode.get(sample.episode_index, 0) + 1
    chosen, total = [], 0
    for episode, n in sorted(per_episode.items()):
        if total >= args.full_batches * batch:
            break
        chosen.append(episode)
        total += n
    return tuple(chosen)


def compute_ceiling(loaded: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The compute-bound ceiling: samples/s if every FLOP of a sample ran at the device's peak.

    FLOPs of one sample = 2 x active language-model parameters x (prompt tokens + new tokens)
    + 2 x vision-encoder parameters x image patches. Active parameters of an MoE count each expert
    layer at ``num_experts_per_tok / num_experts``. Prompt tokens and patches are measured with the
    processor on one sample of this size (images included). Attention's quadratic term, small at these
    lengths, is left out, so the ceiling is a little high: fractions are a little low."""
    import torch

    from hub_pgen.generate.prompt import construct_prompt
    from hub_pgen.generate.qwen import chat_messages

    model, processor = loaded.model, loaded.processor
    text_cfg = model.config.get_text_config()
    experts = getattr(text_cfg, "num_experts", None)
    share = (text_cfg.num_experts_per_tok / experts) if experts else 1.0
    vision = sum(p.numel() for n, p in model.named_parameters() if "visual" in n)
    expert = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n or n.endswith(".experts"))
    text = sum(p.numel() for p in model.parameters()) - vision
    active = text - expert * (1 - share)
    request = next(iter(_warmup_requests(1)))
    images = list(request.images[: args.cameras])
    chat = processor.apply_chat_template(chat_messages(len(images), construct_prompt(request.sample)),
                                         tokenize=False, add_generation_prompt=True)
    with torch.inference_mode():
        enc = processor(text=[chat], images=images or None, return_tensors="pt")
    prompt = int(enc["input_ids"].shape[1])
    patches = int(enc["pixel_values"].shape[0]) if "pixel_values" in enc else 0
    flops = 2 * active * (prompt + args.new_tokens) + 2 * vision * patches
    return {"active_params_b": round(active / 1e9, 3), "vision_params_b": round(vision / 1e9, 3),
            "prompt_tokens": prompt, "image_patches": patches, "gflops_per_sample": round(flops / 1e9, 1),
            "peak_tflops": args.peak_tflops, "samples_per_s": round(args.peak_tflops * 1e12 / flops, 2)}


def _warmup_requests(n: int, cameras: int = 2) -> Any:
    import numpy as np
    from PIL import Image

    from hub_pgen.data import GenerationRequest, Sample
    from hub_pgen.generate.prompt import construct_prompt

    rng = np.random.default_rng(0)
    for i in range(n):
        s = Sample(f"warm-{i}", 0, "0", i, 0.0, "pick up the brick", (), "tidy up", "direct_request", "confirmation")
        imgs = tuple(Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
                     for _ in range(cameras))
        yield GenerationRequest(s, construct_prompt(s), imgs, seed=i)


if __name__ == "__main__":
    raise SystemExit(main())
