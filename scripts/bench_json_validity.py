#!/usr/bin/env python
"""How often a model's one answer is a schema-valid dialogue, with and without constrained decoding.

Tiny random-weight models of each Qwen-VL family (``hub_pgen.testing.tiny_qwen``), CPU, no retries:
the worst case for JSON, so constrained decoding has to do all the work. Same requests for every row.

    python scripts/bench_json_validity.py [--n 20] [--families qwen2_vl,qwen3_vl] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def requests(n: int) -> list:
    import numpy as np
    from PIL import Image

    from hub_pgen.data import GenerationRequest, Sample
    from hub_pgen.generate.prompt import construct_prompt
    from hub_pgen.plan.taxonomy import assign_types

    rng = np.random.default_rng(0)
    out = []
    for i, (scenario, response) in enumerate(assign_types(n, seed=0)):
        s = Sample(f"s{i}", 0, "0", i, i / 3, "robot arm picks up pink lego brick",
                   ("robot arm moves towards pink lego brick",) * (i % 3),
                   "put the pink lego brick into the transparent box", scenario, response)
        images = tuple(Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(1 + i % 2))
        out.append(GenerationRequest(s, construct_prompt(s), images, seed=1000 + i))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--families", default="qwen2_vl,qwen2_5_vl,qwen3_vl,qwen3_vl_moe")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from hub_pgen.generate.qwen import TransformersBackend
    from hub_pgen.testing import tiny_model_dir

    cache = Path(tempfile.mkdtemp(prefix="json-validity-"))
    reqs = requests(args.n)
    rows = []
    for family in args.families.split(","):
        folder = str(tiny_model_dir(cache, family))
        row = {"family": family}
        for constrained in (True, False):
            backend = TransformersBackend.load(folder, device="cpu", constrained=constrained, max_retries=0)
            ok = 0
            for i in range(0, len(reqs), args.batch_size):
                ok += sum(r.ok for r in backend.generate(reqs[i:i + args.batch_size]))
            row["constrained" if constrained else "unconstrained"] = f"{ok}/{len(reqs)}"
        rows.append(row)
        print(json.dumps(row) if args.json else f"{family:14s} constrained {row['constrained']:>6s}   "
              f"unconstrained {row['unconstrained']:>6s}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
