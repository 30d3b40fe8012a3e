"""Self-supervised pretraining: an encoder, a method (a loss) and augmentations, trained
with the one loop, with an online kNN monitor on a validation split carved from the
labeled subset (never the test set)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import checkpoint
from .augment import AugmentConfig, augment
from .data import Dataset, as_float, split_indices
from .encoders import build_encoder
from .errors import UsageError, check_choice, check_positive
from .evaluate import features, knn_accuracy
from .methods import METHODS
from .methods.scan import SelfLabelLoss
from .runtime import Runtime
from .train import History, fit, shuffled_batches, warmup_cosine


@dataclass
class PretrainConfig:
    method: str = "vicreg"  # a name in fewlabels.methods.METHODS
    options: dict = field(default_factory=dict)  # keyword arguments of the method
    encoder: str = "conv"  # a name in fewlabels.encoders.ENCODERS
    encoder_options: dict = field(default_factory=lambda: {"width": 32})
    epochs: int = 10  # passes over the unlabeled pool
    pool: int = 0  # how many training images form the unlabeled pool (0: all of them)
    batch: int = 512  # images per step (each gives the method its views)
    lr: float = 2e-3  # peak AdamW learning rate
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay
    augment: AugmentConfig = field(default_factory=AugmentConfig)
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

    def validate(self) -> PretrainConfig:
        check_choice("method", self.method, METHODS)
        if self.refine:
            check_choice("refine method", self.refine, METHODS)
        check_positive("pretrain.epochs", self.epochs, integer=True)
        check_positive("pretrain.batch", self.batch, integer=True)
        check_positive("pretrain.lr", self.lr)
        if self.pool < 0:
            raise UsageError(f"pretrain.pool={self.pool} is not allowed: give a number of "
                             "images > 0, or 0 for all of them")
        if self.self_label_epochs > 0 and not (self.refine == "scan" and self.refine_epochs > 0):
            raise UsageError(f"pretrain.self_label_epochs={self.self_label_epochs} needs a SCAN "
                             "refine stage (refine: scan, refine_epochs > 0); set it to 0 or "
                             "add that stage")
        if not 0 < self.self_label_threshold < 1:
            raise UsageError(f"pretrain.self_label_threshold={self.self_label_threshold} must "
                             "lie in (0, 1), e.g. 0.99")
        return self


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


def pretrain(ds: Dataset, cfg: PretrainConfig, rt: Runtime,
             monitor_labels: torch.Tensor | None = None, progress: bool = True):
    """Pretrain an encoder on all training images of ``ds`` (labels unread).

    ``monitor_labels``: indices of a labeled subset; 80% serve as kNN references and 20% as
    queries after every epoch (``knn`` in the progress bar and history).
    Returns (encoder, method of the last stage, history of all stages).
    """
    cfg.validate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        encoder = build_encoder(cfg.encoder, ds.image_shape, **cfg.encoder_options)
        method = METHODS[cfg.method](encoder, **cfg.options).to(rt.device)
    images = ds.train_images[:cfg.pool or None]
    pool = as_float(images.to(rt.device))
    g = torch.Generator(device=rt.device).manual_seed(cfg.seed + 1)
    monitor = None
    if monitor_labels is not None:
        ref, query = split_indices(monitor_labels, 0.8, cfg.seed)
        y = ds.train_labels.to(rt.device)

        def monitor(training):  # after the eval-mode features, the stage trains on
            f_ref = features(encoder, ds.train_images[ref], rt)
            f_q = features(encoder, ds.train_images[query], rt)
            training.train()
            return {"knn": knn_accuracy(f_ref, y[ref.to(rt.device)], f_q, y[query.to(rt.device)])}

    def views_of_itself(views: int):
        def make(idx):
            x = pool[idx]
            return [augment(x, cfg.augment, g) for _ in range(views)], x
        return make

    def stage(method, make_views, epochs: int, lr: float, name: str) -> History:
        """One stage with the one loop: warm-up + cosine schedule, kNN monitor per epoch."""
        per_epoch = -(-len(pool) // cfg.batch)
        steps = epochs * per_epoch
        batches = shuffled_batches(torch.arange(len(pool)), cfg.batch,
                                   torch.Generator().manual_seed(cfg.seed))

        def loss_fn(idx):
            views, clean = make_views(idx.to(rt.device))
            return method(views, clean), {}

        method.train()
        done = fit(list(method.parameters()), loss_fn, batches, steps=steps, lr=lr,
                   weight_decay=cfg.weight_decay, runtime=rt, log_every=max(1, per_epoch // 10),
                   evaluate=(lambda: monitor(method)) if monitor else None, eval_every=per_epoch,
                   desc=f"pretrain {name}", progress=progress,
                   schedule=warmup_cosine(steps, int(cfg.warmup_epochs * per_epoch)))
        for record in done.records:  # which stage each point of the joined curve is from
            record["phase"] = name
        return done

    history = stage(method, views_of_itself(method.views), cfg.epochs, cfg.lr, cfg.method)
    for round_ in range(cfg.refine_rounds if cfg.refine and cfg.refine_epochs > 0 else 0):
        # neighbours are mined again each round, in the features the last round left
        neighbors = nearest_neighbors(features(encoder, images, rt), cfg.neighbors)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 2 + round_)
            method = METHODS[cfg.refine](encoder, **cfg.refine_options).to(rt.device)

        def with_a_neighbor(idx, neighbors=neighbors):
            pick = torch.randint(0, cfg.neighbors, (len(idx),), generator=g, device=rt.device)
            x, n = pool[idx], pool[neighbors[idx, pick]]
            return [augment(x, cfg.augment, g), augment(n, cfg.augment, g)], x

        _extend(history, stage(method, with_a_neighbor, cfg.refine_epochs, cfg.refine_lr,
                               f"{cfg.refine} round {round_ + 1}"))
    if cfg.self_label_epochs > 0:
        method = SelfLabelLoss(encoder, method.head, cfg.self_label_threshold)
        _extend(history, stage(method, views_of_itself(1), cfg.self_label_epochs,
                               cfg.refine_lr, "self-label"))
    encoder.eval()
    return encoder, method, history


def _extend(history: History, more: History) -> None:
    offset = history.records[-1]["step"] if history.records else 0
    history.records += [{**r, "step": r["step"] + offset} for r in more.records]
    history.seconds += more.seconds


def save_encoder(path, encoder, cfg: PretrainConfig, ds: Dataset, history: History):
    """Write the encoder alone (kind ``encoder``), with what is needed to rebuild it."""
    meta = {"encoder": cfg.encoder, "encoder_options": cfg.encoder_options,
            "image_shape": list(ds.image_shape), "pretrain": dataclasses.asdict(cfg),
            "dataset": ds.name, "data_sha256": ds.sha256, "history": history.records}
    return checkpoint.save(path, encoder.state_dict(), "encoder", meta)


def load_encoder(path):
    """(encoder, metadata) from a file written by ``save_encoder``."""
    tensors, meta = checkpoint.load(path, "encoder")
    encoder = build_encoder(meta["encoder"], meta["image_shape"], **meta["encoder_options"])
    encoder.load_state_dict(tensors)
    return encoder.eval(), meta
