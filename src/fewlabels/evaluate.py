"""Evaluating frozen features: kNN accuracy and the linear probe (one linear layer on a
frozen encoder, which is checked to stay unchanged — as in MoCo v3's main_lincls)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .augment import AugmentConfig, augment
from .data import as_float, split_indices
from .runtime import Runtime


def features(encoder: nn.Module, images: torch.Tensor, runtime: Runtime,
             chunk: int = 2048) -> torch.Tensor:
    """(N, C, H, W) uint8 or float images → (N, D) float32 features, eval mode, no grad."""
    was_training = encoder.training
    encoder.eval()
    out = []
    with torch.no_grad(), runtime.autocast():
        for part in images.split(chunk):
            x = part.to(runtime.device)
            x = as_float(x) if x.dtype == torch.uint8 else x.float()
            out.append(encoder.forward_features(x).float())
    encoder.train(was_training)
    return torch.cat(out)


def knn_accuracy(ref: torch.Tensor, ref_labels: torch.Tensor, query: torch.Tensor,
                 query_labels: torch.Tensor, k: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour vote (cosine similarity) of ``query`` in ``ref``."""
    sim = F.normalize(query, dim=1) @ F.normalize(ref, dim=1).t()
    k = min(k, len(ref))
    idx = sim.topk(k, dim=1).indices
    votes = F.one_hot(ref_labels[idx], int(ref_labels.max()) + 1).sum(1)
    return (votes.argmax(1) == query_labels).float().mean().item()


@dataclass
class ProbeConfig:
    epochs: int = 100  # full-batch AdamW steps per fit
    lr: float = 0.01  # AdamW learning rate
    weight_decays: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2])
    # candidates, chosen on a validation split carved from the labeled subset
    val_fraction: float = 0.2  # share of the labeled subset held out to choose weight decay
    augment: bool = False  # train on augmented views (features recomputed every epoch)


class FrozenEncoderChanged(RuntimeError):
    pass


def _fit_linear(encoder, images, labels, num_classes, cfg: ProbeConfig, wd: float,
                rt: Runtime, aug: AugmentConfig | None, seed: int) -> nn.Linear:
    """Fit one linear layer on frozen, standardised features of ``images``."""
    g = torch.Generator(device=rt.device).manual_seed(seed)
    base = features(encoder, images, rt)
    mean, std = base.mean(0), base.std(0) + 1e-6
    head = nn.Linear(base.shape[1], num_classes).to(rt.device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=wd)
    y = labels.to(rt.device)
    x_float = as_float(images.to(rt.device))
    for _ in range(cfg.epochs):
        f = features(encoder, augment(x_float, aug, g), rt) if aug is not None else base
        loss = F.cross_entropy(head((f - mean) / std), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    # fold the standardisation into the layer: still exactly one linear map on features
    with torch.no_grad():
        head.weight.div_(std)
        head.bias.sub_(head.weight @ mean)
    return head


def linear_probe(encoder: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 test_images: torch.Tensor, test_labels: torch.Tensor, cfg: ProbeConfig,
                 rt: Runtime, aug: AugmentConfig | None = None, seed: int = 0) -> dict:
    """Train a linear layer on the frozen encoder; return test accuracy and what was chosen.

    Weight decay is chosen by accuracy on a validation split of the labeled images; the
    layer is then refit on all of them. The test set is used once, at the end.
    """
    encoder.eval()
    encoder.requires_grad_(False)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    num_classes = int(max(labels.max(), test_labels.max())) + 1
    aug = aug if cfg.augment else None
    scores = {}
    if len(cfg.weight_decays) > 1:
        tr, va = split_indices(torch.arange(len(labels)), 1 - cfg.val_fraction, seed)
        val_feats = features(encoder, images[va], rt)
        for wd in cfg.weight_decays:
            head = _fit_linear(encoder, images[tr], labels[tr], num_classes, cfg, wd, rt, aug,
                               seed)
            with torch.no_grad():
                pred = head(val_feats).argmax(1).cpu()
            scores[wd] = (pred == labels[va]).float().mean().item()
    best = max(scores, key=scores.get) if scores else cfg.weight_decays[0]
    head = _fit_linear(encoder, images, labels, num_classes, cfg, best, rt, aug, seed)
    with torch.no_grad():
        pred = head(features(encoder, test_images, rt)).argmax(1).cpu()
    after = encoder.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed:
        raise FrozenEncoderChanged(f"the frozen encoder changed during the probe: {changed}")
    return {"test_accuracy": (pred == test_labels).float().mean().item(),
            "weight_decay": best, "val_scores": {str(k): v for k, v in scores.items()},
            "head": head}


@dataclass
class SupervisedConfig:
    epochs: int = 100  # passes over the labeled training images
    batch: int = 64
    lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-3])
    # candidates, chosen on a validation split carved from the labeled subset
    weight_decay: float = 5e-4
    val_fraction: float = 0.2


def _train_from_scratch(make_encoder, images, labels, num_classes, cfg: SupervisedConfig,
                        lr: float, rt: Runtime, aug: AugmentConfig, seed: int):
    from .encoders import ClassifierNet
    from .train import fit, shuffled_batches, warmup_cosine

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ClassifierNet(make_encoder(), num_classes).to(rt.device)
    x = as_float(images.to(rt.device))
    y = labels.to(rt.device)
    g = torch.Generator(device=rt.device).manual_seed(seed)
    per_epoch = -(-len(x) // cfg.batch)
    steps = cfg.epochs * per_epoch

    def loss_fn(idx):
        idx = idx.to(rt.device)
        return F.cross_entropy(net(augment(x[idx], aug, g)).float(), y[idx]), {}

    net.train()
    fit(list(net.parameters()), loss_fn,
        shuffled_batches(torch.arange(len(x)), cfg.batch, torch.Generator().manual_seed(seed)),
        steps=steps, lr=lr, weight_decay=cfg.weight_decay, runtime=rt, log_every=per_epoch,
        desc="supervised", progress=False, schedule=warmup_cosine(steps, per_epoch))
    return net.eval()


def _accuracy(net, images, labels, rt: Runtime) -> float:
    feats = features(net.encoder, images, rt)
    with torch.no_grad():
        return (net.head(feats).argmax(1).cpu() == labels).float().mean().item()


def supervised_from_scratch(make_encoder, images, labels, test_images, test_labels,
                            cfg: SupervisedConfig, rt: Runtime, aug: AugmentConfig,
                            seed: int = 0) -> dict:
    """The honest baseline: the same encoder trained from scratch on the labeled images,
    with the same augmentations; the learning rate is chosen on a validation split of the
    labeled images, then the model is retrained on all of them. Test set: once, at the end."""
    num_classes = int(max(labels.max(), test_labels.max())) + 1
    scores = {}
    if len(cfg.lrs) > 1:
        tr, va = split_indices(torch.arange(len(labels)), 1 - cfg.val_fraction, seed)
        for lr in cfg.lrs:
            net = _train_from_scratch(make_encoder, images[tr], labels[tr], num_classes, cfg,
                                      lr, rt, aug, seed)
            scores[lr] = _accuracy(net, images[va], labels[va], rt)
    best = max(scores, key=scores.get) if scores else cfg.lrs[0]
    net = _train_from_scratch(make_encoder, images, labels, num_classes, cfg, best, rt, aug,
                              seed)
    return {"test_accuracy": _accuracy(net, test_images, test_labels, rt), "lr": best,
            "val_scores": {str(k): v for k, v in scores.items()}}
