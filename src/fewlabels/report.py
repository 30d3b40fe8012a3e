"""The run folder's report, built from ``results.json`` and what the run left beside it
(``metrics.jsonl``, saved reconstructions): tables, the answers to the notebook's two open
questions computed from the numbers, plots, ``report.md`` and a self-contained
``report.html`` (images embedded). ``fewlabels report RUN_DIR`` rebuilds it, no training.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import plots
from .arms import TUNED, arm_of, colour
from .checkpoint import atomic_write_text
from .errors import UsageError, parse_json
from .stats import unit_name

HEADER = ["dataset", "arm", "labels", "test accuracy (mean ± std)", "95% interval",
          "per seed", "train s (mean)"]
PAIRED_HEADER = ["dataset", "labels", "difference", "mean (points)", "95% interval (points)",
                 "per label draw (points)"]


def _interval(ci, scale: float = 1.0, digits: int = 4) -> str:
    return "—" if ci is None else f"[{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"


def _several_pretraining_runs(results: dict) -> bool:
    return len(results.get("pretrain_seeds") or [None]) > 1


def _unit(results: dict, seed: int, pretrain_seed: int | None) -> str:
    """A run's seed, with its pretraining run when the comparison has several."""
    return unit_name(seed, pretrain_seed if _several_pretraining_runs(results) else None)


def _mean_seconds(results: dict) -> dict[tuple, float]:
    """Mean training seconds of the runs of each (dataset, arm, label budget)."""
    seconds: dict[tuple, list[float]] = {}
    for r in results["runs"]:
        seconds.setdefault((r["dataset"], r["arm"], r["labels"]), []).append(r["train_seconds"])
    return {k: sum(v) / len(v) for k, v in seconds.items()}


def table_rows(results: dict) -> list[list[str]]:
    """Rows of the results table, one per dataset × arm × label budget."""
    seconds = _mean_seconds(results)
    per_seed: dict[tuple, list[str]] = {}
    for r in results["runs"]:
        key = (r["dataset"], r["arm"], r["labels"])
        per_seed.setdefault(key, []).append(
            f"{_unit(results, r['seed'], r.get('pretrain_seed'))}: {r['test_accuracy']:.4f}")
    rows = []
    for s in results["summary"]:
        key = (s["dataset"], s["arm"], s["labels"])
        rows.append([s["dataset"], s["arm"], str(s["labels"]),
                     f"{s['mean']:.4f} ± {s['std']:.4f}", _interval(s["ci95"]),
                     ", ".join(per_seed[key]), f"{seconds[key]:.1f}"])
    return rows


def paired_rows(results: dict) -> list[list[str]]:
    """One row per paired difference: its mean and interval over label draws, then each
    draw's difference (the mean over its pretraining runs, when there are several, each
    then listed after it as 2/p1)."""
    def per_draw(p):
        runs = p.get("per_pretraining_run") or []
        text = []
        for s, d in zip(p["seeds"], p["differences"], strict=True):
            inner = [f"{unit_name(s, r['pretrain_seed'])}: {100 * r['difference']:+.2f}"
                     for r in runs if r["seed"] == s]
            text.append(f"{s}: {100 * d:+.2f}" + (f" ({', '.join(inner)})"
                                                  if len(inner) > 1 else ""))
        return ", ".join(text)

    return [[p["dataset"], str(p["labels"]), f"{p['a']} − {p['b']}",
             f"{100 * p['mean']:+.2f}", _interval(p["ci95"], 100, 2), per_draw(p)]
            for p in results["paired"]]


def pretraining_runs_line(results: dict) -> str:
    """Which factors the intervals of the pretrained arms cover."""
    seeds = results.get("pretrain_seeds") or []
    if not any(arm_of(r["arm"]).pretrained for r in results["runs"]):
        return ""
    if len(seeds) > 1:
        return (f" The pretrained arms ran on {len(seeds)} pretraining runs (seeds "
                f"{', '.join(map(str, seeds))}) for every label draw. The unit of every "
                "mean and interval is the label draw: each draw's accuracy is the mean over "
                "its pretraining runs (a per-seed entry 2/p1 is draw 2 on pretraining run "
                "1, shown as a description), so the intervals cover label draws on these "
                "pretraining runs.")
    return (" Every pretrained arm rests on one pretraining run: its interval covers label "
            "draws only, not the spread between pretrainings (`--pretrain-seeds 0 1 2` "
            "measures that).")


