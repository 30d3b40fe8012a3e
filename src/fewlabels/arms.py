"""The one registry of arms: each way to get a classifier, by name, with everything the rest
of the project needs to know about it — its runner, its config section, its tunable search
space, its colour and one line for the report and the CLI's help, whether it needs the
pretrained encoder, and whether it trains on every label. Config validation, the
comparison loop, tuning, plots and help all read ``ARMS``; nothing else lists arm names.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import memo
from .augment import AugmentConfig
from .catalog import ARM_ABOUT
from .ceiling import CeilingConfig, train_ceiling
from .classifiers import (
    FinetuneConfig,
    ProbeConfig,
    SupervisedConfig,
    features,
    linear_probe,
    new_classifier,
    predict,
    predict_and_plain,
    train_network,
    with_fitted_head,
)
from .data import Dataset
from .encoders import ClassifierNet, build_encoder
from .errors import check_fraction, check_positive
from .runtime import Runtime
from .semisupervised import SemiSupervisedConfig, train_semisupervised

TUNED = "-tuned"  # suffix of a run tuned with an equal budget: ``probe-tuned``
SAMPLED = "@"  # a run on another label sampling than the comparison's first: ``probe@typical``


@dataclass(frozen=True)
class Context:
    """What an arm runner may see besides its own settings: the data without its test
    split, the labeled draw, and what every arm of a comparison shares."""

    data: Dataset  # without its test split: a runner cannot reach it
    labeled: torch.Tensor  # indices of the labeled training images
    seed: int  # the draw's seed: initialisations, shuffles and splits follow it
    runtime: Runtime
    augment: AugmentConfig  # the pretraining policy: every arm trains on its views
    new_network: Callable[[], ClassifierNet]  # the supervised arm's network, new from seed
    encoder: torch.nn.Module | None = None  # the pretrained encoder (for arms that need it)
    method: str | None = None  # its pretraining recipe's name
    min_steps: int = 0  # the fewest optimizer steps an every-label arm may take
    # a folder the runs of one comparison share for work each would do identically
    # (``memo``; None: each run does its own)
    shared: Path | None = None
    shifts: int = 0  # every network's prediction averaged over copies moved this far (``shifts``)

    @property
    def images(self) -> torch.Tensor:
        return self.data.train_images[self.labeled]

    @property
    def labels(self) -> torch.Tensor:
        return self.data.train_labels[self.labeled]


@dataclass
class Outcome:
    """What an arm runner returns: the classifier it trained, as ``predict(images) →
    classes``, and how it got there. The runner never sees the test split: the caller
    hands it to ``predict`` once, at the end."""

    predict: Callable[[torch.Tensor], torch.Tensor]
    method: str | None = None  # the pretraining method behind it, if any
    history: list | None = None  # learning curve records
    chosen: dict = field(default_factory=dict)  # hyperparameters chosen on validation
    net: ClassifierNet | None = None  # the trained network, for the arms that train one
    # (``predict``'s classes, the plain prediction's) from one set of passes, for a
    # predictor that averages shifted copies (``network_outcome``); None: ``predict`` is plain
    predict_and_plain: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None


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


# A runner: (context, the arm's own config section) → Outcome
Runner = Callable[[Context, Any], Outcome]


@dataclass(frozen=True)
class Arm:
    name: str
    run: Runner
    section: str  # the CompareConfig field holding this arm's settings (its runner's)
    colour: str  # in every plot
    space: Callable | None = None  # (optuna trial, section) → sets the tuned values
    pretrained: bool = False  # needs the pretrained encoder
    every_label: bool = False  # trains once per dataset on every training label

    @property
    def about(self) -> str:
        """One line for the CLI's help and the docs (``catalog``: read without torch)."""
        return ARM_ABOUT[self.name]


