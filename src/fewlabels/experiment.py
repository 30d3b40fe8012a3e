"""The comparison protocol: arms × label budgets × seeds on one dataset.

Pretraining runs once and serves every label draw; every arm of a seed sees the same
draw; the test set is read only for each run's final number.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from . import checkpoint
from .config import CompareConfig, to_dict
from .data import Dataset, draw_labels, load_dataset, parse_label_budget
from .encoders import build_encoder
from .evaluate import linear_probe, supervised_from_scratch
from .models import AutoEncoder, Classifier
from .pretrain import load_encoder, pretrain, save_encoder
from .runtime import environment, resolve


@dataclass
class Run:
    """One arm × label budget × seed and what it measured."""

    arm: str
    method: str | None
    labels: int
    seed: int
    test_accuracy: float
    train_seconds: float
    history: list | None = None


def _pixels(images: torch.Tensor) -> np.ndarray:
    return images.reshape(len(images), -1).float().div(255).numpy()


def _sklearn_arm(make) -> Callable:
    def run(ds: Dataset, labeled: torch.Tensor, seed: int, cfg, ae):
        model = make(seed).fit(_pixels(ds.train_images[labeled]),
                               ds.train_labels[labeled].numpy())
        pred = model.predict(_pixels(ds.test_images))
        return float((pred == ds.test_labels.numpy()).mean()), None, None

    return run


def _supervised(ds, labeled, seed, cfg: CompareConfig, ae):
    if cfg.protocol == "ssl":
        p = cfg.pretrain
        r = supervised_from_scratch(
            lambda: build_encoder(p.encoder, ds.image_shape, **p.encoder_options),
            ds.train_images[labeled], ds.train_labels[labeled], ds.test_images,
            ds.test_labels, cfg.from_scratch, resolve(cfg.device, cfg.precision), p.augment,
            seed)
        return r["test_accuracy"], None, None
    a = cfg.autoencoder
    clf = Classifier(len(labeled), cfg.device, a.latent_size, cfg.supervised.lr, hidden=a.hidden,
                     dataset=ds, seed=seed, labeled=labeled, precision=cfg.precision)
    clf.train(cfg.supervised.epochs, cfg.supervised.batch, optimize_encoder=True)
    return clf.test_accuracy, None, clf.history.records


def _probe(ds, labeled, seed, cfg: CompareConfig, ae):
    if cfg.protocol == "ssl":
        r = linear_probe(ae, ds.train_images[labeled], ds.train_labels[labeled],
                         ds.test_images, ds.test_labels, cfg.linear_probe,
                         resolve(cfg.device, cfg.precision), cfg.pretrain.augment, seed)
        p = cfg.pretrain
        method = f"{p.method}+{p.refine}" if p.refine and p.refine_epochs > 0 else p.method
        return r["test_accuracy"], method, None
    clf = ae.to_classifier(len(labeled), cfg.probe.lr, seed=seed, labeled=labeled)
    clf.train(cfg.probe.epochs, cfg.probe.batch, optimize_encoder=False)
    assert clf.encoder_frozen
    return clf.test_accuracy, "autoencoder", clf.history.records


# name → fn(dataset, labeled indices, seed, config, pretrained autoencoder)
#        → (test accuracy, pretraining method or None, learning curve or None)
ARM_RUNNERS: dict[str, Callable] = {
    "supervised": _supervised,
    "probe": _probe,
    "pixels-logreg": _sklearn_arm(lambda seed: LogisticRegression(max_iter=2000)),
    "pixels-knn": _sklearn_arm(lambda seed: KNeighborsClassifier(n_neighbors=1)),
}


def summarize(runs: list[Run]) -> list[dict]:
    """Mean and standard deviation of test accuracy per arm × label budget."""
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        groups.setdefault((r.arm, r.labels), []).append(r.test_accuracy)
    return [{"arm": arm, "labels": labels, "n": len(accs), "mean": statistics.fmean(accs),
             "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
            for (arm, labels), accs in groups.items()]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def compare(cfg: CompareConfig, out_dir: Path, *, data_dir=None, pretrained=None,
            log: Callable[[str], None] = print) -> dict:
    """Run the comparison described by ``cfg`` and write its run folder; return results."""
    start = time.perf_counter()
    rt = resolve(cfg.device, cfg.precision)
    ds = load_dataset(cfg.dataset, data_dir)
    budgets = [parse_label_budget(b, len(ds.train_labels)) for b in cfg.labels]
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write_text(out_dir / "config.json", json.dumps(to_dict(cfg), indent=2))

    ae, pretrain_seconds, encoder, pretrain_history = None, 0.0, None, None
    if "probe" in cfg.arms and cfg.protocol == "ssl":
        if pretrained is not None:
            encoder, _ = load_encoder(pretrained)
            encoder.to(rt.device)
            log(f"using the pretrained encoder {pretrained}")
        else:
            log(f"pretraining {cfg.pretrain.method} on {len(ds.train_images)} unlabeled images")
            monitor = draw_labels(ds.train_labels, budgets[0], cfg.seeds[0], cfg.label_sampling)
            t = time.perf_counter()
            encoder, _, pretrain_history = pretrain(ds, cfg.pretrain, rt, monitor)
            pretrain_seconds = time.perf_counter() - t
            save_encoder(out_dir / "model.encoder", encoder, cfg.pretrain, ds, pretrain_history)
    elif "probe" in cfg.arms:
        if pretrained is not None:
            ae = AutoEncoder.load(pretrained, cfg.device, dataset=ds, precision=cfg.precision)
            log(f"using the pretrained autoencoder {pretrained}")
        else:
            a = cfg.autoencoder
            log(f"pretraining the autoencoder on {len(ds.train_images)} unlabeled images")
            ae = AutoEncoder(a.train_size, cfg.device, a.latent_size, a.lr, hidden=a.hidden,
                             dataset=ds, seed=0, precision=cfg.precision)
            t = time.perf_counter()
            ae.train(a.steps, a.batch)
            pretrain_seconds = time.perf_counter() - t
        ae.save(out_dir / "model")

    runs: list[Run] = []
    (out_dir / "labels").mkdir(exist_ok=True)
    for count in budgets:
        for seed in cfg.seeds:
            labeled = draw_labels(ds.train_labels, count, seed, cfg.label_sampling)
            checkpoint.atomic_write_text(out_dir / "labels" / f"{count}-seed{seed}.json",
                                         json.dumps(labeled.tolist()))
            for arm in cfg.arms:
                t = time.perf_counter()
                acc, method, history = ARM_RUNNERS[arm](ds, labeled, seed, cfg, encoder or ae)
                run = Run(arm, method, count, seed, acc, time.perf_counter() - t, history)
                runs.append(run)
                log(f"{arm:>14}  labels={count:<6} seed={seed}  test accuracy {acc:.4f}  "
                    f"({run.train_seconds:.1f} s)")

    results = {
        "preset": cfg.preset, "dataset": cfg.dataset,
        "runs": [{k: v for k, v in vars(r).items() if k != "history"} for r in runs],
        "summary": summarize(runs),
        "pretrain_seconds": pretrain_seconds,
        "wall_seconds": time.perf_counter() - start,
        "environment": {**environment(rt), "git": git_commit()},
        "data_sha256": ds.sha256, "data_source": ds.source,
    }
    checkpoint.atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))
    from .report import write_report

    write_report(out_dir, results, ae=ae, runs=runs, dataset=ds,
                 pretrain_history=pretrain_history)
    return results