def format_table(results: dict) -> str:
    """The results table as aligned plain text, for the terminal."""
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, ["---"] * len(header), *rows])


def pretraining_gains(results: dict, suffix: str = "") -> list[dict]:
    """probe − supervised on the same draws, per dataset and budget (from ``paired``);
    ``suffix="-tuned"`` for the tuned arms."""
    a, b = f"probe{suffix}", f"supervised{suffix}"
    out = []
    for p in results["paired"]:
        if {p["a"], p["b"]} == {a, b}:
            sign = 1 if p["a"] == a else -1
            ci = p["ci95"] and sorted(sign * c for c in p["ci95"])
            out.append({**p, "a": a, "b": b, "mean": sign * p["mean"],
                        "differences": [sign * d for d in p["differences"]], "ci95": ci})
    return out


def _ci(p: dict) -> str:
    return "" if p["ci95"] is None else (f" (95% interval {100 * p['ci95'][0]:+.2f} to "
                                         f"{100 * p['ci95'][1]:+.2f})")


def _points(p: dict) -> str:
    return f"{100 * p['mean']:+.2f} points at {p['labels']} labels{_ci(p)}"


def _pretraining_cost(results: dict, arm: str, dataset: str) -> float:
    """Pretraining seconds an arm depends on (paid once per dataset), 0 without."""
    return results["pretrain_seconds"].get(dataset, 0.0) if arm_of(arm).pretrained else 0.0


def _reaches(results: dict, arm: str, best: str, dataset: str, labels: int) -> bool:
    """Whether the paired 95% interval of ``arm − best`` reaches zero."""
    for p in results["paired"]:
        if (p["dataset"], p["labels"]) == (dataset, labels) and {p["a"], p["b"]} == {
                arm, best} and p["ci95"] is not None:
            return (p["ci95"][1] if p["a"] == arm else -p["ci95"][0]) >= 0
    return False


def which_arm(results: dict) -> str | None:
    """Which arm to use at each dataset × label budget: the best mean test accuracy, what
    it costs (seconds a draw, plus pretraining once for a pretrained arm), and the cheapest
    arm whose paired 95% interval against it still reaches zero."""
    seconds = _mean_seconds(results)
    drawn = [s for s in results["summary"] if not arm_of(s["arm"]).every_label]
    parts = []
    for d, labels in dict.fromkeys((s["dataset"], s["labels"]) for s in drawn):
        rows = [s for s in drawn if s["dataset"] == d and s["labels"] == labels]
        cost = {s["arm"]: (seconds[(d, s["arm"], labels)],
                           _pretraining_cost(results, s["arm"], d)) for s in rows}
        said = {s["arm"]: (f"`{s['arm']}` ({s['mean']:.4f}; {cost[s['arm']][0]:.0f} s a draw"
                           + (f" after {cost[s['arm']][1]:.0f} s of pretraining, once"
                              if cost[s["arm"]][1] else "") + ")") for s in rows}
        best = max(rows, key=lambda s: s["mean"])["arm"]
        cheaper = [s["arm"] for s in rows if sum(cost[s["arm"]]) < sum(cost[best])]
        close = sorted((a for a in cheaper if _reaches(results, a, best, d, labels)),
                       key=lambda a: sum(cost[a]))
        text = f"{d} at {labels} labels: {said[best]}"
        if close:
            text += f"; cheaper and not told apart from it by the paired interval: {said[close[0]]}"
        elif cheaper:
            text += "; no cheaper arm comes within its paired 95% interval"
        parts.append(text)
    return "**Which arm should I use?** " + "; ".join(parts) + "." if parts else None