def _epochs(trial, base: int, longer: bool = False) -> int:
    """Half or all of the preset's epochs (or twice them, with ``longer``)."""
    return trial.suggest_categorical("epochs", [max(1, base // 2), base]
                                     + ([2 * base] if longer else []))


def network_maker(encoder: str, options: dict, image_shape, num_classes: int,
                  seed: int) -> Callable[[], ClassifierNet]:
    """A maker of a new network of ``encoder`` + one linear layer, initialised from
    ``seed`` (the supervised arm's and the ceiling's)."""
    return lambda: new_classifier(lambda: build_encoder(encoder, image_shape, **options),
                                  num_classes, seed)


def network_outcome(net: ClassifierNet, rt: Runtime, shifts: int = 0, **fields) -> Outcome:
    """An Outcome whose predictor is ``net`` (its prediction averaged over copies moved
    ``shifts`` pixels, ``shifts``)."""
    return Outcome(lambda images: predict(net.encoder, net.head, images, rt, shifts), net=net,
                   predict_and_plain=(lambda images: predict_and_plain(
                       net.encoder, net.head, images, rt, shifts)) if shifts else None,
                   **fields)


def _trained(r: dict, ctx: Context, method: str | None = None) -> Outcome:
    """The Outcome of ``train_network``'s result ``r``: its network as the predictor."""
    return network_outcome(r["net"], ctx.runtime, ctx.shifts, method=method,
                           history=r["history"].records,
                           chosen={"lr": r["lr"], "val_scores": r["val_scores"],
                                   "cycles": r["cycles"]})


def _supervised(ctx: Context, s: SupervisedConfig) -> Outcome:
    return _trained(train_network(lambda images, labels: ctx.new_network(), ctx.images,
                                  ctx.labels, s, ctx.runtime, ctx.augment, ctx.seed),
                    ctx)


def _ceiling(ctx: Context, c: CeilingConfig) -> Outcome:
    """The supervised arm's network on every training label, to its plateau (``ceiling``);
    never fewer than ``ctx.min_steps`` steps. It shows a progress bar, as pretraining does:
    it is the longest run of a comparison (half an hour and more on two cores)."""
    r = train_ceiling(ctx.new_network, ctx.images, ctx.labels, c, ctx.runtime, ctx.augment,
                      ctx.seed, min_steps=ctx.min_steps, progress=True)
    chosen = {k: r[k] for k in ("augment", "lr", "val_scores", "epochs", "best_epoch",
                                "val_accuracy", "steps", "min_steps", "lr_drops",
                                "candidates")}
    return network_outcome(r["net"], ctx.runtime, ctx.shifts, history=r["history"].records,
                           chosen=chosen)


def _finetune(ctx: Context, f: FinetuneConfig) -> Outcome:
    def make_net(images, labels):
        return with_fitted_head(ctx.encoder, images, labels, ctx.data.num_classes,
                                f.head_epochs, ctx.runtime, ctx.seed)

    return _trained(train_network(make_net, ctx.images, ctx.labels, f, ctx.runtime,
                                  ctx.augment, ctx.seed), ctx, ctx.method)


def _semisupervised(ctx: Context, s: SemiSupervisedConfig) -> Outcome:
    net = with_fitted_head(ctx.encoder, ctx.images, ctx.labels, ctx.data.num_classes,
                           s.head_epochs, ctx.runtime, ctx.seed)
    pool, rt = ctx.data.train_images, ctx.runtime
    pool_features = memo.computed_once(  # the same for every draw
        ctx.shared, lambda: (f"pool-features-{memo.fingerprint(*ctx.encoder.state_dict().values())}"
                             f"-{memo.fingerprint(pool)}-{rt.device}-{rt.precision}-"
                             f"{torch.get_num_threads()}threads"),
        lambda: features(ctx.encoder, pool, rt))
    history, chosen = train_semisupervised(net, ctx.images, ctx.labels, pool, s, rt,
                                           ctx.augment, ctx.seed, pool_features=pool_features)
    return network_outcome(net, ctx.runtime, ctx.shifts, method=ctx.method,
                           history=history.records, chosen=chosen)


def _semisupervised_space(trial, s: SemiSupervisedConfig) -> None:
    s.lr = trial.suggest_float("lr", 3e-4, 3e-3, log=True)
    s.threshold = trial.suggest_float("threshold", 0.6, 0.98)
    s.encoder_lr_scale = trial.suggest_float("encoder_lr_scale", 0.1, 1.0, log=True)


def _supervised_space(trial, s: SupervisedConfig) -> None:
    s.lrs = [trial.suggest_float("lr", 3e-4, 1e-2, log=True)]
    s.weight_decay = trial.suggest_float("weight_decay", 1e-5, 1e-2, log=True)
    s.epochs = _epochs(trial, s.epochs)


def _probe(ctx: Context, p: ProbeConfig) -> Outcome:
    r = linear_probe(ctx.encoder, ctx.images, ctx.labels, p, ctx.runtime, ctx.augment,
                     ctx.seed, num_classes=ctx.data.num_classes)
    net = new_classifier(lambda: ctx.encoder, ctx.data.num_classes, ctx.seed)  # RNG forked
    net.head = r["head"]
    return network_outcome(net, ctx.runtime, ctx.shifts, method=ctx.method,
                           history=r["history"].records,
                           chosen={"weight_decay": r["weight_decay"],
                                   "val_scores": r["val_scores"]})


def _probe_space(trial, p: ProbeConfig) -> None:
    p.lr = trial.suggest_float("lr", 1e-3, 3e-1, log=True)
    p.weight_decays = [trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)]
    p.epochs = _epochs(trial, p.epochs, longer=True)


def _pixels(images: torch.Tensor) -> np.ndarray:
    return images.reshape(len(images), -1).float().div(255).numpy()


def _sklearn(make: Callable) -> Runner:
    """A runner of the scikit-learn estimator ``make(settings, labeled count)`` on pixels."""
    def run(ctx: Context, settings) -> Outcome:
        fitted = make(settings, len(ctx.labeled)).fit(_pixels(ctx.images),
                                                      ctx.labels.numpy())
        return Outcome(lambda images: torch.from_numpy(fitted.predict(_pixels(images))))

    return run


def _logreg(c: LogRegConfig, n: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c.c, max_iter=2000)


def _knn(k: KNNConfig, n: int):
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=min(k.k, n))


