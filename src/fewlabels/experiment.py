"""The comparison protocol: datasets × label budgets × seeds × arms.

Pretraining runs once per dataset and serves every label draw; every arm of a seed sees the
same draw; the test set is read only for each run's final predictions. The fully
supervised ceiling (all training labels) runs once per dataset.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from . import checkpoint, stats
from .config import ArmConfig, CompareConfig, to_dict
from .data import Dataset, as_float, draw_labels, load_dataset, parse_label_budget
from .encoders import build_encoder
from .errors import UsageError
from .evaluate import features, linear_probe, supervised_from_scratch
from .models import AutoEncoder, Classifier
from .pretrain import load_encoder, pretrain, save_encoder
from .runtime import environment, resolve
from .tuning import SPACES, tune


@dataclass
class Outcome:
    """What an arm runner returns: its test-set predictions and how it got there."""

    predictions: torch.Tensor
    method: str | None = None  # the pretraining method behind it, if any
    history: list | None = None  # learning curve records
    chosen: dict = field(default_factory=dict)  # hyperparameters chosen on validation


@dataclass
class Run:
    """One dataset × arm × label budget × seed and what it measured."""

    dataset: str
    arm: str
    method: str | None
    labels: int
    seed: int
    test_accuracy: float
    per_class: list[float]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    train_seconds: float
    chosen: dict
    history: list | None = None  # goes to metrics.jsonl, not results.json

    def record(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "history"}


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, k: int) -> np.ndarray:
    """(k, k) counts: row = true class, column = predicted class."""
    flat = labels.long() * k + predictions.long().cpu()
    return torch.bincount(flat, minlength=k * k).view(k, k).numpy()


def _pixels(images: torch.Tensor) -> np.ndarray:
    return images.reshape(len(images), -1).float().div(255).numpy()


def _sklearn_arm(make) -> Callable:
    def run(ds: Dataset, labeled: torch.Tensor, seed: int, cfg, model) -> Outcome:
        fitted = make(cfg.pixels, len(labeled)).fit(_pixels(ds.train_images[labeled]),
                                                    ds.train_labels[labeled].numpy())
        return Outcome(torch.from_numpy(fitted.predict(_pixels(ds.test_images))))

    return run


def _from_scratch(ds, labeled, seed, cfg: CompareConfig, settings) -> Outcome:
    if cfg.protocol == "ssl":
        p = cfg.pretrain
        r = supervised_from_scratch(
            lambda: build_encoder(p.encoder, ds.image_shape, **p.encoder_options),
            ds.train_images[labeled], ds.train_labels[labeled], ds.test_images,
            ds.test_labels, settings, resolve(cfg.device, cfg.precision), p.augment, seed)
        return Outcome(r["predictions"], history=r["history"].records,
                       chosen={"lr": r["lr"], "val_scores": r["val_scores"]})
    a = cfg.autoencoder
    clf = Classifier(len(labeled), cfg.device, a.latent_size, settings.lr, hidden=a.hidden,
                     dataset=ds, seed=seed, labeled=labeled, precision=cfg.precision)
    clf.train(settings.epochs, settings.batch, optimize_encoder=True, progress=False)
    return Outcome(clf.predict(ds.test_images), history=clf.history.records)


def _supervised(ds, labeled, seed, cfg: CompareConfig, model) -> Outcome:
    return _from_scratch(ds, labeled, seed, cfg,
                         cfg.from_scratch if cfg.protocol == "ssl" else cfg.supervised)


def _ceiling(ds, labeled, seed, cfg: CompareConfig, model) -> Outcome:
    c = cfg.ceiling
    if cfg.protocol == "notebook":  # the notebook's MLP classifier on every label
        return _from_scratch(ds, labeled, seed, cfg, ArmConfig(c.lrs[0], c.epochs, c.batch))
    return _from_scratch(ds, labeled, seed, cfg, c)


def _probe(ds, labeled, seed, cfg: CompareConfig, model) -> Outcome:
    if cfg.protocol == "ssl":
        r = linear_probe(model, ds.train_images[labeled], ds.train_labels[labeled],
                         ds.test_images, ds.test_labels, cfg.linear_probe,
                         resolve(cfg.device, cfg.precision), cfg.pretrain.augment, seed)
        return Outcome(r["predictions"], method=pretrain_name(cfg), history=r["history"].records,
                       chosen={"weight_decay": r["weight_decay"], "val_scores": r["val_scores"]})
    clf = model.to_classifier(len(labeled), cfg.probe.lr, seed=seed, labeled=labeled)
    clf.train(cfg.probe.epochs, cfg.probe.batch, optimize_encoder=False, progress=False)
    assert clf.encoder_frozen
    return Outcome(clf.predict(ds.test_images), "autoencoder", clf.history.records)


def pretrain_name(cfg: CompareConfig) -> str:
    if cfg.protocol == "notebook":
        return "autoencoder"
    p = cfg.pretrain
    name = f"{p.method}+{p.refine}" if p.refine and p.refine_epochs > 0 else p.method
    return name + ("+self-label" if p.self_label_epochs > 0 else "")


# name → fn(dataset, labeled indices, seed, config, pretrained model or None) → Outcome
ARM_RUNNERS: dict[str, Callable] = {
    "supervised": _supervised,
    "probe": _probe,
    "pixels-logreg": _sklearn_arm(lambda p, n: LogisticRegression(C=p.logreg_c, max_iter=2000)),
    "pixels-knn": _sklearn_arm(lambda p, n: KNeighborsClassifier(n_neighbors=min(p.knn_k, n))),
    "ceiling": _ceiling,
}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


class Metrics:
    """Appends curves to ``metrics.jsonl`` (one JSON object per logged point) and, when
    ``tensorboard`` names a folder, the same scalars, feature embeddings and
    reconstructions to TensorBoard."""

    def __init__(self, path: Path, tensorboard: Path | None = None):
        self.path = path
        self.writer = None
        if tensorboard is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UsageError("--tensorboard needs the tensorboard package: "
                                 "pip install tensorboard") from None
            self.writer = SummaryWriter(str(tensorboard))

    def write(self, records: list[dict] | None, **tags) -> None:
        if not records:
            return
        with self.path.open("a") as f:
            for r in records:
                f.write(json.dumps({**tags, **r}) + "\n")
        if self.writer is not None:
            prefix = "/".join(str(v) for v in tags.values())
            for r in records:
                for key, value in r.items():
                    if key not in ("step", "epoch") and isinstance(value, (int, float)):
                        self.writer.add_scalar(f"{prefix}/{key}", value, r["step"])

    def embedding(self, feats: torch.Tensor, labels: torch.Tensor, tag: str) -> None:
        if self.writer is not None:
            self.writer.add_embedding(feats, metadata=labels.tolist(), tag=tag)

    def images(self, images: torch.Tensor, tag: str) -> None:
        if self.writer is not None:
            self.writer.add_images(tag, images.clamp(0, 1))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _pretrained_model(ds: Dataset, cfg: CompareConfig, rt, budget: int, out_dir: Path,
                      pretrained, log):
    """(model, seconds, history): the pretrained encoder (ssl) or autoencoder (notebook),
    written to the run folder as ``<dataset>.encoder`` / ``<dataset>.autoencoder``."""
    if cfg.protocol == "ssl":
        if pretrained is not None:
            encoder, _ = load_encoder(pretrained)
            log(f"using the pretrained encoder {pretrained}")
            return encoder.to(rt.device), 0.0, None
        pool = min(cfg.pretrain.pool or len(ds.train_images), len(ds.train_images))
        log(f"{ds.name}: pretraining {pretrain_name(cfg)} on {pool} unlabeled images")
        monitor = draw_labels(ds.train_labels, budget, cfg.seeds[0], cfg.label_sampling)
        t = time.perf_counter()
        encoder, _, history = pretrain(ds, cfg.pretrain, rt, monitor)
        seconds = time.perf_counter() - t
        save_encoder(out_dir / f"{ds.name}.encoder", encoder, cfg.pretrain, ds, history)
        return encoder, seconds, history
    if pretrained is not None:
        log(f"using the pretrained autoencoder {pretrained}")
        ae = AutoEncoder.load(pretrained, cfg.device, dataset=ds, precision=cfg.precision)
        ae.save(out_dir / ds.name)
        return ae, 0.0, None
    a = cfg.autoencoder
    log(f"{ds.name}: pretraining the autoencoder on {len(ds.train_images)} unlabeled images")
    ae = AutoEncoder(a.train_size, cfg.device, a.latent_size, a.lr, hidden=a.hidden,
                     dataset=ds, seed=0, precision=cfg.precision)
    t = time.perf_counter()
    ae.train(a.steps, a.batch)
    seconds = time.perf_counter() - t
    ae.save(out_dir / ds.name)
    return ae, seconds, ae.history


def feature_map(f: np.ndarray, labels: torch.Tensor) -> dict:
    """A 2-D t-SNE map (van der Maaten & Hinton, 2008) of features ``f`` (N, D) of test
    images, for the report's picture only (nothing is chosen on it)."""
    from sklearn.manifold import TSNE

    xy = TSNE(2, init="pca", perplexity=min(30.0, (len(f) - 1) / 3), random_state=0
              ).fit_transform(f)
    return {"x": np.round(xy[:, 0], 3).tolist(), "y": np.round(xy[:, 1], 3).tolist(),
            "labels": labels.tolist()}