def answers(results: dict) -> list[str]:
    """The notebook's two questions, answered in sentences computed from the numbers, after
    which arm to use."""
    gains = pretraining_gains(results)
    out = [line for line in [which_arm(results)] if line]
    if not gains:
        out.append("**Does pretraining pay off more on harder data?** Not answered by this "
                   "run: it needs both the `probe` and `supervised` arms.")
    else:
        per = {}
        for g in gains:
            per.setdefault(g["dataset"], []).append(g)
        parts = "; ".join(f"{d}: " + ", ".join(_points(g) for g in gs)
                          for d, gs in per.items())
        text = ("**Does pretraining pay off more on harder data?** The frozen probe minus "
                f"the supervised arm, on the same label draws — {parts}.")
        if len(per) > 1:
            shared = sorted(set.intersection(*({g["labels"] for g in gs}
                                               for gs in per.values())))
            for budget in shared:
                at = [g for g in gains if g["labels"] == budget]
                best = max(at, key=lambda g: g["mean"])
                worst = min(at, key=lambda g: g["mean"])
                text += (f" At {budget} labels pretraining pays off most on "
                         f"{best['dataset']} ({100 * best['mean']:+.2f} points) and least on "
                         f"{worst['dataset']} ({100 * worst['mean']:+.2f}).")
        else:
            text += (" Run more datasets (e.g. `--dataset mnist fashion-mnist mnist-hard`) "
                     "to compare.")
        out.append(text)
    question = "**Was the gain from the method or from better hyperparameters?**"
    tuned = {(g["dataset"], g["labels"]): g for g in pretraining_gains(results, TUNED)}
    pairs = [(g, tuned[(g["dataset"], g["labels"])]) for g in gains
             if (g["dataset"], g["labels"]) in tuned]
    if not pairs:
        out.append(f"{question} Not answered by this run: every arm used its preset's "
                   "hyperparameters. Run with `--tune N` to give every arm the same tuning "
                   "budget.")
        return out
    parts = "; ".join(f"{g['dataset']} at {g['labels']} labels: {100 * g['mean']:+.2f} "
                      f"points untuned, {100 * t['mean']:+.2f} with {results['tune']} trials "
                      f"per arm{_ci(t)}" for g, t in pairs)
    kept = sum(t["mean"] for _, t in pairs) / max(1e-12, sum(g["mean"] for g, _ in pairs))
    verdict = ("the gain survives an equal tuning budget: it comes from the method"
               if all(t["mean"] > 0 for _, t in pairs) and kept >= 0.5 else
               "the gain shrinks or vanishes under an equal tuning budget: much of it came "
               "from hyperparameters" if any(g["mean"] > 0 for g, _ in pairs) else
               "pretraining did not gain before tuning either")
    out.append(f"{question} Probe minus supervised — {parts}. So {verdict}.")
    return out


# ----------------------------------------------------------------------------- figures


def _save(fig, path: Path) -> str:
    plots.save_figure(fig, path)
    plt.close(fig)
    return path.name


