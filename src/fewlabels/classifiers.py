"""Classifiers from an encoder, trained with the one loop: features and kNN accuracy, the
linear probe (one linear layer on a frozen encoder, which is checked to stay unchanged — as
in MoCo v3's main_lincls) and the network trained from scratch on the labels. The arms and
the notebook API both use these; hyperparameter candidates are chosen on a validation split
carved from the labeled subset, never on the test set."""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .augment import AugmentConfig, augment
from .data import as_float, split_indices
from .encoders import ClassifierNet
from .errors import (
    UsageError,
    check_choice,
    check_epochs,
    check_fraction,
    check_non_negative,
    check_positive,
)
from .runtime import Runtime
from .sharing import ThreadShare
from .shifts import mean_softmax, shifted_copies
from .train import (
    SCHEDULES,
    History,
    batch_size,
    loop,
    shuffled_batches,
    steps_per_epoch,
    warmup_cosine,
)


def features(encoder: nn.Module, images: torch.Tensor, runtime: Runtime,
             chunk: int = 256) -> torch.Tensor:
    """(N, C, H, W) uint8 or float images → (N, D) float32 features, eval mode, no grad.
    ``chunk``: images a forward pass; on a 2-core CPU 256 ran the conv encoder at 4,493
    images a second against 2,766 at 2,048 (a chunk's activations stay in cache)."""
    was_training = encoder.training
    encoder.eval()
    out = []
    # a pass over many chunks (60,000 images) is a phase of its own that shares the CPU; one
    # chunk (a training step's batch) is part of the phase that calls it
    share = ThreadShare() if len(images) > chunk else None
    try:
        with torch.no_grad(), runtime.autocast():
            for part in images.split(chunk):
                x = part.to(runtime.device)
                x = as_float(x) if x.dtype == torch.uint8 else x.float()
                out.append(encoder.forward_features(x).float())
                if share is not None:
                    share()
    finally:
        if share is not None:
            share.restore()
    encoder.train(was_training)
    return torch.cat(out)


def recalibrate_batchnorm(net: nn.Module, images: torch.Tensor, runtime: Runtime,
                          chunk: int = 256) -> None:
    """Re-estimate every BatchNorm's running mean and variance in ``net`` from ``images``
    (uint8 or float; no label read): the statistics reset, then one pass in training mode
    without gradient, each chunk's batch statistics averaged with equal weight a chunk
    (torch's ``update_bn``). For a network whose running statistics were gathered on other
    inputs (strong augmentations) than it will see (clean images). Leaves ``net`` in eval
    mode."""
    device = next(net.parameters()).device
    with runtime.autocast():
        torch.optim.swa_utils.update_bn(
            (as_float(part.to(device)) for part in images.split(chunk)), net)
    net.eval()


