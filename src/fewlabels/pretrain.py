"""Self-supervised pretraining: an encoder, a method (a loss) and augmentations, trained
with the one loop, with an online kNN monitor on a validation split carved from the
labeled subset (never the test set)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from . import checkpoint
from .augment import AugmentConfig, augment
from .data import Dataset, as_float, split_indices
from .encoders import build_encoder
from .errors import check_choice, check_positive
from .evaluate import features, knn_accuracy
from .methods import METHODS
from .runtime import Runtime
from .train import History, fit, shuffled_batches, warmup_cosine


@dataclass
class PretrainConfig:
    method: str = "vicreg"  # a name in fewlabels.methods.METHODS
    options: dict = field(default_factory=dict)  # keyword arguments of the method
    encoder: str = "conv"  # a name in fewlabels.encoders.ENCODERS
    encoder_options: dict = field(default_factory=lambda: {"width": 32})
    epochs: int = 10  # passes over the unlabeled pool
    batch: int = 512  # images per step (each gives the method its views)
    lr: float = 2e-3  # peak AdamW learning rate
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0

    def validate(self) -> PretrainConfig:
        check_choice("method", self.method, METHODS)
        check_positive("pretrain.epochs", self.epochs, integer=True)
        check_positive("pretrain.batch", self.batch, integer=True)
        check_positive("pretrain.lr", self.lr)
        return self


def pretrain(ds: Dataset, cfg: PretrainConfig, rt: Runtime,
             monitor_labels: torch.Tensor | None = None, progress: bool = True):
    """Pretrain an encoder on all training images of ``ds`` (labels unread).

    ``monitor_labels``: indices of a labeled subset; 80% serve as kNN references and 20% as
    queries after every epoch (``knn`` in the progress bar and history).
    Returns (encoder, method, history).
    """
    cfg.validate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        encoder = build_encoder(cfg.encoder, ds.image_shape, **cfg.encoder_options)
        method = METHODS[cfg.method](encoder, **cfg.options).to(rt.device)
    pool = as_float(ds.train_images.to(rt.device))
    n = len(pool)
    per_epoch = -(-n // cfg.batch)
    steps = cfg.epochs * per_epoch
    batches = shuffled_batches(torch.arange(n), cfg.batch,
                               torch.Generator().manual_seed(cfg.seed))
    g = torch.Generator(device=rt.device).manual_seed(cfg.seed + 1)

    def loss_fn(idx):
        x = pool[idx.to(rt.device)]
        views = [augment(x, cfg.augment, g) for _ in range(method.views)]
        return method(views, x), {}

    evaluate = None
    if monitor_labels is not None:
        ref, query = split_indices(monitor_labels, 0.8, cfg.seed)
        y = ds.train_labels.to(rt.device)

        def evaluate():
            f_ref = features(encoder, ds.train_images[ref], rt)
            f_q = features(encoder, ds.train_images[query], rt)
            method.train()
            return {"knn": knn_accuracy(f_ref, y[ref.to(rt.device)], f_q, y[query.to(rt.device)])}

    method.train()
    history = fit(list(method.parameters()), loss_fn, batches, steps=steps, lr=cfg.lr,
                  weight_decay=cfg.weight_decay, runtime=rt,
                  log_every=max(1, per_epoch // 10), evaluate=evaluate, eval_every=per_epoch,
                  desc=f"pretrain {cfg.method}", progress=progress,
                  schedule=warmup_cosine(steps, int(cfg.warmup_epochs * per_epoch)))
    encoder.eval()
    return encoder, method, history


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
