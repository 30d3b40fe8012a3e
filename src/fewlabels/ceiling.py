"""The fully supervised ceiling: the supervised arm's network trained on every training
label, to its plateau, as the reference that "fewer errors" and "share of the gap closed"
are measured against.

One rule on every dataset, every choice made on a validation split of the training labels:

1. ``val_size`` training images (5,000; at most a tenth of them) are held out as the
   ceiling's validation split.
2. The learning rate is chosen there: each candidate trains ``choose_epochs`` from the
   same start, and the one with the best validation accuracy trains on.
3. It trains until validation accuracy stops rising: after ``patience`` evaluations (one an
   epoch) without a new best, the rate drops tenfold; after ``decays`` drops and
   ``patience`` more evaluations without a new best, training ends — but never before it
   has taken ``min_steps`` optimizer steps (with ``at_least_semisupervised``, the most the
   semi-supervised arm can take on the same pool, so the ceiling is never the shorter
   training). The weights of the best validation epoch are the ceiling.
4. The augmentation is chosen there too: steps 2 and 3 run once for each of ``augments``
   (``policy``: the pretraining policy; ``light``: shifts and mirror images; ``none``),
   and the run with the best validation accuracy is the ceiling. Which transformations
   keep an image's class is the dataset's business (a mirrored shirt is a shirt, a
   mirrored 2 is not), so the validation split decides, not a per-dataset switch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from .augment import AugmentConfig
from .classifiers import check_lr_list, classification_loss, predict
from .data import as_float, split_indices
from .encoders import ClassifierNet
from .errors import UsageError, check_epochs, check_non_negative, check_positive
from .runtime import Runtime
from .train import History, loop, shuffled_batches, steps_per_epoch


@dataclass
class CeilingConfig:
    val_size: int = 5000  # training labels held out to choose and stop on (at most a tenth)
    batch: int = 256  # images a step (the semi-supervised arm's 32 + 7 × 32)
    lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-3])  # AdamW candidates
    choose_epochs: float = 1.0  # epochs each candidate trains before the choice
    weight_decay: float = 5e-4
    warmup_steps: int = 200  # linear warm-up of the rate
    patience: int = 3  # evaluations without a new best before the rate drops tenfold
    decays: int = 2  # drops before training ends at the next plateau
    max_epochs: int = 100  # a limit, far above where any dataset here stops
    # augmentations tried, each to its plateau; the best on validation is the ceiling
    augments: list[str] = field(default_factory=lambda: ["policy", "light"])
    # never fewer optimizer steps than the semi-supervised arm can take on the same pool
    at_least_semisupervised: bool = True

    def validate(self, where: str = "ceiling.") -> CeilingConfig:
        check_positive(f"{where}val_size", self.val_size, integer=True)
        check_positive(f"{where}batch", self.batch, integer=True)
        check_lr_list(f"{where}lrs", self.lrs)
        check_epochs(f"{where}choose_epochs", self.choose_epochs)
        check_non_negative(f"{where}weight_decay", self.weight_decay)
        check_non_negative(f"{where}warmup_steps", self.warmup_steps, integer=True)
        check_positive(f"{where}patience", self.patience, integer=True)
        check_non_negative(f"{where}decays", self.decays, integer=True)
        check_epochs(f"{where}max_epochs", self.max_epochs, integer=True)
        if not self.augments or any(a not in AUGMENTS for a in self.augments):
            raise UsageError(f"{where}augments={self.augments!r} is out of range: give one "
                             f"or more of {', '.join(AUGMENTS)}")
        return self


AUGMENTS = ("policy", "light", "none")  # the ceiling's augmentation candidates
# shifts of up to a tenth of the image and mirror images: the usual training views of
# clothes and objects, without the rotations and shears of the digits' policy
LIGHT = AugmentConfig(rotate=0.0, scale=0.0, shear=0.0, translate=0.1, flip=0.5)


def ceiling_augment(name: str, policy: AugmentConfig) -> AugmentConfig | None:
    """The augmentation a candidate name stands for (None: the images as they are)."""
    return {"policy": policy, "light": LIGHT, "none": None}[name]


class Plateau:
    """The rate's multiplier as a function of the step (warm-up, then 0.1 ** drops) and
    the stopping rule, fed one validation record an epoch; keeps the best weights."""

    def __init__(self, cfg: CeilingConfig, min_steps: int):
        self.cfg, self.min_steps = cfg, min_steps
        self.net: torch.nn.Module | None = None  # the network whose best weights are kept
        self.best, self.best_step, self.best_state = -1.0, 0, None
        self.waited, self.drops = 0, 0
        self.drop_steps: list[int] = []

    def scale(self, step: int) -> float:
        warm = min(1.0, step / self.cfg.warmup_steps) if self.cfg.warmup_steps else 1.0
        return warm * 0.1 ** self.drops

    def __call__(self, record: dict) -> bool:
        """Note a validation record; True when training should end."""
        if record["val_accuracy"] > self.best:
            self.best, self.best_step, self.waited = record["val_accuracy"], record["step"], 0
            self.best_state = copy.deepcopy(self.net.state_dict())
            return False
        self.waited += 1
        if self.waited < self.cfg.patience:
            return False
        if self.drops < self.cfg.decays:
            self.drops, self.waited = self.drops + 1, 0
            self.drop_steps.append(record["step"])
            return False
        return record["step"] >= self.min_steps


def train_ceiling(make_net, images: torch.Tensor, labels: torch.Tensor, cfg: CeilingConfig,
                  rt: Runtime, aug: AugmentConfig, seed: int, min_steps: int = 0,
                  progress: bool = True) -> dict:
    """Train ``make_net()`` (a new ``ClassifierNet``, initialised from ``seed``) on every
    labeled image but a validation split, by the module's rule; ``aug`` is the pretraining
    policy. Returns the best candidate's {"net" (its best validation epoch's weights, eval
    mode), "augment", "lr", "val_scores" (each rate after ``choose_epochs``), "history",
    "epochs", "steps", "best_epoch", "val_accuracy", "lr_drops" (epochs)} and
    "candidates": each augmentation's {"val_accuracy", "lr", "epochs"}."""
    held = min(cfg.val_size, max(1, len(labels) // 10))  # a small dataset keeps 90%
    tr, va = split_indices(torch.arange(len(labels)), 1 - held / len(labels), seed)
    x = as_float(images.to(rt.device))
    y = labels.to(rt.device)
    x_va, y_va = x[va.to(rt.device)], y[va.to(rt.device)]
    per_epoch = steps_per_epoch(len(tr), cfg.batch)

    def run(view: AugmentConfig | None, lr: float, steps: int, plateau: Plateau,
            stopping: bool, name: str) -> History:
        net: ClassifierNet = make_net().to(rt.device)
        plateau.net = net
        g = torch.Generator(device=rt.device).manual_seed(seed)
        loss_fn = classification_loss(net, x, y, view, g)

        def evaluate() -> dict:
            return {"val_accuracy": (predict(net.encoder, net.head, x_va, rt)
                                     == y_va.cpu()).float().mean().item()}

        net.train()
        return loop(list(net.parameters()), loss_fn,
                   shuffled_batches(tr, cfg.batch, torch.Generator().manual_seed(seed)),
                   steps=steps, lr=lr, weight_decay=cfg.weight_decay, runtime=rt,
                   log_every=per_epoch, evaluate=evaluate, eval_every=per_epoch,
                   desc=f"ceiling {name} lr {lr:g}", progress=progress,
                   schedule=plateau.scale, per_epoch=per_epoch,
                   stop=plateau if stopping else None)

    def candidate(name: str) -> dict:
        view = ceiling_augment(name, aug)
        choose_steps = max(1, round(cfg.choose_epochs * per_epoch))
        scores = {}
        if len(cfg.lrs) > 1:
            for lr in cfg.lrs:
                scores[lr] = run(view, lr, choose_steps, Plateau(cfg, 0), False,
                                 name).series("val_accuracy")[1][-1]
        lr = max(scores, key=scores.get) if scores else cfg.lrs[0]
        plateau = Plateau(cfg, min_steps)
        history = run(view, lr, max(min_steps, cfg.max_epochs * per_epoch), plateau, True,
                      name)
        last = history.records[-1]["step"]
        return {"plateau": plateau, "augment": name, "lr": lr,
                "val_scores": {str(k): v for k, v in scores.items()}, "history": history,
                "epochs": round(last / per_epoch, 2), "steps": last,
                "best_epoch": round(plateau.best_step / per_epoch, 2),
                "val_accuracy": plateau.best, "min_steps": min_steps,
                "lr_drops": [round(s / per_epoch, 2) for s in plateau.drop_steps]}

    runs = [candidate(name) for name in cfg.augments]
    best = max(runs, key=lambda r: r["val_accuracy"])  # the first of equals
    plateau = best.pop("plateau")
    net = plateau.net
    net.load_state_dict(plateau.best_state)
    net.eval()
    best["net"] = net
    best["candidates"] = {r["augment"]: {"val_accuracy": r["val_accuracy"], "lr": r["lr"],
                                         "epochs": r["epochs"]} for r in runs}
    return best
