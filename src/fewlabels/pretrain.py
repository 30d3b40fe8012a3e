"""Self-supervised pretraining: an encoder, a method (a loss) and augmentations, trained
with the one loop, with an online kNN monitor on a validation split carved from the
labeled subset (never the test set)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint, distributed
from .augment import AugmentConfig, augment, check_augment
from .data import Dataset, as_float, split_indices
from .encoders import ENCODERS, build_encoder
from .errors import UsageError, check_choice, check_fraction, check_non_negative, check_positive
from .evaluate import features, knn_accuracy
from .methods import METHODS, check_method
from .methods.scan import SelfLabelLoss
from .runtime import Runtime
from .train import (
    SCHEDULES,
    History,
    Resume,
    fit,
    shuffled_batches,
    steps_per_epoch,
    warmup_cosine,
)


@dataclass
class PretrainConfig:
    method: str = "vicreg"  # a name in fewlabels.methods.METHODS
    options: dict = field(default_factory=dict)  # keyword arguments of the method
    encoder: str = "conv"  # a name in fewlabels.encoders.ENCODERS
    encoder_options: dict = field(default_factory=dict)  # keyword arguments of the encoder
    epochs: float = 10  # passes over the unlabeled pool (a fraction is a share of one)
    pool: int = 0  # how many training images form the unlabeled pool (0: all of them)
    val_fraction: float = 0.0  # share of the pool held out: the method's loss on it is
    # logged as val_loss (the notebook's autoencoder trains on 80% and watches 20%)
    batch: int = 512  # images per step (each gives the method its views)
    lr: float = 2e-3  # peak AdamW learning rate
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine: linear warm-up, then cosine decay; constant: none
    warmup_epochs: float = 1.0  # the cosine schedule's linear warm-up
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # the augmentation policy: pretraining's views, and the arms that train on augmented
    # images use the same one
    seed: int = 0
    # optional second stage: a method that pairs each image with one of its nearest
    # neighbours in the first stage's feature space (e.g. scan); "" = none
    refine: str = ""
    refine_options: dict = field(default_factory=dict)
    refine_epochs: int = 0  # epochs of each refine round
    refine_rounds: int = 1  # rounds of (mine neighbours, train a fresh cluster head)
    refine_lr: float = 1e-3
    neighbors: int = 20  # neighbours mined per image for the refine stage
    # after the refine rounds: epochs of self-labelling with the cluster head's confident
    # predictions (SCAN's third step; needs refine: scan)
    self_label_epochs: int = 0
    self_label_threshold: float = 0.99

    def validate(self, where: str = "pretrain.") -> PretrainConfig:
        """Check every field and the methods' options; raise UsageError naming the key."""
        check_choice(f"{where}method", self.method, METHODS)
        check_choice(f"{where}encoder", self.encoder, ENCODERS)
        check_choice(f"{where}schedule", self.schedule, SCHEDULES)
        check_positive(f"{where}epochs", self.epochs)
        check_positive(f"{where}batch", self.batch, integer=True)
        check_positive(f"{where}lr", self.lr)
        check_positive(f"{where}refine_lr", self.refine_lr)
        check_positive(f"{where}neighbors", self.neighbors, integer=True)
        check_non_negative(f"{where}weight_decay", self.weight_decay)
        check_non_negative(f"{where}warmup_epochs", self.warmup_epochs)
        check_non_negative(f"{where}refine_epochs", self.refine_epochs, integer=True)
        check_non_negative(f"{where}self_label_epochs", self.self_label_epochs, integer=True)
        check_positive(f"{where}refine_rounds", self.refine_rounds, integer=True)
        check_non_negative(f"{where}pool", self.pool, integer=True,
                           hint=": a number of images, or 0 for all of them")
        check_fraction(f"{where}val_fraction", self.val_fraction, zero=True, hint=", e.g. 0.2")
        check_augment(f"{where}augment.", self.augment)
        encoder = build_encoder(self.encoder, (1, 28, 28), where=f"{where}encoder_options.",
                                **self.encoder_options)
        check_method(f"{where}options.", self.method, encoder, self.options)
        if self.refine:
            check_choice(f"{where}refine", self.refine, METHODS)
            check_method(f"{where}refine_options.", self.refine, encoder, self.refine_options)
        if self.self_label_epochs > 0 and not (self.refine == "scan" and self.refine_epochs > 0):
            raise UsageError(f"{where}self_label_epochs={self.self_label_epochs} needs a SCAN "
                             "refine stage (refine: scan, refine_epochs > 0); set it to 0 or "
                             "add that stage")
        check_fraction(f"{where}self_label_threshold", self.self_label_threshold,
                       hint=", e.g. 0.99")
        return self

    def name(self) -> str:
        """The recipe's short name: ``simclr+scan+self-label``, ``autoencoder``, ..."""
        name = f"{self.method}+{self.refine}" if self.refine and self.refine_epochs > 0 \
            else self.method
        return name + ("+self-label" if self.self_label_epochs > 0 else "")


