"""Figures. Each function returns a matplotlib Figure; ``show`` saves it and/or displays
it inline when running under Jupyter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float images in [0, 1] → uint8 by clamping and rounding (never a wrapping cast)."""
    return images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()


def _as_hwc(image: np.ndarray) -> np.ndarray:
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)


def show(fig, path: str | Path | None = None):
    """Save ``fig`` to ``path`` if given; display it when running in a notebook."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    if "inline" in matplotlib.get_backend().lower():
        from IPython.display import display  # type: ignore

        display(fig)
        plt.close(fig)
    return fig


def curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str,
           xlabel: str = "step"):
    """One panel per metric name: ``{name: (x, y)}``; loss panels use a log y axis."""
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    for ax, (name, (x, y)) in zip(axes[0], series.items(), strict=True):
        ax.plot(x, y)
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


def predictions(images: torch.Tensor, predicted: Sequence[int], truth: Sequence[int],
                classes: Sequence[str], title: str):
    """Images with predicted and true labels; wrong predictions in red."""
    n = len(images)
    cols = min(n, 10)
    rows = (n + cols - 1) // cols
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


def accuracy_bars(summary: Sequence[dict], title: str):
    """Mean test accuracy per arm with its standard deviation as an error bar."""
    fig, ax = plt.subplots(figsize=(1.2 + 1.3 * len(summary), 3.4))
    names = [f"{s['arm']}\n{s['labels']} labels" for s in summary]
    means = [s["mean"] for s in summary]
    ax.bar(names, means, yerr=[s["std"] for s in summary], capsize=4, color="#4c72b0")
    for i, s in enumerate(summary):
        ax.text(i + 0.08, s["mean"] + 0.002, f"{s['mean']:.3f}", ha="left", va="bottom",
                fontsize=8)
    low = min(means) if means else 0
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
