"""``fit``: the default recipe on the user's images, one classifier file out.

Pretrain on every training image (labeled and not); hold out a stratified validation
split of the labels; train each candidate arm on the rest (the held-out images out of its
unlabeled pool too) and score it there; keep the best — the very network that was scored,
so its validation figures describe the model saved — or, with ``refit``, train its arm
again on all the labels; measure it on the test split if the data has one (only then);
save one ``Model``. Nothing reads the test split before the final predictions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F

from .arms import ARMS
from .classifiers import probabilities
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
from .outputs import check_output_file, output_file_lock, pretraining_state_path
from .predictor import Model, model_meta
from .pretrain import pretrain
from .runtime import resolve
from .sharing import shared_notice, times_lowered
from .stats import mcnemar_p
from .userdata import UNLABELED, has_test, load_user_data

CANDIDATES = ("probe", "finetune", "semisupervised", "supervised")  # arms that train a network
REFERENCE_POOL = 60_000  # a smaller pool gets more epochs: as many images as MNIST's pool
# ... but at most this many times the recipe's epochs: on two development digit folders
# (1,497 images, seeds 100 and 101) 16 times scored 0.9771 / 0.9477 in 66 s a fit, the
# full 40 times 0.9642 / 0.9377 in 160 s, 8 times 0.9571 / 0.9377 in 38 s
# (benchmarks/results/fit-digits-epoch-cap-development.jsonl)
MOST_SCALE = 16.0
# ``refit``'s default, off: the kept candidate against its arm trained again on every
# label, on development data — MNIST at 60 labels a class, semisupervised 0.98820 (480
# labels) against 0.98860 (600); scikit-learn's digits at 10 a class (five folders,
# benchmarks/fit_choice.py), the arm fit chose: +0.11 points kept — no gain for the time.


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


def without_images(ds: Dataset, held_out: torch.Tensor, indices: torch.Tensor
                   ) -> tuple[Dataset, torch.Tensor]:
    """``ds`` without the training images ``held_out``, and ``indices`` (none of them held
    out) renumbered into it: the candidates' data, whose unlabeled pool must not hold the
    validation images they are scored on (the semi-supervised arm would have trained on
    them, labels hidden, and scored optimistically)."""
    keep = torch.ones(len(ds.train_labels), dtype=torch.bool)
    keep[held_out] = False
    renumber = keep.long().cumsum(0) - 1
    return (dataclasses.replace(ds, train_images=ds.train_images[keep],
                                train_labels=ds.train_labels[keep]), renumber[indices])


def adapt(cfg: CompareConfig, ds: Dataset) -> CompareConfig:
    """The recipe for this data: SCAN's clusters = its classes; a pool smaller than
    MNIST's is seen for as many images as the recipe shows MNIST (epochs scaled up, at
    most ``MOST_SCALE`` times); batches no larger than the pool; ``shifts=auto`` resolved
    for its images' size."""
    cfg.shifts = cfg.shifts_for(ds.image_shape)
    p = cfg.pretrain
    if p.refine == "scan":
        p.refine_options = {**p.refine_options, "clusters": ds.num_classes}
    pool = len(ds.train_images)
    scale = min(MOST_SCALE, max(1.0, REFERENCE_POOL / pool))
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