def knn_accuracy(ref: torch.Tensor, ref_labels: torch.Tensor, query: torch.Tensor,
                 query_labels: torch.Tensor, k: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour vote (cosine similarity) of ``query`` in ``ref``."""
    sim = F.normalize(query, dim=1) @ F.normalize(ref, dim=1).t()
    k = min(k, len(ref))
    idx = sim.topk(k, dim=1).indices
    votes = F.one_hot(ref_labels[idx], int(ref_labels.max()) + 1).sum(1)
    return (votes.argmax(1) == query_labels).float().mean().item()


def check_lr_list(name: str, values: list[float], zero: bool = False) -> None:
    """A non-empty list of candidates, each > 0 (>= 0 with ``zero``)."""
    if not isinstance(values, list) or not values:
        raise UsageError(f"{name}={values!r} is not allowed: give a list of at least one "
                         f"value, e.g. --set {name}=[0.001,0.003]")
    for v in values:
        (check_non_negative if zero else check_positive)(name, v)


def check_batch(name: str, batch: int | float) -> None:
    try:
        batch_size(batch, 1)
    except UsageError:
        raise UsageError(f"{name}={batch!r} is not allowed: use a size >= 1 or a fraction "
                         "in (0, 1] of the labeled images") from None


MOST_CYCLES = 100  # far past any recipe (three by default)


@dataclass
class ProbeConfig:
    epochs: int = 100  # passes over the labeled subset (full batch: one AdamW step each)
    lr: float = 0.01  # AdamW learning rate
    batch: float = 1.0  # a size, or a fraction of the labeled subset (1.0: full batch)
    weight_decays: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2])
    # candidates, chosen on a validation split carved from the labeled subset
    val_fraction: float = 0.2  # share of the labeled subset held out to choose weight decay
    standardize: bool = True  # train on standardised features (folded into the layer after)
    augment: bool = False  # train on augmented views (features recomputed every epoch)

    def validate(self, where: str = "probe.") -> ProbeConfig:
        check_epochs(f"{where}epochs", self.epochs, integer=True)
        check_positive(f"{where}lr", self.lr)
        check_batch(f"{where}batch", self.batch)
        check_lr_list(f"{where}weight_decays", self.weight_decays, zero=True)
        check_fraction(f"{where}val_fraction", self.val_fraction)
        return self


class FrozenEncoderChanged(RuntimeError):
    """A frozen encoder's weights or buffers changed while a head was trained on it."""


@contextlib.contextmanager
def frozen(encoder: nn.Module):
    """Eval mode and no gradient for ``encoder`` inside the block; afterwards its state
    (weights and BatchNorm statistics) must equal what it was, or FrozenEncoderChanged."""
    encoder.eval()
    encoder.requires_grad_(False)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    yield encoder
    after = encoder.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed:
        raise FrozenEncoderChanged(f"the frozen encoder changed while its head trained: "
                                   f"{changed}")


def _predict(head: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """The class ``head`` assigns to each row of ``feats`` (on the CPU)."""
    with torch.no_grad():
        return head(feats).argmax(1).cpu()


def probabilities(encoder: nn.Module, head: nn.Module, images: torch.Tensor,
                  runtime: Runtime, shifts: int = 0, chunk: int = 1024,
                  views: Callable[[torch.Tensor], list[torch.Tensor]] | None = None
                  ) -> torch.Tensor:
    """(N, classes) float32 on the CPU: ``head`` on ``encoder``'s features (eval mode) of
    ``images``, its softmax averaged over ``shifts``-pixel copies of each (``shifts``), or
    over the float images ``views`` makes of each chunk."""
    return _averaged(encoder, head, images, runtime, shifts, chunk, views)[0]


def _averaged(encoder: nn.Module, head: nn.Module, images: torch.Tensor, runtime: Runtime,
              shifts: int = 0, chunk: int = 1024,
              views: Callable[[torch.Tensor], list[torch.Tensor]] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``probabilities`` and, from the same passes, (N,) the class of the first view alone
    (the image itself, for shifted copies): the plain prediction at no pass of its own."""
    def logits(x):
        with torch.no_grad():
            return head(features(encoder, x, runtime))

    views = views or partial(shifted_copies, pixels=shifts)
    averaged, first = [], []
    for part in images.split(chunk):
        x = part.to(runtime.device)
        x = as_float(x) if x.dtype == torch.uint8 else x.float()
        each = [logits(v) for v in views(x)]
        first.append(each[0].argmax(1).cpu())
        averaged.append(mean_softmax(lambda out: out, each).cpu())
    if not averaged:
        return torch.zeros((0, head.out_features)), torch.zeros(0, dtype=torch.long)
    return torch.cat(averaged), torch.cat(first)


def predict(encoder: nn.Module, head: nn.Module, images: torch.Tensor,
            runtime: Runtime, shifts: int = 0) -> torch.Tensor:
    """(N,) classes that ``head`` on ``encoder``'s features (eval mode) gives ``images``;
    with ``shifts``, the most probable class averaged over shifted copies (``shifts``)."""
    if shifts:
        return probabilities(encoder, head, images, runtime, shifts).argmax(1)
    return _predict(head, features(encoder, images, runtime))


def predict_and_plain(encoder: nn.Module, head: nn.Module, images: torch.Tensor,
                      runtime: Runtime, shifts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(``predict`` with ``shifts``, the plain prediction): what averaging adds, read from
    one set of passes (the unshifted copy is one of the averaged views)."""
    if not shifts:
        classes = predict(encoder, head, images, runtime)
        return classes, classes
    p, plain = _averaged(encoder, head, images, runtime, shifts)
    return p.argmax(1), plain


def _accuracy(head: nn.Module, feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``feats`` that ``head`` assigns to their ``labels``."""
    return (_predict(head, feats) == labels).float().mean().item()


def _split_sizes(val_fraction: float, count: int) -> tuple[int, int]:
    """(to train on, to choose with) of ``count`` labeled images (``split_indices``')."""
    train = max(1, round((1 - val_fraction) * count))
    return train, count - train


def check_split(name: str, val_fraction: float, count: int) -> None:
    """Refuse a validation split of ``count`` labeled images that leaves under 2 to train
    on or none to choose with: one image standardises to NaN features (the probe then
    blamed its learning rate), none scores NaN. ``compare`` checks it before any work."""
    train, held_out = _split_sizes(val_fraction, count)
    if train < 2 or held_out == 0:
        raise UsageError(f"{name}={val_fraction} splits {count} labeled images into {train} to "
                         f"train on and {held_out} to choose with: use a fraction that "
                         "leaves at least 2 and 1 (e.g. 0.2), or give one candidate value, "
                         "which needs no split")


def _choose_on_validation(candidates: list, labels: torch.Tensor, val_fraction: float,
                          seed: int, fit, score) -> tuple:
    """Pick the candidate whose model, fit on a split of the labeled indices, scores best on
    the held-out rest; then refit it on all of them. ``fit(candidate, indices) -> (model,
    history)``, ``score(model, indices) -> accuracy``. Returns ((model, history) of the
    refit, chosen, {candidate: score}); the first candidate, unscored, when the labels
    are too few to split (``check_split``: ``fit`` on a handful of labels)."""
    scores = {}
    train, held_out = _split_sizes(val_fraction, len(labels))
    if len(candidates) > 1 and train >= 2 and held_out > 0:
        tr, va = split_indices(torch.arange(len(labels)), 1 - val_fraction, seed)
        scores = {c: score(fit(c, tr)[0], va) for c in candidates}
    best = max(scores, key=scores.get) if scores else candidates[0]
    return fit(best, torch.arange(len(labels))), best, {str(k): v for k, v in scores.items()}


def _epoch_batches(n: int, size: int, seed: int):
    """Batches of ``size`` indices into ``n`` rows: a fresh shuffle per epoch, or the
    whole range every step when one batch holds them all."""
    if size >= n:
        return itertools.repeat(torch.arange(n))
    return shuffled_batches(torch.arange(n), size, torch.Generator().manual_seed(seed))


def fit_head(head: nn.Linear, feats: torch.Tensor, labels: torch.Tensor, cfg: ProbeConfig,
             weight_decay: float, rt: Runtime, seed: int = 0, augmented=None,
             progress: bool = False) -> History:
    """Train ``head`` (one linear layer) on frozen features ``feats`` (N, D) with the one
    loop, in float32; with ``cfg.standardize`` on standardised features, folded into the
    layer afterwards (still exactly one linear map). ``augmented(idx)``, if given, returns
    features of fresh augmented views of rows ``idx``. Returns the training curve."""
    n = len(feats)
    mean, std = ((feats.mean(0), feats.std(0) + 1e-6) if cfg.standardize else
                 (torch.zeros_like(feats[0]), torch.ones_like(feats[0])))
    y = labels.to(rt.device)
    size = batch_size(cfg.batch, n)
    per_epoch = steps_per_epoch(n, size)
    steps = cfg.epochs * per_epoch

    def loss_fn(idx):
        idx = idx.to(rt.device)
        f = augmented(idx) if augmented is not None else feats[idx]
        logits = head((f - mean) / std)
        accuracy = (logits.argmax(1) == y[idx]).float().mean().item()
        return F.cross_entropy(logits, y[idx]), {"accuracy": accuracy}

    head.train()
    history = loop(list(head.parameters()), loss_fn, _epoch_batches(n, size, seed), steps=steps,
                  lr=cfg.lr, weight_decay=weight_decay, runtime=Runtime(rt.device, None),
                  log_every=max(1, per_epoch, steps // 50), desc="probe", progress=progress,
                  per_epoch=per_epoch)
    with torch.no_grad():
        head.weight.div_(std)
        head.bias.sub_(head.weight @ mean)
    return history


def new_classifier(make_encoder, num_classes: int, seed: int) -> ClassifierNet:
    """``make_encoder()`` plus a new linear layer, both initialised from ``seed`` (the
    caller's RNG is left alone). With an encoder already made, only the layer is drawn."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return ClassifierNet(make_encoder(), num_classes)


def linear_probe(encoder: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 cfg: ProbeConfig, rt: Runtime, aug: AugmentConfig | None = None,
                 seed: int = 0, head: nn.Linear | None = None, num_classes: int | None = None,
                 progress: bool = False) -> dict:
    """Train a linear layer on the frozen encoder (which must come out unchanged); return
    {"head", "weight_decay" chosen, "val_scores", "history"}.

    Weight decay is chosen by accuracy on a validation split of the labeled images; the
    layer is then refit on all of them. ``head``: the layer to train (default: a new one
    for ``num_classes`` classes, initialised from ``seed``).
    """
    if head is not None:
        num_classes = head.out_features
    num_classes = num_classes or int(labels.max()) + 1
    with frozen(encoder):
        clean = features(encoder, images, rt)  # once: every fit and score reuses them
        x_float = as_float(images.to(rt.device)) if cfg.augment and aug is not None else None

        def fit_one(wd, idx):
            layer = copy.deepcopy(head) if head is not None else new_classifier(
                lambda: encoder, num_classes, seed).head.to(rt.device)
            idx = idx.to(clean.device)
            augmented = None
            if x_float is not None:
                g = torch.Generator(device=rt.device).manual_seed(seed)
                x = x_float[idx]

                def augmented(rows):
                    return features(encoder, augment(x[rows], aug, g), rt)

            return layer, fit_head(layer, clean[idx], labels[idx.cpu()], cfg, wd, rt, seed,
                                   augmented, progress)

        def score(layer, idx):
            return _accuracy(layer, clean[idx.to(clean.device)], labels[idx])

        (layer, history), best, scores = _choose_on_validation(
            cfg.weight_decays, labels, cfg.val_fraction, seed, fit_one, score)
    return {"head": layer.eval(), "weight_decay": best, "val_scores": scores,
            "history": history}


@dataclass
class SupervisedConfig:
    epochs: int = 100  # passes over the labeled training images
    batch: float = 64  # a size, or a fraction of the labeled images
    # AdamW learning rates; with more than one, each is trained on a validation split's
    # complement and the best retrained on every label (2.6 trainings instead of one). One,
    # chosen on the development split and draws: 3e-3 (0.97093) against 1e-3 (0.97070) and
    # the choice of the two per draw (0.97040), MNIST at 600 labels
    lrs: list[float] = field(default_factory=lambda: [3e-3])
    weight_decay: float = 5e-4
    val_fraction: float = 0.2
    schedule: str = "cosine"  # cosine: a warm-up epoch, then cosine decay; constant: none
    augment: bool = True  # train on views augmented by the pretraining policy
    # the targets' share spread evenly over the classes (Szegedy et al., CVPR 2016).
    # Development split, 600 labels, draws 100-102: finetune 0.98310 against 0.98047
    # without (0.2: 0.98320, 0.3: 0.98337, a tie), supervised 0.97647 against 0.97220,
    # Fashion-MNIST's finetune 0.74870 against 0.74230 — higher on every draw
    label_smoothing: float = 0.1
    # Cosine cycles of ``epochs`` each, run again from where the last ended (a warm restart:
    # Loshchilov & Hutter, ICLR 2017) while a cycle ends under-fitted: its last epoch's
    # training loss less than ``fit_level`` of the way down from chance (ln C) to the
    # smoothed targets' entropy. At most ``cycles``. A network that fits in one cycle
    # (MNIST ends at 0.98 of the way, Fashion-MNIST at 0.89) trains exactly as with one.
    cycles: int = 3
    fit_level: float = 0.75

    def validate(self, where: str = "supervised.") -> SupervisedConfig:
        check_epochs(f"{where}epochs", self.epochs, integer=True)
        check_positive(f"{where}cycles", self.cycles, integer=True)
        if self.cycles > MOST_CYCLES:
            raise UsageError(f"{where}cycles={self.cycles!r} is out of range: at most "
                             f"{MOST_CYCLES} cycles; give fewer")
        check_fraction(f"{where}fit_level", self.fit_level, zero=True, one=True)
        check_batch(f"{where}batch", self.batch)
        check_lr_list(f"{where}lrs", self.lrs)
        check_non_negative(f"{where}weight_decay", self.weight_decay)
        check_fraction(f"{where}val_fraction", self.val_fraction)
        check_choice(f"{where}schedule", self.schedule, SCHEDULES)
        check_fraction(f"{where}label_smoothing", self.label_smoothing, zero=True)
        return self


@dataclass
class FinetuneConfig(SupervisedConfig):
    """The supervised arm's training, started from the pretrained encoder with a linear
    layer fitted on its frozen features first (so the encoder's first steps follow a
    sensible head: Kumar et al., ICLR 2022, "LP-FT")."""

    # The supervised arm's rate, the encoder at it too. Development split, draws 100-102
    # (variants.md, "Fine-tuning's rates"), against 1e-3 with the encoder at a tenth of it:
    # at 600 labels MNIST 0.98320 against 0.98140, Fashion-MNIST 0.80090 against 0.75330,
    # mnist-hard 0.95297 against 0.89217, higher on every draw; at 100 labels Fashion-MNIST
    # +3.25 and mnist-hard +5.00 points, MNIST -1.08 (features that already separate the
    # classes are spent by ten labels a class)
    lrs: list[float] = field(default_factory=lambda: [3e-3])
    encoder_lr_scale: float = 1.0  # the encoder's learning rate, relative to the head's
    head_epochs: int = 100  # full-batch epochs of the linear layer fitted first

    def validate(self, where: str = "finetune.") -> FinetuneConfig:
        super().validate(where)
        check_positive(f"{where}encoder_lr_scale", self.encoder_lr_scale)
        check_epochs(f"{where}head_epochs", self.head_epochs, integer=True)
        return self


def param_groups(net: nn.Module, encoder_lr_scale: float) -> list:
    """The network's parameters, the encoder's at ``encoder_lr_scale`` times the rate
    (one group when it is 1)."""
    if encoder_lr_scale == 1:
        return list(net.parameters())
    return [{"params": list(net.encoder.parameters()), "lr_scale": encoder_lr_scale},
            {"params": list(net.head.parameters())}]


def classification_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        aug: AugmentConfig | None, g: torch.Generator,
                        label_smoothing: float = 0.0):
    """The loop's loss for training ``net`` on images ``x`` (float) with labels ``y``:
    cross entropy on the batch's rows, augmented by ``aug`` (drawing from ``g``) unless it
    is None, and the batch's accuracy to show."""

    def loss_fn(idx):
        idx = idx.to(x.device)
        batch = augment(x[idx], aug, g) if aug is not None else x[idx]
        logits = net(batch).float()
        accuracy = (logits.argmax(1) == y[idx]).float().mean().item()
        return (F.cross_entropy(logits, y[idx], label_smoothing=label_smoothing),
                {"accuracy": accuracy})

    return loss_fn


def fitted_share(loss: float, num_classes: int, label_smoothing: float) -> float:
    """How far ``loss`` (cross entropy against targets smoothed by ``label_smoothing``) has
    come down from chance, ln C (0), to the least it can reach, the smoothed targets'
    entropy (1). One class: 1, nothing to fit."""
    if num_classes < 2:
        return 1.0
    hit = 1 - label_smoothing + label_smoothing / num_classes
    miss = label_smoothing / num_classes
    floor = -hit * math.log(hit) - (num_classes - 1) * (miss * math.log(miss) if miss else 0.0)
    return (math.log(num_classes) - loss) / (math.log(num_classes) - floor)


def last_epoch_loss(records: list[dict], epochs: float) -> float:
    """The mean training loss the records log after epoch ``epochs - 1``."""
    last = [r["loss"] for r in records if r.get("epoch", 0) > epochs - 1] or [records[-1]["loss"]]
    return sum(last) / len(last)


def train_classifier(net: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     cfg: SupervisedConfig, lr: float, rt: Runtime, aug: AugmentConfig,
                     seed: int, progress: bool = False) -> History:
    """Train the whole ``net`` (encoder + linear layer) on ``images``; leave it in eval
    mode and return its training curve (each record says its ``cycle``). A
    ``FinetuneConfig`` trains the encoder at its ``encoder_lr_scale``. Cosine cycles of
    ``cfg.epochs`` follow one another while a cycle ends under-fitted (``cfg.fit_level``),
    at most ``cfg.cycles``."""
    net.to(rt.device)
    x = as_float(images.to(rt.device))
    y = labels.to(rt.device)
    g = torch.Generator(device=rt.device).manual_seed(seed)
    size = batch_size(cfg.batch, len(x))
    per_epoch = steps_per_epoch(len(x), size)
    steps = cfg.epochs * per_epoch

    loss_fn = classification_loss(net, x, y, aug if cfg.augment else None, g,
                                  cfg.label_smoothing)
    batches = shuffled_batches(torch.arange(len(x)), size, torch.Generator().manual_seed(seed))
    net.encoder.requires_grad_(True)
    net.train()
    schedule = (warmup_cosine(steps, min(per_epoch, max(1, steps // 10)))
                if cfg.schedule == "cosine" else None)  # every cycle's, from its own step 1
    history = History()
    for cycle in range(1, cfg.cycles + 1):
        part = loop(param_groups(net, getattr(cfg, "encoder_lr_scale", 1.0)), loss_fn, batches,
            steps=steps, lr=lr, weight_decay=cfg.weight_decay, runtime=rt,
            log_every=max(1, min(per_epoch, steps // 50)),
            desc="supervised" if cycle == 1 else f"supervised, cycle {cycle}",
            progress=progress, schedule=schedule, per_epoch=per_epoch)
        history.records += [{**r, "step": r["step"] + (cycle - 1) * steps,
                             "epoch": r["epoch"] + (cycle - 1) * cfg.epochs, "cycle": cycle}
                            for r in part.records]
        history.seconds += part.seconds
        history.thread_changes += part.thread_changes
        loss = last_epoch_loss(part.records, cfg.epochs)
        if fitted_share(loss, net.head.out_features, cfg.label_smoothing) >= cfg.fit_level:
            break
    net.eval()
    return history


def train_network(make_net, images, labels, cfg: SupervisedConfig, rt: Runtime,
                  aug: AugmentConfig, seed: int = 0) -> dict:
    """A network trained on the labeled images, its learning rate chosen among ``cfg.lrs``
    on a validation split of them, then retrained on all of them. ``make_net(images,
    labels)`` builds the starting network (from scratch, or from a pretrained encoder with
    a head fitted on those images), initialised from ``seed``. Returns {"net", "lr" chosen,
    "val_scores", "history"}."""

    def fit_one(lr, idx):
        net = make_net(images[idx], labels[idx])
        return net, train_classifier(net, images[idx], labels[idx], cfg, lr, rt, aug, seed)

    def score(net, idx):
        return _accuracy(net.head, features(net.encoder, images[idx], rt), labels[idx])

    (net, history), best, scores = _choose_on_validation(
        cfg.lrs, labels, cfg.val_fraction, seed, fit_one, score)
    return {"net": net, "lr": best, "val_scores": scores, "history": history,
            "cycles": history.records[-1]["cycle"]}


def with_fitted_head(encoder: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     num_classes: int, head_epochs: int, rt: Runtime, seed: int
                     ) -> ClassifierNet:
    """A copy of ``encoder`` plus a linear layer fitted on its frozen features of
    ``images`` (the start of fine-tuning and semi-supervised training). The layer is fitted
    on raw features: folding a standardisation into it would scale its weights by the
    inverse feature spread, too steep a start for training the encoder under it."""
    encoder = copy.deepcopy(encoder)
    probe = ProbeConfig(epochs=head_epochs, weight_decays=[1e-3], standardize=False)
    head = linear_probe(encoder, images, labels, probe, rt, seed=seed,
                        num_classes=num_classes)["head"]
    net = ClassifierNet(encoder, num_classes)
    net.head = head
    return net.to(rt.device)