@dataclass
class LabelSpreadingConfig:
    components: int = 50  # PCA components of the pixels
    k: int = 10  # neighbours in the graph over every training image
    alpha: float = 0.2  # how much of its label each image passes on per iteration

    def validate(self, where: str = "pixels_labelspreading.") -> LabelSpreadingConfig:
        check_positive(f"{where}components", self.components, integer=True)
        check_positive(f"{where}k", self.k, integer=True)
        check_fraction(f"{where}alpha", self.alpha)
        return self


def _labelspreading(ctx: Context, c: LabelSpreadingConfig) -> Outcome:
    """Label spreading (Zhou et al., NIPS 2003) over a k-nearest-neighbour graph of every
    training image's PCA-reduced pixels; only the labeled subset's labels are read. The
    graph reads no label: one is built for the pool and every draw of a comparison
    spreads over it (``memo``)."""
    pca, neighbours, graph = memo.computed_once(
        ctx.shared, lambda: _graph_key(ctx.data.train_images, c),
        lambda: _pool_graph(ctx.data.train_images, c))
    reduced = neighbours._fit_X
    targets = np.full(len(reduced), -1)
    targets[ctx.labeled.numpy()] = ctx.labels.numpy()
    spread = _spreading_on_graph()(kernel="knn", n_neighbors=c.k, alpha=c.alpha,
                                   max_iter=100, n_jobs=1)
    spread.given = neighbours, graph
    spread.fit(reduced, targets)
    # an image in a part of the graph that holds no labeled image keeps an all-zero label
    # distribution; a test image whose neighbours are all such images would get 0 / 0 =
    # NaN probabilities, and whichever class argmax meets first. They get the labeled
    # subset's class shares instead.
    d = spread.label_distributions_
    unreached = ~(np.isfinite(d).all(1) & (d.sum(1) > 0))
    prior = np.bincount(np.searchsorted(spread.classes_, ctx.labels.numpy()),
                        minlength=len(spread.classes_)) / len(ctx.labels)
    spread.label_distributions_[unreached] = prior
    return Outcome(lambda images: torch.from_numpy(
        spread.predict(pca.transform(_pixels(images)))).long(),
        chosen={"unreached_images": int(unreached.sum())})