def choose_arm(right: dict[str, torch.Tensor], losses: dict[str, float],
               alpha: float = 0.05, unlabeled_arms: Sequence[str] = ()) -> tuple[str, str]:
    """The arm to keep, and why, from each arm's per-image "was right" on the same held-out
    labeled images and its validation loss (mean cross entropy there). The most accurate
    arm wins when the images separate it from every other (exact McNemar test, p <
    ``alpha``); the arms they cannot separate from it — a tie at 1.0 on 20 images, say —
    are decided by the lower validation loss, which every image informs, not only those
    the arms disagree on; among them, ``unlabeled_arms`` (those that learn from the
    unlabeled images) come first: an arm on the labels alone wins only where the labels
    separate it. Ties in accuracy go to the first arm given."""
    accuracy = {arm: r.float().mean().item() for arm, r in right.items()}
    top = max(right, key=lambda a: accuracy[a])
    close = [a for a in right if a == top or mcnemar_p(right[top], right[a]) >= alpha]
    n = len(right[top])
    if len(right) == 1:
        return top, (f"the only arm given (validation accuracy {accuracy[top]:.4f} on "
                     f"{n} held-out images)")
    if len(close) == 1:
        return top, (f"the highest validation accuracy, {accuracy[top]:.4f}, separable on "
                     f"the {n} held-out images from every other arm (McNemar p < {alpha:g})")
    pool = [a for a in close if a in unlabeled_arms] or close
    best = min(pool, key=lambda a: losses[a])
    listed = ", ".join(f"{a} {accuracy[a]:.4f}" for a in close)
    among = ("" if pool == close else
             " among the arms that learn from the unlabeled images")
    return best, (f"{listed} cannot be told apart on {n} held-out images (McNemar p >= "
                  f"{alpha:g}); of those, the lowest validation loss{among}, "
                  f"{losses[best]:.4f}")


def fit(data, out: str | Path | None = None, *, arms: Sequence[str] = CANDIDATES,
        image_size: int | None = None, preset: str = "default", overrides: dict | None = None,
        quick_run: bool = False, val_fraction: float = 0.2, seed: int = 0,
        device: str = "auto", precision: str = "auto", progress: bool = True,
        log=print, force: bool = False, save_every: int = 200,
        refit: bool = False) -> Model:
    """Train the best classifier the labels of ``data`` allow and return it (saved to
    ``out`` when given). ``data``: an image folder, an ``.npz`` or a ``Dataset`` whose
    unlabeled images have label −1. The arm and its settings are chosen on a validation
    split of the labels only, and the candidate scored there is the model returned; with
    ``refit``, the chosen arm is trained again on every label instead (its time again; the
    validation figures then describe its candidate, not it). ``out`` is checked before
    anything is read or trained: an existing file is replaced only with ``force``. The
    pretraining state is saved beside ``out`` every ``save_every`` steps; a fit run again
    after an interruption resumes it."""
    _check_options(arms, val_fraction, seed, out, force, save_every)
    # one fit at a time onto a model file (its pretraining state is shared); checked
    # again under the lock: another fit may have saved it since the first check
    with output_file_lock(out) if out is not None else contextlib.nullcontext():
        if out is not None:
            check_output_file(out, "--out", force)
        start, lowered_before = time.perf_counter(), times_lowered()
        cfg, ds = _recipe_and_data(data, image_size, preset, overrides, quick_run, device,
                                   precision, progress)
        rt = resolve(device, precision)
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
            encoder = _pretrained(ds, cfg, rt, out, progress, save_every, log)
        hidden = ds.without_test()
        nets, right, losses = score_candidates(arms, cfg, hidden, train, val, seed, encoder,
                                               rt, log)
        best, why = choose_arm(right, losses,
                               unlabeled_arms=[a for a in arms if ARMS[a].pretrained])
        if refit:
            log(f"chosen: {best} ({why}); training it again on all {len(labeled)} labeled images")
            nets[best] = ARMS[best].run(cfg.context(hidden, labeled, seed, encoder, rt),
                                        cfg.settings(best)).net
        else:
            log(f"chosen: {best} ({why}); kept as scored, trained on {len(train)} labeled "
                f"images (--refit would train it again on all {len(labeled)})")
        scores = {arm: r.float().mean().item() for arm, r in right.items()}
        meta = {**model_meta(ds.classes, ds.image_shape, best, cfg.pretrain.encoder,
                             cfg.pretrain.encoder_options, cfg.shifts),
                "recipe": {"preset": preset, "pretrain": dataclasses.asdict(cfg.pretrain),
                           best: dataclasses.asdict(cfg.settings(best))},
                "validation_accuracy": scores, "validation_loss": losses, "choice": why,
                "validation_images": len(val), "refit": refit,
                "training_labels": len(labeled) if refit else len(train),
                "labeled_images": len(labeled), "unlabeled_images": unlabeled,
                "seed": seed, "data": ds.provenance(), "source": ds.source,
                "fewlabels": version("fewlabels")}  # no timings: the same fit, the same bytes
        model = _tested_model(nets[best], meta, ds, seed, len(val), log)
        if out is not None:
            model.save(out)
            log(f"saved {out} ({time.perf_counter() - start:.0f} s in all)")
        notice = shared_notice(times_lowered() - lowered_before)
        if notice:
            log(notice)
        return model


