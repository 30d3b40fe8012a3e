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


def unit(run: dict) -> tuple[int, int | None]:
    """What one run is a sample of: its label draw, and its pretraining run where it has
    one (``pretrain_seed``; None for arms that use no pretrained encoder)."""
    return run["seed"], run.get("pretrain_seed")


def unit_name(seed: int, pretrain_seed: int | None) -> str:
    """``"2"`` for a label draw, ``"2/p1"`` for a draw on pretraining run 1."""
    return str(seed) if pretrain_seed is None else f"{seed}/p{pretrain_seed}"


def _order(u: tuple[int, int | None]) -> tuple[int, int]:
    return u[0], -1 if u[1] is None else u[1]


def summarize(runs: Iterable[dict]) -> list[dict]:
    """One entry per dataset × arm × label budget, in the order the runs came. Its interval
    covers the label draws and, for an arm run on several pretraining runs, those too
    (``pretrain_seeds``); ``by_pretrain_seed`` then describes each pretraining run alone."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(_key(r), []).append(r)
    out = []
    for (d, arm, labels), rs in groups.items():
        entry = {"dataset": d, "arm": arm, "labels": labels,
                 **describe([r["test_accuracy"] for r in rs], (0.0, 1.0))}
        seeds = sorted({r["pretrain_seed"] for r in rs if r.get("pretrain_seed") is not None})
        if seeds:
            entry["pretrain_seeds"] = seeds
        if len(seeds) > 1:
            entry["by_pretrain_seed"] = [
                {"pretrain_seed": p, **describe([r["test_accuracy"] for r in rs
                                                 if r.get("pretrain_seed") == p], (0.0, 1.0))}
                for p in seeds]
        out.append(entry)
    return out


def paired_differences(runs: Iterable[dict], first: Sequence[str] = ()) -> list[dict]:
    """For every dataset × label budget and every pair of arms that share label draws: the
    per-unit differences ``a − b`` in test accuracy and their statistics. Arms are taken
    in run order, except that those named in ``first`` come first, in that order.

    Each seed is one label draw that every arm of that seed trained on, so the difference
    removes the draw's own luck from the comparison. A unit is a label draw, or a label
    draw on one pretraining run: an arm without a pretrained encoder pairs with each
    pretraining run of the other arm on the same draw (``seeds``, ``pretrain_seeds``)."""
    by_group: dict[tuple, dict[str, dict[tuple, float]]] = {}
    for r in runs:
        arms = by_group.setdefault((r.get("dataset", ""), r["labels"]), {})
        arms.setdefault(r["arm"], {})[unit(r)] = r["test_accuracy"]
    rank = {arm: i for i, arm in enumerate(first)}
    out = []
    for (dataset, labels), arms in by_group.items():
        ordered = sorted(arms, key=lambda arm: rank.get(arm, len(rank)))  # stable
        for a, b in itertools.combinations(ordered, 2):
            pairs = {}
            for u in set(arms[a]) | set(arms[b]):
                # a draw on a pretraining run pairs with the same draw of an arm that
                # has no pretraining run
                ua = u if u in arms[a] or u[1] is None else (u[0], None)
                ub = u if u in arms[b] or u[1] is None else (u[0], None)
                if ua in arms[a] and ub in arms[b]:
                    pairs[u] = arms[a][ua] - arms[b][ub]
            if not pairs:
                continue
            units = sorted(pairs, key=_order)
            diffs = [pairs[u] for u in units]
            entry = {"dataset": dataset, "labels": labels, "a": a, "b": b,
                     "seeds": [u[0] for u in units], "differences": diffs, **describe(diffs)}
            if any(u[1] is not None for u in units):
                entry["pretrain_seeds"] = [u[1] for u in units]
            out.append(entry)
    return out