def _read_metrics(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(parse_json(line))
        except ValueError:
            continue  # a line cut by a kill or a full disk: the curve just misses a point
    return records


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def make_plots(folder: Path, results: dict) -> list[tuple[str, str]]:
    """Write the PNGs into ``folder``; return (title, file name) pairs in report order."""
    datasets = results["datasets"]
    made = [("Test accuracy against the number of labels (error bars: 95% interval over "
             "label draws; log axis)",
             _save(plots.accuracy_vs_labels(results["summary"], datasets),
                   folder / "accuracy_vs_labels.png"))]
    gains = pretraining_gains(results) + pretraining_gains(results, TUNED)
    if gains:
        made.append(("Gain of pretraining: probe − supervised on the same label draws "
                     "(95% interval)", _save(plots.gains(gains),
                                             folder / "gains.png")))
    metrics = _read_metrics(folder)
    for name in datasets:
        classes = results["data"][name]["classes"]
        try:
            made += _curve_plots(folder, results, name, metrics)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
            raise UsageError(f"{folder / 'metrics.jsonl'} does not hold what the report's "
                             f"curves need ({type(e).__name__}: {str(e)[:80]}): it was changed "
                             "by hand; remove the changed lines, or the file (the report is "
                             "then made without curves)") from None
        saved = folder / f"{name}.reconstructions.npy"
        if saved.is_file():
            truth, recon = torch.from_numpy(np.load(saved)).float().div(255)
            made.append((f"{name}: reconstructions of test images (top: truth)",
                         _save(plots.reconstructions(truth, recon, f"{name} reconstructions"),
                               folder / f"reconstructions-{_slug(name)}.png")))
        conf = _confusions(results, name, classes)
        if conf is not None:
            made.append((f"{name}: confusion matrices at the smallest label budget "
                         "(summed over seeds; rows: true class)",
                         _save(conf, folder / f"confusion-{_slug(name)}.png")))
        fmap = results.get("feature_maps", {}).get(name)
        if fmap:
            made.append((f"{name}: t-SNE map of the pretrained encoder's features of "
                         f"{len(fmap['labels'])} test images, coloured by class",
                         _save(plots.feature_map(fmap, classes, f"{name} features"),
                               folder / f"features-{_slug(name)}.png")))
    return made


def _curve_plots(folder: Path, results: dict, name: str,
                 metrics: list[dict]) -> list[tuple[str, str]]:
    """The plots of ``name`` drawn from metrics.jsonl's records: pretraining, the ceiling's
    validation curve and the arms' learning curves."""
    made = []
    pre = [m for m in metrics if m.get("dataset") == name and m.get("stage") == "pretrain"]
    series = {k: ([m["step"] for m in pre if k in m], [m[k] for m in pre if k in m])
              for k in ("loss", "val_loss", "knn")}
    series = {k: v for k, v in series.items() if v[0]}
    phases: dict[str, float] = {}  # where each pretraining stage starts
    last = 0
    for m in pre:
        if "phase" in m:
            phases.setdefault(m["phase"], last)
        last = m["step"]
    if series:
        made.append((f"{name}: pretraining loss, and kNN accuracy on a validation split "
                     "of the labeled subset" if "knn" in series else
                     f"{name}: autoencoder pretraining loss (train and held-out pool)",
                     _save(plots.curves(series, f"{name} pretraining",
                                        phases=[(x, p) for p, x in phases.items()]),
                           folder / f"pretraining-{_slug(name)}.png")))
    ceiling = _ceiling_curve(results, name, metrics)
    if ceiling is not None:
        made.append((f"{name}: the ceiling's validation accuracy, one point an epoch (on "
                     "training labels held out from it; dotted: the rate drops tenfold). "
                     "It ends on a plateau, and its best epoch is the ceiling",
                     _save(ceiling, folder / f"ceiling-{_slug(name)}.png")))
    curves = _learning_curves(name, metrics)
    if curves is not None:
        made.append((f"{name}: learning curves on the labeled subset (first seed, "
                     "smallest budget)", _save(curves, folder / f"curves-{_slug(name)}.png")))
    return made


def _ceiling_curve(results: dict, name: str, metrics: list[dict]):
    rows = [m for m in metrics if m.get("dataset") == name and m.get("arm") == "ceiling"
            and "val_accuracy" in m]
    if not rows:
        return None
    chosen = next((r.get("chosen") or {} for r in results["runs"]
                   if r["dataset"] == name and r["arm"] == "ceiling"), {})
    epochs = [m["epoch"] for m in rows]
    phases = [(0.0, f"lr {chosen.get('lr', '')}")] + [(d, "lr ÷ 10")
                                                      for d in chosen.get("lr_drops", [])]
    return plots.curves({"validation accuracy": (epochs, [m["val_accuracy"] for m in rows]),
                         "training loss": (epochs, [m["loss"] for m in rows])},
                        f"{name} ceiling", xlabel="epoch", phases=phases)


def _learning_curves(name: str, metrics: list[dict]):
    rows = [m for m in metrics if m.get("dataset") == name and m.get("stage") == "arm"]
    if not rows:
        return None
    drawn = [m["labels"] for m in rows if not arm_of(m["arm"]).every_label]
    budget = min(drawn) if drawn else rows[0]["labels"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for arm in dict.fromkeys(m["arm"] for m in rows):
        mine = [m for m in rows if m["arm"] == arm and (m["labels"] == budget
                                                        or arm_of(arm).every_label)]
        if not mine:
            continue
        seed = mine[0]["seed"]
        mine = [m for m in mine if m["seed"] == seed]
        x = "epoch" if "epoch" in mine[0] else "step"
        axes[0].plot([m[x] / (mine[-1][x] or 1) for m in mine], [m["loss"] for m in mine],
                     label=arm, color=colour(arm))
        acc = [m for m in mine if "accuracy" in m]
        if acc:
            axes[1].plot([m[x] / (mine[-1][x] or 1) for m in acc],
                         [m["accuracy"] for m in acc], label=arm,
                         color=colour(arm))
    for ax, title in zip(axes, ("training loss", "training accuracy"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("fraction of training")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    fig.tight_layout()
    return fig


def _confusions(results: dict, name: str, classes):
    runs = [r for r in results["runs"] if r["dataset"] == name and r.get("confusion")]
    if not runs:
        return None
    small = min(r["labels"] for r in runs)
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    # at most five wide panels a row: a wider figure is shrunk to the page, unreadable
    rows, columns = plots.panel_grid(len(arms), 5)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 3.4 * rows),
                             squeeze=False)
    for ax in axes.flat[len(arms):]:
        ax.set_visible(False)
    for ax, arm in zip(axes.flat, arms, strict=False):
        mine = [r for r in runs if r["arm"] == arm]
        labels = small if any(r["labels"] == small for r in mine) else mine[0]["labels"]
        total = sum(np.asarray(r["confusion"]) for r in mine if r["labels"] == labels)
        plots.confusion(total, classes, f"{arm} ({labels} labels)", ax=ax)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- documents


def _value(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _chosen_rows(results: dict) -> list[list[str]]:
    rows = []
    for r in results["runs"]:
        chosen = dict(r.get("chosen") or {})
        tuning = chosen.pop("tuning", None)
        chosen.pop("val_scores", None)
        if tuning:
            text = (", ".join(f"{k} = {_value(v)}" for k, v in tuning["params"].items())
                    + f" (validation accuracy {tuning['val_accuracy']:.3f}, "
                      f"{tuning['trials']} trials)")
        else:
            text = ", ".join(f"{k} = {_value(v)}" for k, v in chosen.items())
        if text:
            rows.append([r["dataset"], r["arm"], str(r["labels"]), str(r["seed"]), text])
    return rows


def _tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables in order, as (section title, header, rows), for both formats;
    the results table always, the others when they have rows."""
    tables = [("Results", HEADER, table_rows(results)),
              ("Paired differences (same label draws)", PAIRED_HEADER, paired_rows(results)),
              ("Hyperparameters chosen from the training data (on the labeled validation "
               "split; semisupervised's passes from the unlabeled pool's starting "
               "confidence)",
               ["dataset", "arm", "labels", "seed", "chosen"], _chosen_rows(results))]
    return [t for i, t in enumerate(tables) if i == 0 or t[2]]


def reproducibility(results: dict) -> dict:
    """What is needed to run it again: code version, environment, seeds, data, config."""
    return {"environment": results["environment"], "seeds": results["seeds"],
            "data": {k: {"sha256": v["sha256"], "source": v["source"]}
                     for k, v in results["data"].items()},
            "config": results.get("config")}


def _summary_line(results: dict) -> str:
    pre = results["pretrain_seconds"]
    return (f"Datasets: {', '.join(results['datasets'])}; label budgets: "
            f"{', '.join(map(str, results['labels']))}; seeds: "
            f"{', '.join(map(str, results['seeds']))}"
            + (" (quick: reduced epochs)" if results.get("quick") else "")
            + f". Pretraining ({results['pretrain_method']}): "
            + ", ".join(f"{k} {v:.1f} s" for k, v in pre.items())
            + f". Wall time {results['wall_seconds']:.1f} s. Each seed is one label draw "
            "that every arm trains on; the test set is read once per run, for its final "
            "predictions — nothing is tuned, stopped or chosen on it. Label draws 100 and "
            "up are kept for choosing recipes on a development split "
            "(`benchmarks/variants.py`) and are never reported."
            + _shifts_line(results) + pretraining_runs_line(results))


def _shifts_line(results: dict) -> str:
    """What the networks' predictions are, when they are not the plain one, and what the
    averaging added over the plain prediction of the same networks (``shifts``)."""
    shifts = (results.get("config") or {}).get("shifts", 0)
    if not shifts:
        return ""
    gains = averaging_gains(results["runs"])
    moved = ("one pixel, on images whose training views shift them a whole pixel or more "
             "(`shifts=auto`)" if shifts == "auto" else
             f"{shifts} pixel{'s' if shifts > 1 else ''} (`shifts`)")
    return (f" Every network's prediction (not the pixel arms') is its softmax averaged over "
            f"the image and four copies moved {moved}"
            + ("; over the same networks' plain prediction it added " + "; ".join(
                f"{g['arm']} ({g['dataset']}, {g['labels']} labels) {g['points']:+.2f} points "
                f"(higher on {g['higher']} of {g['n']} runs, lower on {g['lower']})"
                for g in gains) if gains else "") + ".")


def averaging_gains(runs: list[dict]) -> list[dict]:
    """Per dataset, arm and label budget with a recorded ``plain_accuracy``: the mean test
    accuracy the averaged prediction adds over the plain one, in points, and on how many
    runs (draws, pretraining runs) it is higher and lower."""
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        if r.get("plain_accuracy") is not None:
            groups.setdefault((r["dataset"], r["arm"], r["labels"]), []).append(
                r["test_accuracy"] - r["plain_accuracy"])
    return [{"dataset": d, "arm": a, "labels": n, "points": 100 * float(np.mean(v)),
             "higher": sum(x > 0 for x in v), "lower": sum(x < 0 for x in v), "n": len(v)}
            for (d, a, n), v in groups.items()]


def _markdown(results: dict, figures: list[tuple[str, str]]) -> str:
    parts = [f"# fewlabels — {', '.join(results['datasets'])}, preset `{results['preset']}`",
             "", _summary_line(results), "", "## Answers", ""]
    parts += [f"- {a}" for a in answers(results)]
    parts.append("")
    for title, header, rows in _tables(results):
        parts += [f"## {title}", "", _markdown_table(header, rows), ""]
    for title, name in figures:
        parts += [f"## {title}", "", f"![{title}]({name})", ""]
    parts += ["## Reproducibility", "", "```json",
              json.dumps(reproducibility(results), indent=2), "```", "",
              "The configuration is also in `config.json`, the label draws in `labels/`, "
              "the curves in `metrics.jsonl`.", ""]
    return "\n".join(parts)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                     for r in rows)
    return f"<table><tr>{head}</tr>\n{body}</table>"


def _inline_markdown(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _html(results: dict, figures: list[tuple[str, str]], folder: Path) -> str:
    title = f"fewlabels — {', '.join(results['datasets'])}, preset {results['preset']}"
    sections = [f"<h1>{html.escape(title)}</h1>",
                f"<p>{html.escape(_summary_line(results))}</p>", "<h2>Answers</h2><ul>",
                *[f"<li>{_inline_markdown(a)}</li>" for a in answers(results)], "</ul>"]
    for t, header, rows in _tables(results):
        sections += [f"<h2>{html.escape(t)}</h2>", _html_table(header, rows)]
    for t, name in figures:
        data = base64.b64encode((folder / name).read_bytes()).decode()
        sections.append(f"<h2>{html.escape(t)}</h2>"
                        f"<img alt='{html.escape(t)}' src='data:image/png;base64,{data}'>")
    sections += ["<h2>Reproducibility</h2>",
                 f"<pre>{html.escape(json.dumps(reproducibility(results), indent=2))}</pre>"]
    body = "\n".join(sections)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;font-size:90%}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:left}}
img{{max-width:100%}}</style></head><body>
{body}
</body></html>
"""


def write_report(folder: Path, results: dict) -> Path:
    """Write the plots, report.md and report.html into ``folder``; return report.md."""
    folder = Path(folder)
    figures = make_plots(folder, results)
    atomic_write_text(folder / "report.html", _html(results, figures, folder))
    atomic_write_text(folder / "report.md", _markdown(results, figures))
    return folder / "report.md"
