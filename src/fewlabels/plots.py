"""Figures. Each function returns a matplotlib Figure; ``show`` saves it and/or displays
it inline when running under Jupyter."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from .arms import TUNED, arm_of
from .checkpoint import atomic_write_bytes
from .data import to_uint8


def _as_hwc(image: np.ndarray) -> np.ndarray:
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)


def save_figure(fig, path: str | Path) -> None:
    """Write ``fig`` to ``path`` atomically (the format from its suffix): a kill or a full
    disk leaves the previous file or none, never half a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix[1:] or "png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def show(fig, path: str | Path | None = None):
    """Save ``fig`` to ``path`` if given; display it when running in a notebook."""
    if path is not None:
        save_figure(fig, path)
    if "inline" in matplotlib.get_backend().lower():
        from IPython.display import display  # type: ignore

        display(fig)
        plt.close(fig)
    return fig


def curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str,
           xlabel: str = "step", phases: Sequence[tuple[float, str]] = ()):
    """One panel per metric name: ``{name: (x, y)}``; loss panels use a log y axis.
    ``phases``: (first x, name) of each training stage, marked by a dotted line when there
    is more than one."""
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    for ax, (name, (x, y)) in zip(axes[0], series.items(), strict=True):
        ax.plot(x, y)
        for start, phase in phases if len(phases) > 1 else ():
            ax.axvline(start, color="grey", linestyle=":", linewidth=0.8)
            ax.text(start, 1.0, f" {phase}", transform=ax.get_xaxis_transform(), rotation=90,
                    va="top", ha="left", fontsize=6, color="grey")
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        if "loss" in name and min(y, default=1) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def reconstructions(originals: torch.Tensor, recon: torch.Tensor, title: str):
    """Ground truth (top row) beside reconstructions (bottom row), float images in [0, 1]."""
    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.8), squeeze=False)
    for row, (label, imgs) in enumerate((("truth", originals), ("reconstruction", recon))):
        for i, img in enumerate(to_uint8(imgs)):
            axes[row][i].imshow(_as_hwc(img), cmap="gray", vmin=0, vmax=255)
            axes[row][i].axis("off")
        axes[row][0].set_title(label, fontsize=8, loc="left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def panel_grid(panels: int, most_a_row: int) -> tuple[int, int]:
    """(rows, columns) for ``panels`` panels: as few rows as hold them at ``most_a_row`` a
    row, the panels spread evenly over them (at most 5 a row: 7 is 2 × 4, 14 is 3 × 5)."""
    rows = max(1, math.ceil(panels / most_a_row))
    return rows, max(1, math.ceil(panels / rows))


def predictions(images: torch.Tensor, predicted: Sequence[int], truth: Sequence[int],
                classes: Sequence[str], title: str):
    """Images with predicted and true labels (at most ten a row); wrong predictions in red."""
    rows, cols = panel_grid(len(images), 10)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, p, t in zip(axes.flat, to_uint8(images), predicted, truth, strict=False):
        ax.imshow(_as_hwc(img), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"pred {classes[p]}\ntrue {classes[t]}", fontsize=7,
                     color="black" if p == t else "red")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def accuracy_vs_labels(summary: Sequence[dict], datasets: Sequence[str]):
    """Mean test accuracy against the number of labels (log axis), one panel per dataset,
    one line per arm, error bars = 95% interval over label draws; the ceiling (every
    label) is a dashed line."""
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8), squeeze=False)
    for ax, name in zip(axes[0], datasets, strict=True):
        rows = [s for s in summary if s["dataset"] == name]
        for arm in dict.fromkeys(s["arm"] for s in rows):
            pts = sorted((s for s in rows if s["arm"] == arm), key=lambda s: s["labels"])
            tuned = arm.endswith(TUNED)
            colour = arm_of(arm).colour
            if arm_of(arm).every_label:
                ax.axhline(pts[0]["mean"], ls="--", color=colour,
                           label=f"ceiling ({pts[0]['labels']} labels)")
                continue
            err = [[s["mean"] - s["ci95"][0] if s["ci95"] else 0 for s in pts],
                   [s["ci95"][1] - s["mean"] if s["ci95"] else 0 for s in pts]]
            ax.errorbar([s["labels"] for s in pts], [s["mean"] for s in pts], yerr=err,
                        marker="s" if tuned else "o", ls="--" if tuned else "-",
                        mfc="white" if tuned else colour, capsize=3, label=arm, color=colour)
        ax.set_xscale("log")
        ax.set_xlabel("labeled training images")
        ax.set_ylabel("test accuracy")
        ax.set_title(name)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def gains(paired: Sequence[dict]):
    """``probe − supervised`` per dataset and label budget with its 95% interval (tuned
    pairs, ``probe-tuned − supervised-tuned``, are marked "tuned")."""
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * max(1, len(paired)), 3.4))
    names, means, lows, highs = [], [], [], []
    for p in paired:
        tuned = "\ntuned" if p["a"].endswith(TUNED) else ""
        names.append(f"{p['dataset']}\n{p['labels']} labels{tuned}")
        means.append(100 * p["mean"])
        lo, hi = p["ci95"] or (p["mean"], p["mean"])
        lows.append(100 * (p["mean"] - lo))
        highs.append(100 * (hi - p["mean"]))
    ax.bar(names, means, yerr=[lows, highs], capsize=4,
           color=["#4c72b0" if m >= 0 else "#c44e52" for m in means])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("probe − supervised (points)")
    ax.set_title("Gain of pretraining over training on the labels alone")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def confusion(matrix: np.ndarray, classes: Sequence[str], title: str, ax=None):
    """A confusion matrix as row-normalised colours with counts written in."""
    m = np.asarray(matrix, dtype=float)
    share = m / m.sum(1, keepdims=True).clip(min=1)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(m)):
        for j in range(len(m)):
            if m[i, j]:
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=5,
                        color="white" if share[i, j] > 0.5 else "black")
    short = [c[:6] for c in classes]
    ax.set_xticks(range(len(m)), short, rotation=90, fontsize=6)
    ax.set_yticks(range(len(m)), short, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return ax.figure if own else ax


def feature_map(xy: dict, classes: Sequence[str], title: str):
    """A 2-D map of features, one colour per class."""
    fig, ax = plt.subplots(figsize=(5, 4.4))
    labels = np.asarray(xy["labels"])
    for k, name in enumerate(classes):
        pick = labels == k
        ax.scatter(np.asarray(xy["x"])[pick], np.asarray(xy["y"])[pick], s=4, label=name,
                   color=plt.get_cmap("tab10")(k % 10))
    ax.legend(fontsize=6, markerscale=3, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    fig.tight_layout()
    return fig
