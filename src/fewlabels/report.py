"""The run folder's report: a results table, plots, report.md and a self-contained
report.html (images embedded), built from results.json and what the run left behind."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import matplotlib.pyplot as plt

from . import plots
from .checkpoint import atomic_write_text
from .data import as_float


def table_rows(results: dict) -> list[list[str]]:
    """Rows of the results table: arm, labels, mean ± std test accuracy, seeds, seconds."""
    seconds: dict[tuple, list[float]] = {}
    per_seed: dict[tuple, list[str]] = {}
    for r in results["runs"]:
        key = (r["arm"], r["labels"])
        seconds.setdefault(key, []).append(r["train_seconds"])
        per_seed.setdefault(key, []).append(f"{r['seed']}: {r['test_accuracy']:.4f}")
    rows = []
    for s in results["summary"]:
        key = (s["arm"], s["labels"])
        rows.append([s["arm"], str(s["labels"]), f"{s['mean']:.4f} ± {s['std']:.4f}",
                     ", ".join(per_seed[key]), f"{sum(seconds[key]) / len(seconds[key]):.1f}"])
    return rows


HEADER = ["arm", "labels", "test accuracy (mean ± std)", "per seed", "train s (mean)"]


def format_table(results: dict) -> str:
    """The results table as aligned plain text, for the terminal."""
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_table(results: dict) -> str:
    rows = [HEADER, ["---"] * len(HEADER), *table_rows(results)]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def make_plots(out_dir: Path, results: dict, *, ae=None, runs=None, dataset=None,
               pretrain_history=None) -> list[tuple]:
    """Write the PNGs; return (title, file name) pairs in report order."""
    made = [("Test accuracy per arm (error bars: std over seeds)",
             _save(plots.accuracy_bars(results["summary"], results["dataset"]),
                   out_dir / "accuracy.png"))]
    if ae is not None and ae.history.records:
        series = {k: ae.history.series(k) for k in ("loss", "val_loss")}
        made.append(("Autoencoder pretraining loss (train and validation split of the pool)",
                     _save(plots.curves({k: v for k, v in series.items() if v[0]},
                                        "autoencoder pretraining"),
                           out_dir / "pretraining.png")))
    if pretrain_history is not None and pretrain_history.records:
        series = {k: pretrain_history.series(k) for k in ("loss", "knn")}
        made.append(("Self-supervised pretraining: loss, and kNN accuracy on a validation "
                     "split of the labeled subset",
                     _save(plots.curves({k: v for k, v in series.items() if v[0]},
                                        "pretraining"), out_dir / "pretraining.png")))
    if ae is not None and dataset is not None:
        x = as_float(dataset.test_images[:12])
        made.append(("Reconstructions of test images (top: truth)",
                     _save(plots.reconstructions(x, ae.reconstruct(x).cpu(), "reconstructions"),
                           out_dir / "reconstructions.png")))
    first = {}
    for r in runs or []:
        if r.history and r.arm not in first:
            first[r.arm] = r
    if first:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for arm, r in first.items():
            epochs = [h["epoch"] for h in r.history]
            axes[0].plot(epochs, [h["loss"] for h in r.history], label=arm)
            axes[1].plot(epochs, [h["accuracy"] for h in r.history], label=arm)
        for ax, name in zip(axes, ("training loss", "training accuracy"), strict=True):
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend()
        axes[0].set_yscale("log")
        fig.tight_layout()
        seed = next(iter(first.values())).seed
        made.append((f"Learning curves on the labeled subset (seed {seed})",
                     _save(fig, out_dir / "learning_curves.png")))
    return made


def _markdown(results: dict, figures: list[tuple]) -> str:
    env = results["environment"]
    parts = [f"# fewlabels — {results['dataset']}, preset `{results['preset']}`", "",
             _markdown_table(results), "",
             f"Pretraining: {results['pretrain_seconds']:.1f} s. "
             f"Wall time: {results['wall_seconds']:.1f} s. Test accuracy is measured once per "
             "run, after training; nothing is tuned or stopped on the test set.", ""]
    for title, name in figures:
        parts += [f"## {title}", "", f"![{title}]({name})", ""]
    parts += ["## Reproducibility", "", "```json",
              json.dumps({"environment": env, "data_sha256": results.get("data_sha256"),
                          "data_source": results.get("data_source")}, indent=2),
              "```", "", "The resolved configuration is in `config.json`; the label draws are "
              "in `labels/`.", ""]
    return "\n".join(parts)


def _html(results: dict, figures: list[tuple], out_dir: Path) -> str:
    rows = [HEADER, *table_rows(results)]
    cells = "\n".join("<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{html.escape(c)}"
                                       f"</{'th' if i == 0 else 'td'}>" for c in r) + "</tr>"
                      for i, r in enumerate(rows))
    imgs = "\n".join(
        f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,"
        f"{base64.b64encode((out_dir / n).read_bytes()).decode()}'>" for t, n in figures)
    env = html.escape(json.dumps(results["environment"], indent=2))
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>fewlabels — {html.escape(results['dataset'])}</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>fewlabels — {html.escape(results['dataset'])}, preset {html.escape(results['preset'])}</h1>
<table>{cells}</table>
<p>Pretraining {results['pretrain_seconds']:.1f} s; wall time {results['wall_seconds']:.1f} s.</p>
{imgs}<h2>Reproducibility</h2><pre>{env}</pre></body></html>
"""


def write_report(out_dir: Path, results: dict, *, ae=None, runs=None, dataset=None,
                 pretrain_history=None) -> Path:
    """Write the plots, report.md and report.html into ``out_dir``; return report.md."""
    out_dir = Path(out_dir)
    figures = make_plots(out_dir, results, ae=ae, runs=runs, dataset=dataset,
                         pretrain_history=pretrain_history)
    atomic_write_text(out_dir / "report.html", _html(results, figures, out_dir))
    atomic_write_text(out_dir / "report.md", _markdown(results, figures))
    return out_dir / "report.md"
