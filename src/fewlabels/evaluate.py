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
from .train import History, fit, shuffled_batches, warmup_cosine


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


def _predict(head: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """The class ``head`` assigns to each row of ``feats`` (on the CPU)."""
    with torch.no_grad():
        return head(feats).argmax(1).cpu()


def _fraction_right(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return (predictions == labels).float().mean().item()


def _accuracy(head: nn.Module, feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``feats`` that ``head`` assigns to their ``labels``."""
    return _fraction_right(_predict(head, feats), labels)


def _choose_on_validation(candidates: list, labels: torch.Tensor, val_fraction: float,
                          seed: int, fit, score) -> tuple:
    """Pick the candidate whose model, fit on a split of the labeled indices, scores best on
    the held-out rest; then refit it on all of them. ``fit(candidate, indices) -> (model,
    history)``, ``score(model, indices) -> accuracy``. Returns ((model, history) of the
    refit, chosen, {candidate: score})."""
    scores = {}
    if len(candidates) > 1:
        tr, va = split_indices(torch.arange(len(labels)), 1 - val_fraction, seed)
        scores = {c: score(fit(c, tr)[0], va) for c in candidates}
    best = max(scores, key=scores.get) if scores else candidates[0]
    return fit(best, torch.arange(len(labels))), best, {str(k): v for k, v in scores.items()}


def _fit_linear(base: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: ProbeConfig,
                wd: float, rt: Runtime, augmented=None) -> tuple[nn.Linear, History]:
    """Fit one linear layer on frozen, standardised features ``base``; with
    ``augmented`` (a callable), each epoch trains on features of fresh augmented views.
    Returns the layer and its training loss and accuracy (about 50 points)."""
    mean, std = base.mean(0), base.std(0) + 1e-6
    head = nn.Linear(base.shape[1], num_classes).to(rt.device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=wd)
    y = labels.to(rt.device)
    history = History()
    every = max(1, cfg.epochs // 50)
    for epoch in range(1, cfg.epochs + 1):
        f = augmented() if augmented is not None else base
        logits = head((f - mean) / std)
        loss = F.cross_entropy(logits, y)
        if epoch % every == 0 or epoch == cfg.epochs:
            history.records.append({"step": epoch, "loss": loss.item(), "accuracy": (
                logits.argmax(1) == y).float().mean().item()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    # fold the standardisation into the layer: still exactly one linear map on features
    with torch.no_grad():
        head.weight.div_(std)
        head.bias.sub_(head.weight @ mean)
    return head, history


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
    clean = features(encoder, images, rt)  # once: every fit and score reuses them
    x_float = as_float(images.to(rt.device)) if cfg.augment and aug is not None else None

    def fit(wd, idx):
        g = torch.Generator(device=rt.device).manual_seed(seed)
        augmented = None
        if x_float is not None:
            x = x_float[idx.to(rt.device)]

            def augmented():
                return features(encoder, augment(x, aug, g), rt)

        return _fit_linear(clean[idx.to(clean.device)], labels[idx], num_classes, cfg, wd, rt,
                           augmented)

    def score(head, idx):
        return _accuracy(head, clean[idx.to(clean.device)], labels[idx])

    (head, history), best, scores = _choose_on_validation(
        cfg.weight_decays, labels, cfg.val_fraction, seed, fit, score)
    predictions = _predict(head, features(encoder, test_images, rt))
    after = encoder.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed:
        raise FrozenEncoderChanged(f"the frozen encoder changed during the probe: {changed}")
    return {"test_accuracy": _fraction_right(predictions, test_labels), "weight_decay": best,
            "val_scores": scores, "head": head, "predictions": predictions,
            "history": history}


@dataclass
class SupervisedConfig:
    epochs: int = 100  # passes over the labeled training images
    batch: int = 64
    lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-3])
    # candidates, chosen on a validation split carved from the labeled subset
    weight_decay: float = 5e-4
    val_fraction: float = 0.2


def _train_from_scratch(make_encoder, images, labels, num_classes, cfg: SupervisedConfig,
                        lr: float, rt: Runtime, aug: AugmentConfig,
                        seed: int) -> tuple[nn.Module, History]:
    """The encoder plus a linear layer trained on ``images``; returns it (eval mode) and
    its training curve."""
    from .encoders import ClassifierNet

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
        logits = net(augment(x[idx], aug, g)).float()
        accuracy = (logits.argmax(1) == y[idx]).float().mean().item()
        return F.cross_entropy(logits, y[idx]), {"accuracy": accuracy}

    net.train()
    history = fit(list(net.parameters()), loss_fn,
        shuffled_batches(torch.arange(len(x)), cfg.batch, torch.Generator().manual_seed(seed)),
        steps=steps, lr=lr, weight_decay=cfg.weight_decay, runtime=rt,
        log_every=max(1, min(per_epoch, steps // 50)),
        desc="supervised", progress=False,
        schedule=warmup_cosine(steps, min(per_epoch, max(1, steps // 10))))
    return net.eval(), history


def supervised_from_scratch(make_encoder, images, labels, test_images, test_labels,
                            cfg: SupervisedConfig, rt: Runtime, aug: AugmentConfig,
                            seed: int = 0) -> dict:
    """The honest baseline: the same encoder trained from scratch on the labeled images,
    with the same augmentations; the learning rate is chosen on a validation split of the
    labeled images, then the model is retrained on all of them. Test set: once, at the end."""
    num_classes = int(max(labels.max(), test_labels.max())) + 1

    def fit(lr, idx):
        return _train_from_scratch(make_encoder, images[idx], labels[idx], num_classes, cfg,
                                   lr, rt, aug, seed)

    def score(net, idx):
        return _accuracy(net.head, features(net.encoder, images[idx], rt), labels[idx])

    (net, history), best, scores = _choose_on_validation(
        cfg.lrs, labels, cfg.val_fraction, seed, fit, score)
    predictions = _predict(net.head, features(net.encoder, test_images, rt))
    return {"test_accuracy": _fraction_right(predictions, test_labels), "lr": best,
            "val_scores": scores, "predictions": predictions, "history": history}
