"""Statistics over label draws: mean, standard deviation and a 95% confidence interval per
group of runs, and paired differences between arms that saw the same label draws; and the
confusion matrix each run's accuracy is read from.

The unit is the label draw: the draws are what was sampled independently. An arm run on
several pretraining runs (``--pretrain-seeds``) has one accuracy per draw and pretraining
run; those are averaged within the draw first, so the draw still counts once:

    x̄_s = (1/P) Σ_p x_sp            (draw s, pretraining runs p = 1..P)
    mean = (1/S) Σ_s x̄_s,  std = sqrt(Σ_s (x̄_s − mean)² / (S − 1))
    95% interval = mean ± t(0.975, S − 1) · std / √S

so S draws give S − 1 degrees of freedom however many pretraining runs each has. Counting
every (draw, pretraining run) pair as a unit would claim S·P − 1 and, for a paired
difference, reuse one draw's accuracy of an arm without pretraining P times: a narrower
interval than the design supports. The interval covers the label draws for these
pretraining runs; the spread between pretraining runs is reported beside it, per
pretraining run (``by_pretrain_seed``), as a description and not as extra units.
With one draw there is no interval (None).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from scipy.special import stdtrit  # Student's t quantile; importing scipy.stats took 1.4-2.5 s


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
    half = float(stdtrit(n - 1, 0.975)) * std / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return {"n": n, "mean": mean, "std": std, "ci95": [low, high]}


def _key(run: dict) -> tuple:
    return run.get("dataset", ""), run["arm"], run["labels"]


def unit_name(seed: int, pretrain_seed: int | None) -> str:
    """``"2"`` for a label draw, ``"2/p1"`` for a draw on pretraining run 1."""
    return str(seed) if pretrain_seed is None else f"{seed}/p{pretrain_seed}"


def draw_means(runs: Iterable[dict]) -> dict[int, float]:
    """Test accuracy per label draw (``seed``), the mean over its pretraining runs."""
    per_draw: dict[int, list[float]] = {}
    for r in runs:
        per_draw.setdefault(r["seed"], []).append(r["test_accuracy"])
    return {s: statistics.fmean(v) for s, v in sorted(per_draw.items())}


def _pretrain_seeds(runs: Iterable[dict]) -> list[int]:
    return sorted({r["pretrain_seed"] for r in runs if r.get("pretrain_seed") is not None})


def summarize(runs: Iterable[dict]) -> list[dict]:
    """One entry per dataset × arm × label budget, in the order the runs came; its
    statistics are over label draws (each the mean over its pretraining runs, see the
    module's formula). An arm on pretraining runs lists them (``pretrain_seeds``), and
    with several ``by_pretrain_seed`` describes each pretraining run alone."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(_key(r), []).append(r)
    out = []
    for (d, arm, labels), rs in groups.items():
        entry = {"dataset": d, "arm": arm, "labels": labels,
                 **describe(list(draw_means(rs).values()), (0.0, 1.0))}
        seeds = _pretrain_seeds(rs)
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
    per-draw differences ``a − b`` in test accuracy and their statistics (``seeds``,
    ``differences``, n, mean, std, ci95). Arms are taken in run order, except that those
    named in ``first`` come first, in that order.

    Each seed is one label draw that every arm of that seed trained on, so the difference
    removes the draw's own luck from the comparison. An arm on several pretraining runs
    enters with its mean over them on that draw (the module's formula): the draw is the
    unit. With pretraining runs, ``pretrain_seeds`` names them and ``per_pretraining_run``
    lists each (seed, pretrain_seed, difference) — a description, not extra units."""
    by_group: dict[tuple, dict[str, list[dict]]] = {}
    for r in runs:
        arms = by_group.setdefault((r.get("dataset", ""), r["labels"]), {})
        arms.setdefault(r["arm"], []).append(r)
    rank = {arm: i for i, arm in enumerate(first)}
    out = []
    for (dataset, labels), arms in by_group.items():
        ordered = sorted(arms, key=lambda arm: rank.get(arm, len(rank)))  # stable
        means = {arm: draw_means(rs) for arm, rs in arms.items()}
        for a, b in itertools.combinations(ordered, 2):
            seeds = sorted(set(means[a]) & set(means[b]))
            if not seeds:
                continue
            diffs = [means[a][s] - means[b][s] for s in seeds]
            entry = {"dataset": dataset, "labels": labels, "a": a, "b": b,
                     "seeds": seeds, "differences": diffs, **describe(diffs)}
            pretrain = _pretrain_seeds(arms[a] + arms[b])
            if pretrain:
                entry["pretrain_seeds"] = pretrain
                entry["per_pretraining_run"] = _per_pretraining_run(arms[a], arms[b], seeds)
            out.append(entry)
    return out


def _per_pretraining_run(a: list[dict], b: list[dict], seeds: list[int]) -> list[dict]:
    """a − b for each draw and pretraining run; an arm without pretraining runs enters
    with its one accuracy on the draw."""
    def at(rs, s, p):
        hit = [r for r in rs if r["seed"] == s and r.get("pretrain_seed") in (p, None)]
        return hit[0]["test_accuracy"] if hit else None

    out = []
    for s in seeds:
        for p in _pretrain_seeds(a + b):
            x, y = at(a, s, p), at(b, s, p)
            if x is not None and y is not None:
                out.append({"seed": s, "pretrain_seed": p, "difference": x - y})
    return out


def mcnemar_p(right_a: torch.Tensor, right_b: torch.Tensor) -> float:
    """Exact two-sided McNemar test of two classifiers on the same images (boolean
    "was right" per image): only the images where they disagree count; under the null
    each of those is a fair coin, p = min(1, 2 · P(Binomial(n, ½) ≤ min(b, c)))."""
    b = int((right_a & ~right_b).sum())
    c = int((~right_a & right_b).sum())
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, k: int) -> np.ndarray:
    """(k, k) counts: row = true class, column = predicted class."""
    flat = labels.long() * k + predictions.long().cpu()
    return torch.bincount(flat, minlength=k * k).view(k, k).numpy()
