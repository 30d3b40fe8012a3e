"""The one registry of arms: each way to get a classifier, by name, with everything the rest
of the project needs to know about it — its runner, its config section, its tunable search
space, its colour and one line for the report and the CLI's help, whether it needs the
pretrained encoder, and whether it trains on every label. Config validation, the
comparison loop, tuning, plots and help all read ``ARMS``; nothing else lists arm names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data import Dataset
from .encoders import build_encoder
from .errors import check_positive
from .evaluate import (
    ProbeConfig,
    SupervisedConfig,
    linear_probe,
    new_classifier,
    supervised_from_scratch,
)
from .runtime import resolve

if TYPE_CHECKING:
    from .config import CompareConfig

TUNED = "-tuned"  # suffix of a run tuned with an equal budget: ``probe-tuned``


@dataclass
class Outcome:
    """What an arm runner returns: its test-set predictions and how it got there."""

    predictions: torch.Tensor
    method: str | None = None  # the pretraining method behind it, if any
    history: list | None = None  # learning curve records
    chosen: dict = field(default_factory=dict)  # hyperparameters chosen on validation


@dataclass
class LogRegConfig:
    c: float = 1.0  # inverse regularisation strength

    def validate(self, where: str = "pixels_logreg.") -> LogRegConfig:
        check_positive(f"{where}c", self.c)
        return self


@dataclass
class KNNConfig:
    k: int = 1  # neighbours in the vote

    def validate(self, where: str = "pixels_knn.") -> KNNConfig:
        check_positive(f"{where}k", self.k, integer=True)
        return self


# A runner: (dataset, labeled indices, seed, config, pretrained encoder or None) → Outcome
Runner = Callable[[Dataset, torch.Tensor, int, "CompareConfig", "torch.nn.Module | None"],
                  Outcome]


@dataclass(frozen=True)
class Arm:
    name: str
    run: Runner
    section: str  # the CompareConfig field holding this arm's settings
    colour: str  # in every plot
    about: str  # one line for the CLI's help and the docs
    space: Callable | None = None  # (optuna trial, section) → sets the tuned values
    pretrained: bool = False  # needs the pretrained encoder
    every_label: bool = False  # trains once per dataset on every training label


def _epochs(trial, base: int, longer: bool = False) -> int:
    """Half or all of the preset's epochs (or twice them, with ``longer``)."""
    return trial.suggest_categorical("epochs", [max(1, base // 2), base]
                                     + ([2 * base] if longer else []))


def _from_scratch(section: str) -> Runner:
    def run(ds: Dataset, labeled: torch.Tensor, seed: int, cfg: CompareConfig, encoder):
        p = cfg.pretrain

        def make_net():
            return new_classifier(lambda: build_encoder(p.encoder, ds.image_shape,
                                                        **p.encoder_options),
                                  ds.num_classes, seed)

        r = supervised_from_scratch(make_net, ds.train_images[labeled],
                                    ds.train_labels[labeled], ds.test_images, ds.test_labels,
                                    getattr(cfg, section), resolve(cfg.device, cfg.precision),
                                    p.augment, seed)
        return Outcome(r["predictions"], history=r["history"].records,
                       chosen={"lr": r["lr"], "val_scores": r["val_scores"]})

    return run


def _supervised_space(trial, s: SupervisedConfig) -> None:
    s.lrs = [trial.suggest_float("lr", 3e-4, 1e-2, log=True)]
    s.weight_decay = trial.suggest_float("weight_decay", 1e-5, 1e-2, log=True)
    s.epochs = _epochs(trial, s.epochs)


def _probe(ds: Dataset, labeled: torch.Tensor, seed: int, cfg: CompareConfig, encoder):
    r = linear_probe(encoder, ds.train_images[labeled], ds.train_labels[labeled],
                     ds.test_images, ds.test_labels, cfg.probe,
                     resolve(cfg.device, cfg.precision), cfg.pretrain.augment, seed)
    return Outcome(r["predictions"], method=cfg.pretrain.name(), history=r["history"].records,
                   chosen={"weight_decay": r["weight_decay"], "val_scores": r["val_scores"]})


def _probe_space(trial, p: ProbeConfig) -> None:
    p.lr = trial.suggest_float("lr", 1e-3, 3e-1, log=True)
    p.weight_decays = [trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)]
    p.epochs = _epochs(trial, p.epochs, longer=True)


def _pixels(images: torch.Tensor) -> np.ndarray:
    return images.reshape(len(images), -1).float().div(255).numpy()


def _sklearn(make: Callable) -> Runner:
    def run(ds: Dataset, labeled: torch.Tensor, seed: int, cfg: CompareConfig, encoder):
        fitted = make(cfg, len(labeled)).fit(_pixels(ds.train_images[labeled]),
                                             ds.train_labels[labeled].numpy())
        return Outcome(torch.from_numpy(fitted.predict(_pixels(ds.test_images))))

    return run


def _logreg(cfg: CompareConfig, n: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=cfg.pixels_logreg.c, max_iter=2000)


def _knn(cfg: CompareConfig, n: int):
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=min(cfg.pixels_knn.k, n))


def _logreg_space(trial, s: LogRegConfig) -> None:
    s.c = trial.suggest_float("C", 1e-3, 1e2, log=True)


def _knn_space(trial, s: KNNConfig) -> None:
    s.k = trial.suggest_int("n_neighbors", 1, 15)


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("probe", _probe, "probe", "#4c72b0",
        "one linear layer on the frozen pretrained encoder", _probe_space, pretrained=True),
    Arm("supervised", _from_scratch("supervised"), "supervised", "#dd8452",
        "the same encoder trained from scratch on the labels alone", _supervised_space),
    Arm("pixels-logreg", _sklearn(_logreg), "pixels_logreg", "#8c8c8c",
        "logistic regression on raw pixels", _logreg_space),
    Arm("pixels-knn", _sklearn(_knn), "pixels_knn", "#b0b0b0",
        "k-nearest neighbours on raw pixels", _knn_space),
    Arm("ceiling", _from_scratch("ceiling"), "ceiling", "#55a868",
        "the supervised network on every training label, once per dataset",
        every_label=True),
)}


def arm_of(run_name: str) -> Arm:
    """The registered arm behind a run's name (``probe-tuned`` → ``probe``)."""
    return ARMS[run_name.removesuffix(TUNED)]


def colour(run_name: str) -> str:
    return arm_of(run_name).colour


def order() -> list[str]:
    """Run names in the registry's order, each arm before its tuned run."""
    return [name + suffix for name in ARMS for suffix in ("", TUNED)]
