"""lerobot's ``compute_stats`` re-stated (``get_feature_stats`` / ``aggregate_stats``): the example's
``meta/stats.json`` and per-episode ``stats/`` columns are the ones lerobot writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from hub_pgen.example.spec import _QUANTILE_BINS, _QUANTILES, _STAT_ORDER

logger = logging.getLogger(__name__)



def _hist_quantile(hist: np.ndarray, edges: np.ndarray, target: float) -> float:
    cumsum = np.cumsum(hist)
    idx = int(np.searchsorted(cumsum, target))
    if idx == 0:
        return float(edges[0])
    if idx >= len(cumsum):
        return float(edges[-1])
    before = cumsum[idx - 1]
    in_bin = cumsum[idx] - before
    if in_bin == 0:
        return float(edges[idx])
    return float(edges[idx] + (target - before) / in_bin * (edges[idx + 1] - edges[idx]))


def _column_stats(values: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    """One dimension's min/max/mean/std/quantiles from distinct values and how often each occurs:
    ``RunningQuantileStats`` on a single batch (histogram quantiles, 5000 bins)."""
    n = counts.sum()
    present = values[counts > 0]
    lo, hi = float(present.min()), float(present.max())
    mean = float((values * counts).sum() / n)
    mean_sq = float((values**2 * counts).sum() / n)
    edges = np.linspace(lo - 1e-10, hi + 1e-10, _QUANTILE_BINS + 1)
    hist, _ = np.histogram(values, bins=edges, weights=counts)
    out = {"min": lo, "max": hi, "mean": mean, "std": float(np.sqrt(max(0.0, mean_sq - mean**2)))}
    for q in _QUANTILES:
        out[f"q{int(q * 100):02d}"] = _hist_quantile(hist, edges, q * n)
    return out


def _vector_stats(data: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of an (n,) or (n, d) numeric feature: shape (1,) or (d,) each, count (n,)."""
    cols = data.reshape(len(data), -1).astype(np.float64)
    per_col = [_column_stats(cols[:, j], np.ones(len(cols))) for j in range(cols.shape[1])]
    stats = {k: np.array([c[k] for c in per_col]) for k in per_col[0]}
    stats["count"] = np.array([len(data)])
    return stats


def _sample_indices(length: int) -> list[int]:
    """lerobot samples at most ~100 frames of an episode for image stats (``sample_indices``)."""
    num = max(min(100, length), min(int(length**0.75), 10_000))
    return np.round(np.linspace(0, length - 1, num)).astype(int).tolist()


def _image_stats(frames: Iterator[np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Per-channel stats of uint8 frames in [0, 1], shape (3, 1, 1); count = frames sampled."""
    hist = np.zeros((3, 256), np.int64)
    for img in frames:
        for c in range(3):
            hist[c] += np.bincount(img[..., c].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64)
    per_ch = [_column_stats(values, hist[c].astype(np.float64)) for c in range(3)]
    stats = {k: np.array([c[k] for c in per_ch]).reshape(3, 1, 1) / 255.0 for k in per_ch[0]}
    stats["count"] = np.array([n])
    return stats


def _aggregate(stats_list: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """lerobot's ``aggregate_feature_stats``: count-weighted means, pooled variance and quantiles."""
    means = np.stack([s["mean"] for s in stats_list])
    variances = np.stack([s["std"] ** 2 for s in stats_list])
    counts = np.stack([s["count"] for s in stats_list])
    total = counts.sum(axis=0)
    while counts.ndim < means.ndim:
        counts = np.expand_dims(counts, -1)
    mean = (means * counts).sum(axis=0) / total
    var = ((variances + (means - mean) ** 2) * counts).sum(axis=0) / total
    out = {"min": np.min(np.stack([s["min"] for s in stats_list]), axis=0),
           "max": np.max(np.stack([s["max"] for s in stats_list]), axis=0),
           "mean": mean, "std": np.sqrt(var), "count": total}
    for q in _STAT_ORDER[5:]:
        out[q] = (np.stack([s[q] for s in stats_list]) * counts).sum(axis=0) / total
    return out


def _tolist(stats: dict[str, np.ndarray]) -> dict[str, list]:
    return {k: stats[k].tolist() for k in _STAT_ORDER}
