#!/usr/bin/env python
"""What the review page costs: its size for 1,000 samples, and its time against the run that writes it.

Builds a svla_so101-shaped dataset (two 640x480 cameras, 30 fps) with ``--episodes`` episodes and
runs the template backend on it with interval sampling, so the plan has ~``--samples`` samples. The
run's time with the review page (it is written at the end of every run) is reported against the
same run's time without it, measured in the same invocation (``hub_pgen.review.write_report``
replaced by a no-op), plus the time of ``hub-pgen report`` alone.

Size: the page as written for those frames, and the same page with photo-like thumbnails (the
example's frames are flat colour and compress far better than a camera's): the text of the page as
measured plus every thumbnail at the size a 640x480 frame of smooth texture with sensor noise
(sigma 6) gets, which is more than a real camera frame of a tabletop scene.

The Rerun export (when rerun-sdk is installed) is timed on episode 0, with its bytes per logged image,
and the JPEG size of the photo-like frame as it logs it.

    python scripts/bench_report.py [--episodes 20] [--samples 1000] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def photo_like(width: int, height: int, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    low = rng.integers(0, 255, (height // 40, width // 40, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC), np.float32)
    noisy = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--frames", type=int, default=240, help="frames an episode (30 fps)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import hub_pgen.review as review_mod
    from hub_pgen import layout
    from hub_pgen import run as runner
    from hub_pgen.config import RunConfig
    from hub_pgen.errors import ModelLoadError
    from hub_pgen.example import build_example_dataset, svla_like_spec
    from hub_pgen.review.thumbs import encode

    spec = svla_like_spec(args.episodes, args.frames, width=640, height=480)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        root = build_example_dataset(Path(tmp) / "src", spec)
        total_s = args.episodes * args.frames / 30
        interval = round(total_s / args.samples, 4)

        def run(out: str) -> tuple[float, object]:
            t = time.perf_counter()
            result = runner.run(RunConfig(root=root, output_dir=Path(tmp) / out, backend="template",
                                            sampling="interval", sample_interval=interval))
            return time.perf_counter() - t, result

        real = review_mod.write_report
        review_mod.write_report = lambda *a, **k: review_mod.ReportResult(Path("-"), 0, 0, 0, 0)  # baseline
        try:
            base_s, _ = run("without")
        finally:
            review_mod.write_report = real
        with_s, result = run("with")
        page = Path(tmp) / "with" / layout.REPORT_PATH
        t = time.perf_counter()
        again = review_mod.write_report(Path(tmp) / "with", Path(tmp) / "again.html")
        report_s = time.perf_counter() - t

        rrd = {}
        try:
            from hub_pgen.review import load_review, rerun

            t = time.perf_counter()
            counts = rerun.export(load_review(Path(tmp) / "with", episodes={0}), Path(tmp) / "ep0.rrd")
            rrd = {"rrd_episode0_images": counts["frames"], "rrd_episode0_s": round(time.perf_counter() - t, 2),
                   "rrd_bytes_per_image_example_frame": round((Path(tmp) / "ep0.rrd").stat().st_size / counts["frames"]),
                   "rrd_jpeg_bytes_photo_like": len(rerun._jpeg(photo_like(640, 480), rerun.MAX_SIDE))}
        except ModelLoadError:  # rerun-sdk is optional
            pass
        html = page.read_text(encoding="utf-8")
        thumb_b64 = sum(len(m) for m in _data_uris(html))
        text_bytes = len(html.encode()) - thumb_b64
        photo, mime = encode(photo_like(640, 480))
        photo_b64 = len(base64.b64encode(photo))
        estimate = text_bytes + again.images * photo_b64
        out = {
            "samples": result.samples, "cards": again.cards, "images": again.images,
            "run_without_report_s": round(base_s, 2), "run_with_report_s": round(with_s, 2),
            "run_with_vs_without": round(with_s / base_s, 2), "report_alone_s": round(report_s, 2),
            "page_bytes": len(html.encode()), "page_text_bytes": text_bytes,
            "thumbnail_bytes_example_frame": round(thumb_b64 * 3 / 4 / max(1, again.images)),
            "thumbnail_bytes_photo_like": len(photo), "thumbnail_type": mime,
            "page_bytes_photo_like_estimate": estimate,
            "bytes_per_card_photo_like": round(estimate / max(1, again.cards)),
            **rrd,
        }
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        for k, v in out.items():
            print(f"{k:32} {v}")
    return 0


def _data_uris(html: str) -> list[str]:
    import re

    return re.findall(r'src="(data:[^"]+)"', html)


if __name__ == "__main__":
    sys.exit(main())