def nearest_neighbors(feats: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
    """(N, k) indices of each row's k most cosine-similar other rows."""
    f = F.normalize(feats, dim=1)
    out = []
    for start in range(0, len(f), chunk):
        sim = f[start:start + chunk] @ f.t()
        rows = torch.arange(start, min(start + chunk, len(f)), device=f.device)
        sim[torch.arange(len(rows), device=f.device), rows] = float("-inf")
        out.append(sim.topk(k, dim=1).indices)
    return torch.cat(out)


def build_method(cfg: PretrainConfig, image_shape, device=None):
    """(encoder, method) of the recipe's first stage, initialised from ``cfg.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        encoder = build_encoder(cfg.encoder, image_shape, **cfg.encoder_options)
        method = METHODS[cfg.method](encoder, **cfg.options)
    return encoder, method.to(device) if device is not None else method


STATE_KIND = "pretraining-state"


def _saved_state(path: Path | None, cfg: PretrainConfig, ds: Dataset) -> dict | None:
    """The state an interrupted pretraining left at ``path``, if it is of this recipe and
    data; None when there is none."""
    if path is None or not Path(path).exists():
        return None
    saved = checkpoint.load_tree(path, STATE_KIND)
    same = json.loads(json.dumps({"recipe": dataclasses.asdict(cfg), **ds.provenance()}))
    if {"recipe": saved.get("recipe"), **{k: saved.get(k) for k in ds.provenance()}} != same:
        raise UsageError(f"{str(path)!r} holds an interrupted pretraining of another recipe or "
                         "dataset: pass the same options to resume it, or delete it")
    return saved


def pretrain(ds: Dataset, cfg: PretrainConfig, rt: Runtime,
             monitor_labels: torch.Tensor | None = None, progress: bool = True,
             method: nn.Module | None = None, state_path: str | Path | None = None,
             save_every: int = 200):
    """Pretrain an encoder on the training images of ``ds`` (labels unread).

    ``monitor_labels``: indices of a labeled subset; 80% serve as kNN references and 20% as
    queries after every epoch (``knn`` in the progress bar and history). ``method``: a
    first-stage method (from ``build_method``) to go on training instead of a fresh one.
    ``state_path``: where the training state is saved every ``save_every`` steps and on
    SIGINT / SIGTERM (model, optimizer, step, generators, batch order, history); if it
    holds the state of an interrupted run of the same recipe and data, training continues
    from there and ends, on a CPU, bit-identical to a run that never stopped. It is
    removed when pretraining ends.
    Returns (encoder, method of the last stage, history of all stages).
    """
    cfg.validate()
    check_positive("--save-every", save_every, integer=True)
    saved = _saved_state(Path(state_path) if state_path else None, cfg, ds)
    ranks = distributed.world()
    images = ds.train_images[:cfg.pool or None]
    n_train = len(images) - (round(cfg.val_fraction * len(images)) if cfg.val_fraction else 0)
    if ranks > 1 and (cfg.batch % ranks or n_train % cfg.batch % ranks):
        raise UsageError(f"batch={cfg.batch} and its last batch of an epoch "
                         f"({n_train % cfg.batch or cfg.batch} images) must split evenly over "
                         f"the {ranks} processes: choose a batch (and pool) divisible by "
                         f"{ranks}")
    progress = progress and distributed.is_main()
    if method is None:
        _, method = build_method(cfg, ds.image_shape)
    method.to(rt.device)
    if ranks > 1:
        distributed.convert_batchnorm(method)
    encoder = method.encoder
    pool = as_float(images.to(rt.device))
    train, held_out = (split_indices(torch.arange(len(pool)), 1 - cfg.val_fraction, cfg.seed)
                       if cfg.val_fraction > 0 else (torch.arange(len(pool)), None))
    g = torch.Generator(device=rt.device).manual_seed(cfg.seed + 1)
    checks = []
    if monitor_labels is not None:
        ref, query = split_indices(monitor_labels, 0.8, cfg.seed)
        y = ds.train_labels.to(rt.device)

        def knn(training):
            f_ref = features(encoder, ds.train_images[ref], rt)
            f_q = features(encoder, ds.train_images[query], rt)
            return {"knn": knn_accuracy(f_ref, y[ref.to(rt.device)], f_q, y[query.to(rt.device)])}

        checks.append(knn)
    if held_out is not None:
        val = held_out[:10_000].to(rt.device)
        g_val = torch.Generator(device=rt.device)

        def val_loss(training):  # the same views every time: a curve, not noise
            g_val.manual_seed(cfg.seed + 2)
            x = pool[val]
            training.eval()
            views = [augment(x, cfg.augment, g_val) for _ in range(training.views)]
            return {"val_loss": training(views, x).item()}

        checks.append(val_loss)

    def evaluate(training):  # after eval-mode checks, the stage trains on
        out = {k: v for check in checks for k, v in check(training).items()}
        training.train()
        return out

    def views_of_itself(views: int):
        def make(idx):
            x = pool[idx]
            return [augment(x, cfg.augment, g) for _ in range(views)], x
        return make

    history = History()
    number = -1  # the stage running: 0 the first method, then each refine round, self-label
    resuming_at = saved["stage"] if saved is not None else 0

    def stage(method, make_views, epochs: float, lr: float, name: str,
              neighbors: torch.Tensor | None = None) -> None:
        """One stage with the one loop: its schedule, checks once per epoch; saved as it
        goes when there is a state path; skipped when a resumed run had finished it."""
        nonlocal number
        number += 1
        if number < resuming_at:
            return
        per_epoch = steps_per_epoch(len(train), cfg.batch)
        steps = max(1, round(epochs * per_epoch))
        batches = shuffled_batches(train, cfg.batch, torch.Generator().manual_seed(cfg.seed))

        def loss_fn(idx):
            views, clean = make_views(idx.to(rt.device))  # the global batch, on every rank
            if ranks > 1:  # each keeps its share; the losses gather what they need
                views, clean = [distributed.local(v) for v in views], distributed.local(clean)
            with distributed.sharded():
                return method(views, clean), {}

        resume = None
        if state_path is not None:
            here = number

            def save(fit_state: dict) -> None:
                if not distributed.is_main():
                    return
                checkpoint.save_tree(state_path, {
                    "recipe": dataclasses.asdict(cfg), **ds.provenance(), "stage": here,
                    "method": method.state_dict(), "augment_rng": g.get_state(),
                    "torch_rng": torch.get_rng_state(), "neighbors": neighbors,
                    "history": history.records, "history_seconds": history.seconds,
                    "fit": fit_state}, STATE_KIND)

            start = None
            if saved is not None and number == resuming_at:
                method.load_state_dict(saved["method"])
                g.set_state(saved["augment_rng"])
                torch.set_rng_state(saved["torch_rng"])
                history.records, history.seconds = saved["history"], saved["history_seconds"]
                start = saved["fit"]
            resume = Resume(save, save_every, start)
        method.train()
        schedule = (warmup_cosine(steps, int(cfg.warmup_epochs * per_epoch))
                    if cfg.schedule == "cosine" else None)
        done = fit(list(method.parameters()), loss_fn, batches, steps=steps, lr=lr,
                   weight_decay=cfg.weight_decay, runtime=rt, log_every=max(1, per_epoch // 10),
                   evaluate=(lambda: evaluate(method)) if checks else None,
                   eval_every=per_epoch, desc=f"pretrain {name}", progress=progress,
                   schedule=schedule, resume=resume)
        for record in done.records:  # which stage each point of the joined curve is from
            record["phase"] = name
        _extend(history, done)

    stage(method, views_of_itself(method.views), cfg.epochs, cfg.lr, cfg.method)
    for round_ in range(cfg.refine_rounds if cfg.refine and cfg.refine_epochs > 0 else 0):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 2 + round_)
            method = METHODS[cfg.refine](encoder, **cfg.refine_options).to(rt.device)
        if ranks > 1:
            distributed.convert_batchnorm(method)
        if number + 1 < resuming_at:
            number += 1  # finished before the interruption
            continue
        # neighbours are mined again each round, in the features the last round left
        neighbors = (saved["neighbors"].to(rt.device) if number + 1 == resuming_at else
                     nearest_neighbors(features(encoder, images, rt), cfg.neighbors))

        def with_a_neighbor(idx, neighbors=neighbors):
            pick = torch.randint(0, cfg.neighbors, (len(idx),), generator=g, device=rt.device)
            x, n = pool[idx], pool[neighbors[idx, pick]]
            return [augment(x, cfg.augment, g), augment(n, cfg.augment, g)], x

        stage(method, with_a_neighbor, cfg.refine_epochs, cfg.refine_lr,
              f"{cfg.refine} round {round_ + 1}", neighbors)
    if cfg.self_label_epochs > 0:
        method = SelfLabelLoss(encoder, method.head, cfg.self_label_threshold)
        stage(method, views_of_itself(1), cfg.self_label_epochs, cfg.refine_lr, "self-label")
    if state_path is not None and distributed.is_main():
        Path(state_path).unlink(missing_ok=True)
    encoder.eval()
    method.eval()
    return encoder, method, history


def _extend(history: History, more: History) -> None:
    offset = history.records[-1]["step"] if history.records else 0
    history.records += [{**r, "step": r["step"] + offset} for r in more.records]
    history.seconds += more.seconds


def encoder_meta(cfg: PretrainConfig, ds: Dataset, history: History) -> dict:
    """What a checkpoint needs to rebuild the encoder and say where it came from."""
    return {"encoder": cfg.encoder, "encoder_options": cfg.encoder_options,
            "pretrain": dataclasses.asdict(cfg), **ds.provenance(),
            "history": history.records, "seconds": round(history.seconds, 3)}


def save_encoder(path, encoder, cfg: PretrainConfig, ds: Dataset, history: History):
    """Write the encoder alone (kind ``encoder``), with what is needed to rebuild it."""
    return checkpoint.save(path, encoder.state_dict(), "encoder",
                           encoder_meta(cfg, ds, history))


def load_encoder(path):
    """(encoder, metadata) from a file written by ``save_encoder``, or the encoder of an
    ``AutoEncoder.save`` file."""
    tensors, meta = checkpoint.load(path, ("encoder", "autoencoder"))
    with checkpoint.rebuilding(path):
        encoder = build_encoder(meta["encoder"], meta["image_shape"], **meta["encoder_options"])
        encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in tensors.items()
                                 if not k.startswith("decoder.")})
    return encoder.eval(), meta
