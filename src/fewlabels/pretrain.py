"""Self-supervised pretraining: an encoder, a method (a loss) and augmentations, trained
with the one loop, with an online kNN monitor on a validation split carved from the
labeled subset (never the test set)."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint, distributed
from .augment import AugmentConfig, augment, check_augment
from .classifiers import features, knn_accuracy
from .data import Dataset, as_float, split_indices
from .encoders import ENCODERS, build_encoder
from .errors import (
    UsageError,
    check_choice,
    check_epochs,
    check_fraction,
    check_non_negative,
    check_positive,
)
from .methods import METHODS, check_method
from .methods.scan import SelfLabelLoss
from .runtime import Runtime
from .train import (
    SCHEDULES,
    History,
    Resume,
    loop,
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
    warmup_epochs: float = 1.0  # the cosine schedule's linear warm-up (at most half a stage)
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
        check_epochs(f"{where}epochs", self.epochs)
        check_positive(f"{where}batch", self.batch, integer=True)
        check_positive(f"{where}lr", self.lr)
        check_positive(f"{where}refine_lr", self.refine_lr)
        check_positive(f"{where}neighbors", self.neighbors, integer=True)
        check_non_negative(f"{where}weight_decay", self.weight_decay)
        check_epochs(f"{where}warmup_epochs", self.warmup_epochs, zero=True)
        check_epochs(f"{where}refine_epochs", self.refine_epochs, integer=True, zero=True)
        check_epochs(f"{where}self_label_epochs", self.self_label_epochs, integer=True,
                     zero=True)
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
    # one buffer for every chunk's similarities: a fresh (chunk, N) tensor each time was
    # paged in anew (at N = 60,000 that doubled the mining's seconds); the same product
    sims = torch.empty(min(chunk, len(f)), len(f), dtype=f.dtype, device=f.device)
    for start in range(0, len(f), chunk):
        block = f[start:start + chunk]
        sim = torch.mm(block, f.t(), out=sims[:len(block)])
        rows = torch.arange(start, start + len(block), device=f.device)
        sim[torch.arange(len(rows), device=f.device), rows] = float("-inf")
        out.append(sim.topk(k, dim=1).indices)
    return torch.cat(out)


@dataclass(frozen=True)
class Stage:
    """One stage of pretraining, as data: which method trains, for how long, at what rate.
    ``first``: the recipe's method on two views of each image; ``refine``: round ``round``
    of the refine method on an image and one of its nearest neighbours (mined again each
    round in the features the last round left); ``self-label``: SCAN's self-labelling."""

    name: str  # the phase of the joined curve: "simclr", "scan round 1", "self-label"
    kind: str  # first | refine | self-label
    epochs: float
    lr: float
    round: int = 0  # refine round, from 0


def stages(cfg: PretrainConfig) -> list[Stage]:
    """The recipe's stages, in the order they train."""
    out = [Stage(cfg.method, "first", cfg.epochs, cfg.lr)]
    for r in range(cfg.refine_rounds if cfg.refine and cfg.refine_epochs > 0 else 0):
        out.append(Stage(f"{cfg.refine} round {r + 1}", "refine", cfg.refine_epochs,
                         cfg.refine_lr, r))
    if cfg.self_label_epochs > 0:
        out.append(Stage("self-label", "self-label", cfg.self_label_epochs, cfg.refine_lr))
    return out


def build_method(cfg: PretrainConfig, image_shape, device=None, stage: Stage | None = None,
                 previous: nn.Module | None = None):
    """(encoder, method) of ``stage`` (the first stage's by default), the one way a method
    is built: the first stage builds the encoder too, initialised from ``cfg.seed``; a
    refine round a new method on ``previous``'s encoder (from ``cfg.seed + 2 + round``);
    self-labelling continues ``previous``'s cluster head."""
    stage = stage or stages(cfg)[0]
    if stage.kind == "self-label":
        method = SelfLabelLoss(previous.encoder, previous.head, cfg.self_label_threshold)
    else:
        with torch.random.fork_rng(devices=[]):
            if stage.kind == "first":
                torch.manual_seed(cfg.seed)
                encoder = build_encoder(cfg.encoder, image_shape, **cfg.encoder_options)
                method = METHODS[cfg.method](encoder, **cfg.options)
            else:
                torch.manual_seed(cfg.seed + 2 + stage.round)
                method = METHODS[cfg.refine](previous.encoder, **cfg.refine_options)
    return method.encoder, method.to(device) if device is not None else method


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


