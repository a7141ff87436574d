#!/usr/bin/env python
"""How much of a batch's prompt is padding, in plan order against sorted by length (issue 10, part 4:
"length-sorted batching: measure, decide").

Prompt lengths are counted with a Qwen2.5-VL processor at its published pixel budget (Qwen's
regular vocabulary size, the chat template, two 640x480 camera images: ~1,500 tokens a sample, most
of them image tokens) for every sample of a generated svla_so101-shaped plan. No model is needed: a
left-padded batch costs max(len) x rows prompt tokens, so padding = 1 - sum(len) / (max(len) x rows).

    python scripts/bench_padding.py [--episodes 20] [--cameras 2] [--batch-sizes 16,64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--batch-sizes", default="16,64")
    args = p.parse_args(argv)

    import numpy as np
    from PIL import Image

    from hub_pgen.config import RunConfig
    from hub_pgen.example import build_example_dataset, svla_like_spec
    from hub_pgen.generate.prompt import construct_prompt
    from hub_pgen.generate.qwen import chat_messages
    from hub_pgen.progress import NullReporter
    from hub_pgen.run.prepare import prepare
    from hub_pgen.testing import tiny_tokenizer

    src = Path(tempfile.mkdtemp(prefix="bench-padding-")) / "src"
    build_example_dataset(src, svla_like_spec(n_episodes=args.episodes, frames=240, width=640, height=480))
    tok = tiny_tokenizer.build_tokenizer(regular_vocab=tiny_tokenizer.QWEN_REGULAR_VOCAB)
    proc = tiny_tokenizer.build_processor("qwen2_5_vl", tok, min_pixels=56 * 56, max_pixels=28 * 28 * 1280)
    images = [Image.new("RGB", (640, 480))] * args.cameras
    print(f"{'sampling':<12}{'samples':>8}{'tokens min/mean/max':>22}{'batch':>7}{'plan order':>12}{'sorted':>9}")
    for sampling, interval in (("segment", None), ("interval", 1.0)):
        prep = prepare(RunConfig(root=src, backend="template", sampling=sampling, sample_interval=interval),
                                NullReporter())
        lens = np.array([
            int(proc(text=[proc.apply_chat_template(chat_messages(len(images), construct_prompt(s)), tokenize=False,
                                                    add_generation_prompt=True)],
                     images=images, return_tensors="pt")["input_ids"].shape[1])
            for s in prep.samples])

        def padding(order: np.ndarray, bs: int) -> float:
            total = real = 0
            for i in range(0, len(order), bs):
                batch = lens[order[i:i + bs]]  # noqa: B023  (called within this iteration)
                total += int(batch.max()) * len(batch)
                real += int(batch.sum())
            return 1 - real / total

        for bs in (int(x) for x in args.batch_sizes.split(",")):
            print(f"{sampling:<12}{len(lens):>8}{f'{lens.min()}/{round(lens.mean())}/{lens.max()}':>22}{bs:>7}"
                  f"{padding(np.arange(len(lens)), bs):>12.2%}{padding(np.argsort(lens), bs):>9.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