def _run_arm(arm: str, ds: Dataset, labeled: torch.Tensor, seed: int, count: int,
             cfg: CompareConfig, model, metrics: Metrics, log, *, name: str | None = None,
             tuning: dict | None = None, extra_seconds: float = 0.0) -> Run:
    """Train and test one arm on one label draw; log its curve and its line. ``name``
    labels the run (e.g. ``probe-tuned``); ``tuning`` records how ``cfg`` was tuned."""
    name = name or arm
    t = time.perf_counter()
    o = ARM_RUNNERS[arm](ds, labeled, seed, cfg, model)
    conf = confusion_matrix(o.predictions, ds.test_labels, ds.num_classes)
    per_class = (conf.diagonal() / conf.sum(1).clip(min=1)).round(4).tolist()
    chosen = {**({"tuning": tuning} if tuning else {}), **o.chosen}
    run = Run(ds.name, name, o.method, count, seed, float(conf.trace() / conf.sum()),
              per_class, conf.tolist(), time.perf_counter() - t + extra_seconds, chosen,
              o.history)
    metrics.write(o.history, dataset=ds.name, stage="arm", arm=name, labels=count, seed=seed)
    log(f"{ds.name:>13} {name:>14}  labels={count:<6} seed={seed}  "
        f"test accuracy {run.test_accuracy:.4f}  ({run.train_seconds:.1f} s)")
    return run