def _recipe_and_data(data, image_size, preset, overrides, quick_run, device, precision,
                     progress) -> tuple[CompareConfig, Dataset]:
    """The preset with ``overrides``, adapted to the data read from ``data`` and checked."""
    cfg = load_preset(preset, overrides or {})
    cfg.device, cfg.precision = device, precision
    if quick_run:
        cfg = quick(cfg)
    ds = data if isinstance(data, Dataset) else load_user_data(data, image_size,
                                                               progress=progress)[0]
    cfg = adapt(cfg, ds)
    cfg.validate()
    cfg.check_data(ds.image_shape)
    return cfg, ds


def _pretrained(ds: Dataset, cfg: CompareConfig, rt, out, progress: bool, save_every: int,
                log) -> torch.nn.Module:
    """The encoder pretrained on every training image of ``ds``, resuming the state an
    interrupted fit onto ``out`` saved."""
    log(f"pretraining {cfg.pretrain.name()} on {len(ds.train_images)} images "
        f"({cfg.pretrain.epochs:g} epochs)")
    state = pretraining_state_path(out) if out is not None else None
    if state is not None and state.exists():
        log(f"resuming the interrupted pretraining saved in {state}")
    encoder, _, history = pretrain(ds, cfg.pretrain, rt, progress=progress,
                                   state_path=state, save_every=save_every)
    log(f"pretrained in {history.seconds:.0f} s")
    return encoder


def score_candidates(arms, cfg: CompareConfig, hidden: Dataset, train: torch.Tensor,
                     val: torch.Tensor, seed: int, encoder, rt, log
                     ) -> tuple[dict, dict[str, torch.Tensor], dict[str, float]]:
    """Each arm trained on the ``train`` labels (the ``val`` images out of its pool too) and
    scored on ``val``: its network, its per-image "was right" and its validation loss (what
    ``fit`` chooses from; ``benchmarks/fit_choice.py`` scores the same candidates)."""
    scoring, scoring_train = without_images(hidden, val, train)
    labels = hidden.train_labels
    nets, right, losses = {}, {}, {}
    for arm in arms:
        t = time.perf_counter()
        outcome = ARMS[arm].run(cfg.context(scoring, scoring_train, seed, encoder, rt),
                                cfg.settings(arm))
        p = probabilities(outcome.net.encoder, outcome.net.head, hidden.train_images[val], rt,
                          cfg.shifts)
        right[arm] = p.argmax(1) == labels[val]
        losses[arm] = F.nll_loss(p.clamp_min(1e-30).log(), labels[val]).item()
        nets[arm] = outcome.net
        log(f"  {arm:<15} validation accuracy {right[arm].float().mean().item():.4f}, loss "
            f"{losses[arm]:.4f} on {len(val)} held-out labeled images "
            f"({time.perf_counter() - t:.0f} s)")
    return nets, right, losses


def _tested_model(net: torch.nn.Module, meta: dict, ds: Dataset, seed: int, validation: int,
                  log) -> Model:
    """The final ``Model`` of ``net``, scored on the test split if ``ds`` has one — the
    only read of it, after the model is final (``meta["test_accuracy"]``)."""
    g = torch.Generator().manual_seed(seed)
    samples = ds.train_images[torch.randperm(len(ds.train_images), generator=g)[:16]]
    model = Model(net.cpu().float().eval(), meta, samples.clone())
    if has_test(ds):
        accuracy = model.accuracy(ds.test_images, ds.test_labels)
        meta["test_accuracy"] = accuracy
        log(f"test accuracy {accuracy:.4f} on {len(ds.test_labels)} test images")
    else:
        meta["test_accuracy"] = None
        log("no test split: no test accuracy is claimed; the figures above are validation "
            f"accuracies on {validation} held-out labeled images")
    return model
