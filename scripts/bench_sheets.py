#!/usr/bin/env python
"""What ``--skills annotate`` shows the model: contact sheets per episode, and their image tokens.

For episodes of several lengths (30 fps, one 640x480 camera), the frames shown, the sheets, the image
tokens a Qwen2-VL image processor makes of them (its own ``image_grid_thw``), and the time to build
the sheets. Reported against a baseline measured in the same invocation: the image tokens of one
pgen sample (two 640x480 frames, the svla_so101 layout), so "labelling an episode costs as much as
N samples' images".

    python scripts/bench_sheets.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    args = p.parse_args(argv)

    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    from hub_pgen.skills import sheets

    processor = Qwen2VLImageProcessor()  # the Qwen2/2.5-VL defaults: 14 px patches, 2 x 2 merge

    def tokens(images: list) -> int:
        grid = processor(images=images, return_tensors="np")["image_grid_thw"]
        return int(sum(int(np.prod(g)) for g in grid) // (processor.merge_size ** 2))

    rng = np.random.default_rng(0)
    frame = Image.fromarray(rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8))
    baseline = tokens([frame, frame])
    rows = []
    for seconds in (5, 10, 30, 60, 120):
        ts = (np.arange(int(seconds * 30)) / 30).astype(np.float32)
        shown = sheets.sheet_times(ts)
        t = time.perf_counter()
        made = sheets.make_sheets([frame] * len(shown), shown)
        build_s = time.perf_counter() - t
        n = tokens(made)
        rows.append({"episode_s": seconds, "frames_shown": len(shown), "sheets": len(made),
                     "sheet_px": f"{made[0].width}x{made[0].height}", "image_tokens": n,
                     "x_one_sample": round(n / baseline, 2), "build_s": round(build_s, 3)})
    result = {"one_sample_image_tokens": baseline, "episodes": rows}
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(f"one pgen sample (2 x {args.width}x{args.height}): {baseline} image tokens")
        for r in rows:
            print("  ".join(f"{k}={v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
