"""Statistics over label draws: mean, standard deviation and a 95% confidence interval per
group of runs, and paired differences between arms that saw the same label draws.

The interval is Student's t: mean ± t(0.975, n − 1) · std / √n, with the sample standard
deviation (n − 1 in the denominator). With one run there is no interval (None).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Sequence

from scipy.stats import t as student_t


def describe(values: Sequence[float], bounds: tuple[float, float] | None = None) -> dict:
    """n, mean, std and the 95% interval [low, high] (None for a single value), cut to
    ``bounds`` where given (an accuracy cannot leave [0, 1])."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to describe")
    mean = statistics.fmean(values)
    if n == 1:
        return {"n": 1, "mean": mean, "std": 0.0, "ci95": None}
    std = statistics.stdev(values)
    half = float(student_t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return {"n": n, "mean": mean, "std": std, "ci95": [low, high]}


def _key(run: dict) -> tuple:
    return run.get("dataset", ""), run["arm"], run["labels"]


def summarize(runs: Iterable[dict]) -> list[dict]:
    """One entry per dataset × arm × label budget, in the order the runs came."""
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        groups.setdefault(_key(r), []).append(r["test_accuracy"])
    return [{"dataset": d, "arm": arm, "labels": labels, **describe(accs, (0.0, 1.0))}
            for (d, arm, labels), accs in groups.items()]


def paired_differences(runs: Iterable[dict], first: Sequence[str] = ()) -> list[dict]:
    """For every dataset × label budget and every pair of arms that share seeds: the
    per-seed differences ``a − b`` in test accuracy and their statistics. Arms are taken
    in run order, except that those named in ``first`` come first, in that order.

    Each seed is one label draw that every arm of that seed trained on, so the difference
    removes the draw's own luck from the comparison."""
    by_group: dict[tuple, dict[str, dict[int, float]]] = {}
    for r in runs:
        arms = by_group.setdefault((r.get("dataset", ""), r["labels"]), {})
        arms.setdefault(r["arm"], {})[r["seed"]] = r["test_accuracy"]
    rank = {arm: i for i, arm in enumerate(first)}
    out = []
    for (dataset, labels), arms in by_group.items():
        ordered = sorted(arms, key=lambda arm: rank.get(arm, len(rank)))  # stable
        for a, b in itertools.combinations(ordered, 2):
            seeds = sorted(set(arms[a]) & set(arms[b]))
            if not seeds:
                continue
            diffs = [arms[a][s] - arms[b][s] for s in seeds]
            out.append({"dataset": dataset, "labels": labels, "a": a, "b": b, "seeds": seeds,
                        "differences": diffs, **describe(diffs)})
    return out