class _Pretraining:
    """What every stage shares: the pool and its training split, the augmentation
    generator, the joined history, the checks run once an epoch, and the resume state
    (where it is saved, what an interrupted run left)."""

    def __init__(self, ds: Dataset, cfg: PretrainConfig, rt: Runtime, monitor_labels,
                 progress: bool, state_path, save_every: int):
        self.ds, self.cfg, self.rt = ds, cfg, rt
        self.state_path, self.save_every = state_path, save_every
        self.saved = _saved_state(Path(state_path) if state_path else None, cfg, ds)
        self.ranks = distributed.world()
        self.images = ds.train_images[:cfg.pool or None]
        n_train = len(self.images) - (round(cfg.val_fraction * len(self.images))
                                      if cfg.val_fraction else 0)
        if self.ranks > 1 and (cfg.batch % self.ranks or n_train % cfg.batch % self.ranks):
            raise UsageError(f"batch={cfg.batch} and its last batch of an epoch "
                             f"({n_train % cfg.batch or cfg.batch} images) must split evenly "
                             f"over the {self.ranks} processes: choose a batch (and pool) "
                             f"divisible by {self.ranks}")
        self.progress = progress and distributed.is_main()
        self.pool = as_float(self.images.to(rt.device))
        self.train, self.held_out = (
            split_indices(torch.arange(len(self.pool)), 1 - cfg.val_fraction, cfg.seed)
            if cfg.val_fraction > 0 else (torch.arange(len(self.pool)), None))
        self.g = torch.Generator(device=rt.device).manual_seed(cfg.seed + 1)
        self.history = History()
        self.monitor = (split_indices(monitor_labels, 0.8, cfg.seed)
                        if monitor_labels is not None else None)
        self.resuming_at = self.saved["stage"] if self.saved is not None else 0

    def evaluate(self, method: nn.Module) -> dict:
        """The checks (kNN accuracy on the monitor labels, the held-out pool's loss) in
        eval mode; the stage then trains on."""
        out, rt, cfg = {}, self.rt, self.cfg
        if self.monitor is not None:
            ref, query = self.monitor
            y = self.ds.train_labels.to(rt.device)
            out["knn"] = knn_accuracy(features(method.encoder, self.ds.train_images[ref], rt),
                                      y[ref.to(rt.device)],
                                      features(method.encoder, self.ds.train_images[query], rt),
                                      y[query.to(rt.device)])
        if self.held_out is not None:  # the same views every time: a curve, not noise
            g_val = torch.Generator(device=rt.device).manual_seed(cfg.seed + 2)
            x = self.pool[self.held_out[:10_000].to(rt.device)]
            method.eval()
            views = [augment(x, cfg.augment, g_val) for _ in range(method.views)]
            out["val_loss"] = method(views, x).item()
        method.train()
        return out

    def views(self, stage: Stage, method: nn.Module, number: int):
        """(make_views: batch indices → (views, clean images), neighbours or None)."""
        cfg, g, pool = self.cfg, self.g, self.pool
        if stage.kind != "refine":
            def itself(idx):
                x = pool[idx]
                return [augment(x, cfg.augment, g) for _ in range(method.views)], x
            return itself, None
        neighbors = (self.saved["neighbors"].to(self.rt.device) if number == self.resuming_at
                     and self.saved is not None else
                     nearest_neighbors(features(method.encoder, self.images, self.rt),
                                       min(cfg.neighbors, len(self.images) - 1)))
        # a pool of a few images has fewer other images than cfg.neighbors: all of them

        def with_a_neighbor(idx):
            pick = torch.randint(0, neighbors.shape[1], (len(idx),), generator=g,
                                 device=g.device)
            x, n = pool[idx], pool[neighbors[idx, pick]]
            return [augment(x, cfg.augment, g), augment(n, cfg.augment, g)], x
        return with_a_neighbor, neighbors

    def resume(self, number: int, method: nn.Module, neighbors) -> Resume | None:
        """Saving as it goes (with a state path), and the interrupted stage's state put
        back into ``method``, the generators and the history when it is this one."""
        if self.state_path is None:
            return None
        cfg, history = self.cfg, self.history

        def save(fit_state: dict) -> None:
            if distributed.is_main():
                checkpoint.save_tree(self.state_path, {
                    "recipe": dataclasses.asdict(cfg), **self.ds.provenance(),
                    "stage": number, "method": method.state_dict(),
                    "augment_rng": self.g.get_state(), "torch_rng": torch.get_rng_state(),
                    "neighbors": neighbors, "history": history.records,
                    "history_seconds": history.seconds, "fit": fit_state}, STATE_KIND)

        start = None
        if self.saved is not None and number == self.resuming_at:
            method.load_state_dict(self.saved["method"])
            self.g.set_state(self.saved["augment_rng"])
            torch.set_rng_state(self.saved["torch_rng"])
            history.records, history.seconds = (self.saved["history"],
                                                self.saved["history_seconds"])
            start = self.saved["fit"]
        return Resume(save, self.save_every, start)

    def run(self, stage: Stage, number: int, method: nn.Module) -> None:
        """Train one stage with the one loop: its schedule, the checks once an epoch."""
        cfg, rt, ranks = self.cfg, self.rt, self.ranks
        started = time.perf_counter()
        make_views, neighbors = self.views(stage, method, number)
        mining = time.perf_counter() - started  # a refine round's neighbours: its seconds too
        per_epoch = steps_per_epoch(len(self.train), cfg.batch)
        steps = max(1, round(stage.epochs * per_epoch))

        def loss_fn(idx):
            views, clean = make_views(idx.to(rt.device))  # the global batch, on every rank
            if ranks > 1:  # each keeps its share; the losses gather what they need
                views, clean = [distributed.local(v) for v in views], distributed.local(clean)
            with distributed.sharded():
                return method(views, clean), {}

        resume = self.resume(number, method, neighbors)
        method.train()
        # a warm-up as long as the stage would leave it at its peak rate to the end, never
        # decayed (a short run, or warmup_epochs=100): at most half the stage warms up
        warmup = min(int(cfg.warmup_epochs * per_epoch), steps // 2)
        schedule = warmup_cosine(steps, warmup) if cfg.schedule == "cosine" else None
        checks = self.monitor is not None or self.held_out is not None
        done = loop(list(method.parameters()), loss_fn,
                   shuffled_batches(self.train, cfg.batch,
                                    torch.Generator().manual_seed(cfg.seed)),
                   steps=steps, lr=stage.lr, weight_decay=cfg.weight_decay, runtime=rt,
                   log_every=max(1, per_epoch // 10),
                   evaluate=(lambda: self.evaluate(method)) if checks else None,
                   eval_every=per_epoch, desc=f"pretrain {stage.name}",
                   progress=self.progress, schedule=schedule, resume=resume)
        for record in done.records:  # which stage each point of the joined curve is from
            record["phase"] = stage.name
        done.seconds += mining
        _extend(self.history, done)


def pretrain(ds: Dataset, cfg: PretrainConfig, rt: Runtime,
             monitor_labels: torch.Tensor | None = None, progress: bool = True,
             method: nn.Module | None = None, state_path: str | Path | None = None,
             save_every: int = 200, after_stage=None):
    """Pretrain an encoder on the training images of ``ds`` (labels unread): each of
    ``stages(cfg)`` in turn.

    ``monitor_labels``: indices of a labeled subset; 80% serve as kNN references and 20% as
    queries after every epoch (``knn`` in the progress bar and history). ``method``: a
    first-stage method (from ``build_method``) to go on training instead of a fresh one.
    ``state_path``: where the training state is saved every ``save_every`` steps and on
    SIGINT / SIGTERM (model, optimizer, step, generators, batch order, history); if it
    holds the state of an interrupted run of the same recipe and data, training continues
    from there and ends, on a CPU, bit-identical to a run that never stopped. It is
    removed when pretraining ends. ``after_stage(stage, method, history)``, if given, is
    called when each stage has trained (e.g. to keep every stage's encoder).
    Returns (encoder, method of the last stage, history of all stages).
    """
    cfg.validate()
    check_positive("--save-every", save_every, integer=True)
    run = _Pretraining(ds, cfg, rt, monitor_labels, progress, state_path, save_every)
    for number, stage in enumerate(stages(cfg)):
        if number > 0 or method is None:  # a given method is the first stage
            method = build_method(cfg, ds.image_shape, stage=stage, previous=method)[1]
        method.to(rt.device)
        if run.ranks > 1 and stage.kind != "self-label":
            distributed.convert_batchnorm(method)
        if number >= run.resuming_at:  # else finished before the interruption
            run.run(stage, number, method)
        if after_stage is not None:
            after_stage(stage, method, run.history)
    if state_path is not None and distributed.is_main():
        Path(state_path).unlink(missing_ok=True)
    method.encoder.eval()
    method.eval()
    return method.encoder, method, run.history


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
