"""Statistics of the new ``task_index_high_level`` column, in the source's own stat vocabulary.

Per-episode stats mirror the ``stats/<feature>/<stat>`` columns the source's episodes parquet has
for another int64 scalar feature (``task_index`` by preference), and the global stats in
``meta/stats.json`` are aggregated from them with LeRobot's formulas (count-weighted mean,
parallel variance, count-weighted quantiles, min of mins, max of maxes). Per-episode quantiles are
exact (numpy, linear) where LeRobot uses a histogram approximation; the two agree to within the
histogram's bin width.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

DEFAULT_STATS = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")
_Q = re.compile(r"^q(\d{2})$")


def episode_stats(values: np.ndarray, names: Sequence[str] = DEFAULT_STATS) -> dict[str, np.ndarray]:
    """Stats of one episode's values, each an array of shape (1,) like LeRobot's scalar features."""
    v = values.astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "min":
            out[name] = np.array([values.min()], dtype=values.dtype)
        elif name == "max":
            out[name] = np.array([values.max()], dtype=values.dtype)
        elif name == "mean":
            out[name] = np.array([v.mean()])
        elif name == "std":
            out[name] = np.array([v.std()])
        elif name == "count":
            out[name] = np.array([len(values)], dtype=np.int64)
        elif (m := _Q.match(name)) is not None:
            out[name] = np.array([np.quantile(v, int(m.group(1)) / 100.0)])
        # unknown stat names are left out rather than invented
    return out


def aggregate(per_episode: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """LeRobot's ``aggregate_feature_stats`` for one feature."""
    if not per_episode:
        return {}
    counts = np.stack([s["count"] for s in per_episode]).astype(np.float64)
    total = counts.sum(axis=0)
    out: dict[str, np.ndarray] = {}
    names = per_episode[0].keys()
    if "mean" in names:
        means = np.stack([s["mean"] for s in per_episode])
        mean = (means * counts).sum(axis=0) / total
        out["mean"] = mean
        if "std" in names:
            var = np.stack([s["std"] ** 2 for s in per_episode])
            out["std"] = np.sqrt(((var + (means - mean) ** 2) * counts).sum(axis=0) / total)
    if "min" in names:
        out["min"] = np.min(np.stack([s["min"] for s in per_episode]), axis=0)
    if "max" in names:
        out["max"] = np.max(np.stack([s["max"] for s in per_episode]), axis=0)
    if "count" in names:
        out["count"] = total.astype(np.int64)
    for name in names:
        if _Q.match(name):
            out[name] = (np.stack([s[name] for s in per_episode]) * counts).sum(axis=0) / total
    return {k: out[k] for k in names if k in out}


def to_json(stats: dict[str, np.ndarray]) -> dict[str, list]:
    return {k: v.tolist() for k, v in stats.items()}