def _tuned_run(arm: str, ds: Dataset, labeled: torch.Tensor, seed: int, count: int,
               cfg: CompareConfig, model, metrics: Metrics, log, out_dir: Path) -> Run:
    """Tune ``arm`` on a validation split of its labels (cfg.tune trials), then train it
    on all of them with the chosen values and test it once."""
    def run_arm(arm_, view, train, seed_, cfg_, model_):
        return ARM_RUNNERS[arm_](view, train, seed_, cfg_, model_).predictions

    t = time.perf_counter()
    chosen_cfg, info = tune(arm, ds, labeled, seed, cfg, model, run_arm, cfg.tune,
                            out_dir / "tuning.db", f"{ds.name}-{arm}-{count}-seed{seed}")
    log(f"{ds.name:>13} {arm:>14}  tuned: {info['params']} "
        f"(validation accuracy {info['val_accuracy']:.4f}, {info['trials']} trials)")
    return _run_arm(arm, ds, labeled, seed, count, chosen_cfg, model, metrics, log,
                    name=f"{arm}-tuned", tuning=info, extra_seconds=time.perf_counter() - t)


def compare(cfg: CompareConfig, out_dir: Path, *, data_dir=None, pretrained=None,
            tensorboard: bool = False, log: Callable[[str], None] = print) -> dict:
    """Run the comparison described by ``cfg`` and write its run folder; return results."""
    start = time.perf_counter()
    rt = resolve(cfg.device, cfg.precision)
    if pretrained is not None and len(cfg.datasets) > 1:
        raise UsageError(f"--pretrained serves one dataset, but {len(cfg.datasets)} were given "
                         f"({' '.join(cfg.datasets)}): pass one --dataset")
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write_text(out_dir / "config.json", json.dumps(to_dict(cfg), indent=2))
    (out_dir / "metrics.jsonl").unlink(missing_ok=True)
    metrics = Metrics(out_dir / "metrics.jsonl",
                      out_dir / "tensorboard" if tensorboard else None)
    (out_dir / "labels").mkdir(exist_ok=True)
    runs: list[Run] = []
    pretrain_seconds, data, maps = {}, {}, {}
    for name in cfg.datasets:
        ds = load_dataset(name, data_dir)
        data[name] = {"sha256": ds.sha256, "source": ds.source, "image_shape": ds.image_shape,
                      "classes": list(ds.classes)}
        budgets = [parse_label_budget(b, len(ds.train_labels)) for b in cfg.labels]
        model, seconds, history = None, 0.0, None
        if "probe" in cfg.arms:
            model, seconds, history = _pretrained_model(ds, cfg, rt, budgets[0], out_dir,
                                                        pretrained, log)
            metrics.write(history.records if history else None, dataset=name,
                          stage="pretrain")
            encoder = model if cfg.protocol == "ssl" else model.encoder
            if cfg.feature_map > 0:
                f = features(encoder, ds.test_images[:cfg.feature_map], rt).cpu()
                labels = ds.test_labels[:cfg.feature_map]
                maps[name] = feature_map(f.numpy(), labels)
                metrics.embedding(f, labels, f"{name}/features")
            if cfg.protocol == "notebook" and metrics.writer is not None:
                x = as_float(ds.test_images[:16])
                metrics.images(torch.cat([x, model.reconstruct(x).cpu()]),
                               f"{name}/reconstructions (top: truth)")
        pretrain_seconds[name] = seconds

        for count in budgets:
            for seed in cfg.seeds:
                labeled = draw_labels(ds.train_labels, count, seed, cfg.label_sampling)
                checkpoint.atomic_write_text(
                    out_dir / "labels" / f"{name}-{count}-seed{seed}.json",
                    json.dumps(labeled.tolist()))
                for arm in cfg.arms:
                    if arm != "ceiling":
                        runs.append(_run_arm(arm, ds, labeled, seed, count, cfg, model,
                                             metrics, log))
                for arm in cfg.arms if cfg.tune > 0 else []:
                    if arm in SPACES:
                        runs.append(_tuned_run(arm, ds, labeled, seed, count, cfg, model,
                                               metrics, log, out_dir))
        if "ceiling" in cfg.arms:  # every label, once per dataset
            runs.append(_run_arm("ceiling", ds, torch.arange(len(ds.train_labels)),
                                 cfg.seeds[0], len(ds.train_labels), cfg, model, metrics, log))

    records = [r.record() for r in runs]
    results = {
        "preset": cfg.preset, "quick": cfg.quick, "datasets": list(cfg.datasets),
        "labels": list(cfg.labels), "seeds": list(cfg.seeds), "arms": list(cfg.arms),
        "runs": records,
        "summary": stats.summarize(records),
        "paired": stats.paired_differences([r for r in records if r["arm"] != "ceiling"],
                                           first=("probe", "probe-tuned", "supervised",
                                                  "supervised-tuned")),
        "pretrain_method": pretrain_name(cfg), "tune": cfg.tune,
        "pretrain_seconds": pretrain_seconds,
        "wall_seconds": time.perf_counter() - start,
        "environment": {**environment(rt), "git": git_commit()},
        "data": data,
        "feature_maps": maps,
        "config": to_dict(cfg),
    }
    metrics.close()
    checkpoint.atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))
    from .report import write_report

    write_report(out_dir, results)
    return results