def _graph_key(images: torch.Tensor, c: LabelSpreadingConfig) -> str:
    """What the pool's graph depends on: the images, the PCA's components, the neighbours,
    and the threads that compute it."""
    return (f"labelspreading-graph-{memo.fingerprint(images)}-{c.components}pc-{c.k}nn-"
            f"{torch.get_num_threads()}threads")


def _pool_graph(images: torch.Tensor, c: LabelSpreadingConfig):
    """(the fitted PCA, the nearest-neighbour index of the reduced pool, label spreading's
    normalised graph over it): what scikit-learn's ``LabelSpreading.fit`` builds before it
    reads a label, built as it builds them."""
    from sklearn.decomposition import PCA

    pca = PCA(c.components, random_state=0)  # the pool's, not a draw's
    builder = _spreading_on_graph()(kernel="knn", n_neighbors=c.k, n_jobs=1)
    builder.X_ = pca.fit_transform(_pixels(images))
    graph = builder._build_graph()  # nothing given: scikit-learn's own
    return pca, builder.nn_fit, graph


@functools.cache
def _spreading_on_graph():
    from sklearn.semi_supervised import LabelSpreading

    class SpreadingOnGraph(LabelSpreading):
        """scikit-learn's LabelSpreading on a graph built beforehand (``given``: the
        neighbour index and the normalised graph of ``_pool_graph``) instead of its own."""

        given = None

        def _build_graph(self):
            if self.given is None:
                return super()._build_graph()
            self.nn_fit, graph = self.given
            return graph

    return SpreadingOnGraph


def _labelspreading_space(trial, s: LabelSpreadingConfig) -> None:
    s.k = trial.suggest_int("n_neighbors", 3, 30, log=True)
    s.alpha = trial.suggest_float("alpha", 0.01, 0.9, log=True)


def _logreg_space(trial, s: LogRegConfig) -> None:
    s.c = trial.suggest_float("C", 1e-3, 1e2, log=True)


def _knn_space(trial, s: KNNConfig) -> None:
    s.k = trial.suggest_int("n_neighbors", 1, 15)


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("probe", _probe, "probe", "#4c72b0", _probe_space, pretrained=True),
    Arm("finetune", _finetune, "finetune", "#8172b3", _supervised_space, pretrained=True),
    Arm("semisupervised", _semisupervised, "semisupervised", "#c44e52",
        _semisupervised_space, pretrained=True),
    Arm("supervised", _supervised, "supervised", "#dd8452", _supervised_space),
    Arm("pixels-logreg", _sklearn(_logreg), "pixels_logreg", "#8c8c8c", _logreg_space),
    Arm("pixels-knn", _sklearn(_knn), "pixels_knn", "#b0b0b0", _knn_space),
    Arm("pixels-labelspreading", _labelspreading, "pixels_labelspreading", "#937860",
        _labelspreading_space),
    Arm("ceiling", _ceiling, "ceiling", "#55a868", every_label=True),
)}


def arm_of(run_name: str) -> Arm:
    """The registered arm behind a run's name (``probe-tuned`` → ``probe``; a run on another
    label sampling than the first, ``probe@typical`` → ``probe``)."""
    return ARMS[run_name.split(SAMPLED)[0].removesuffix(TUNED)]


def colour(run_name: str) -> str:
    return arm_of(run_name).colour


def order() -> list[str]:
    """Run names in the registry's order, each arm before its tuned run."""
    return [name + suffix for name in ARMS for suffix in ("", TUNED)]
