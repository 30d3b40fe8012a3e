"""``fit``: the default recipe on the user's images, one classifier file out.

Pretrain on every training image (labeled and not); hold out a stratified validation
split of the labels; train each candidate arm on the rest and score it there; retrain
the best on all the labels; measure it on the test split if the data has one (only
then); save one ``Model``. Nothing reads the test split before the final predictions.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import torch

from .arms import ARMS
from .config import CompareConfig, load_preset, quick
from .data import Dataset
from .errors import (
    UsageError,
    check_choice,
    check_fraction,
    check_positive,
    check_seed,
    check_unique,
)
from .outputs import check_output_file
from .predictor import Model, model_meta
from .pretrain import pretrain
from .runtime import resolve
from .userdata import UNLABELED, has_test, load_user_data

CANDIDATES = ("probe", "finetune", "semisupervised", "supervised")  # arms that train a network
REFERENCE_POOL = 60_000  # a smaller pool gets more epochs: as many images as MNIST's pool


def stratified_split(labels: torch.Tensor, indices: torch.Tensor, fraction: float,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices: ``fraction`` of each class's ``indices`` (rounded down,
    so a class with one image keeps it for training) held out for validation."""
    g = torch.Generator().manual_seed(int(seed) + 104729)
    train, val = [], []
    for c in torch.unique(labels[indices]).tolist():
        members = indices[labels[indices] == c]
        members = members[torch.randperm(len(members), generator=g)]
        cut = int(len(members) * fraction)
        val.append(members[:cut])
        train.append(members[cut:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def adapt(cfg: CompareConfig, ds: Dataset) -> CompareConfig:
    """The recipe for this data: SCAN's clusters = its classes; a pool smaller than
    MNIST's is seen for as many images as the recipe shows MNIST (epochs scaled up);
    batches no larger than the pool."""
    p = cfg.pretrain
    if p.refine == "scan":
        p.refine_options = {**p.refine_options, "clusters": ds.num_classes}
    pool = len(ds.train_images)
    scale = max(1.0, REFERENCE_POOL / pool)
    p.epochs *= scale
    p.refine_epochs = round(p.refine_epochs * scale)  # whole epochs (a round re-mines)
    p.self_label_epochs = round(p.self_label_epochs * scale)
    p.batch = min(p.batch, pool)
    return cfg


def _check_options(arms, val_fraction: float, seed: int, out, force: bool,
                   save_every: int) -> None:
    """Every option of ``fit`` that can be checked before any data is read."""
    for arm in arms:
        check_choice("arm", arm, CANDIDATES)
    if not arms:
        raise UsageError("no arm to fit: give one or more of " + " ".join(CANDIDATES))
    check_unique("--arms", arms)
    check_fraction("--val-fraction", val_fraction)
    check_seed("--seed", seed)
    check_positive("--save-every", save_every, integer=True)
    if out is not None:
        check_output_file(out, "--out", force)


def fit(data, out: str | Path | None = None, *, arms: Sequence[str] = CANDIDATES,
        image_size: int | None = None, preset: str = "default", overrides: dict | None = None,
        quick_run: bool = False, val_fraction: float = 0.2, seed: int = 0,
        device: str = "auto", precision: str = "auto", progress: bool = True,
        log=print, force: bool = False, save_every: int = 200) -> Model:
    """Train the best classifier the labels of ``data`` allow and return it (saved to
    ``out`` when given). ``data``: an image folder, an ``.npz`` or a ``Dataset`` whose
    unlabeled images have label −1. The arm and its settings are chosen on a validation
    split of the labels only. ``out`` is checked before anything is read or trained: an
    existing file is replaced only with ``force``. The pretraining state is saved beside
    ``out`` every ``save_every`` steps; a fit run again after an interruption resumes it."""
    _check_options(arms, val_fraction, seed, out, force, save_every)
    cfg = load_preset(preset, overrides or {})
    cfg.device, cfg.precision = device, precision
    if quick_run:
        cfg = quick(cfg)
    ds = data if isinstance(data, Dataset) else load_user_data(data, image_size,
                                                               progress=progress)[0]
    cfg = adapt(cfg, ds)
    cfg.validate()
    rt = resolve(device, precision)
    start = time.perf_counter()
    labels = ds.train_labels
    labeled = (labels != UNLABELED).nonzero().flatten()
    unlabeled = len(labels) - len(labeled)
    log(f"{ds.name}: {len(labeled)} labeled and {unlabeled} unlabeled training images, "
        f"{ds.num_classes} classes, images {list(ds.image_shape)}"
        + (f", {len(ds.test_labels)} test images" if has_test(ds) else ", no test split"))
    train, val = stratified_split(labels, labeled, val_fraction, seed)
    if len(val) == 0:
        raise UsageError(f"no labeled image can be held out for validation at --val-fraction "
                         f"{val_fraction}: label at least two images a class")
    encoder = None
    if any(ARMS[a].pretrained for a in arms):
        log(f"pretraining {cfg.pretrain.name()} on {len(ds.train_images)} images "
            f"({cfg.pretrain.epochs:g} epochs)")
        # beside the model file, its pretraining state: an interrupted fit resumes there
        state = Path(f"{out}.pretraining-state") if out is not None else None
        if state is not None and state.exists():
            log(f"resuming the interrupted pretraining saved in {state}")
        encoder, _, history = pretrain(ds, cfg.pretrain, rt, progress=progress,
                                       state_path=state, save_every=save_every)
        log(f"pretrained in {history.seconds:.0f} s")
    hidden = ds.without_test()
    scores = {}
    for arm in arms:
        t = time.perf_counter()
        outcome = ARMS[arm].run(cfg.context(hidden, train, seed, encoder, rt),
                                cfg.settings(arm))
        scores[arm] = (outcome.predict(ds.train_images[val]) == labels[val]).float().mean().item()
        log(f"  {arm:<15} validation accuracy {scores[arm]:.4f} on {len(val)} held-out labeled "
            f"images ({time.perf_counter() - t:.0f} s)")
    best = max(arms, key=lambda a: scores[a])  # ties: the first given (the cheapest)
    log(f"chosen: {best}; training it again on all {len(labeled)} labeled images")
    net = ARMS[best].run(cfg.context(hidden, labeled, seed, encoder, rt),
                         cfg.settings(best)).net.cpu().float().eval()
    meta = {**model_meta(ds.classes, ds.image_shape, best, cfg.pretrain.encoder,
                         cfg.pretrain.encoder_options),
            "recipe": {"preset": preset, "pretrain": dataclasses.asdict(cfg.pretrain),
                       best: dataclasses.asdict(cfg.settings(best))},
            "validation_accuracy": scores, "validation_images": len(val),
            "labeled_images": len(labeled), "unlabeled_images": unlabeled,
            "seed": seed, "data": ds.provenance(), "source": ds.source,
            "fewlabels": version("fewlabels")}  # no timings: the same fit, the same bytes
    g = torch.Generator().manual_seed(seed)
    samples = ds.train_images[torch.randperm(len(ds.train_images), generator=g)[:16]]
    model = Model(net, meta, samples.clone())
    if has_test(ds):  # the only read of the test split, after the model is final
        accuracy = model.accuracy(ds.test_images, ds.test_labels)
        meta["test_accuracy"] = accuracy
        log(f"test accuracy {accuracy:.4f} on {len(ds.test_labels)} test images")
    else:
        meta["test_accuracy"] = None
        log("no test split: no test accuracy is claimed; the figures above are validation "
            f"accuracies on {len(val)} held-out labeled images")
    if out is not None:
        model.save(out)
        log(f"saved {out} ({time.perf_counter() - start:.0f} s in all)")
    return model
