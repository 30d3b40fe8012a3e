"""Where recipes are chosen: a development split and development label draws, apart from
everything that is reported.

Two rules, enforced here rather than by care:

1. **A development split, never the held-back images.** ``development_data(ds)`` keeps
   ``DEV_SIZE`` training images aside (the same ones for every draw and variant, drawn
   from ``SPLIT_SEED``) and hands the arms a dataset made of the other training images,
   with no held-back split at all (``Dataset.without_test``: any read raises). A variant
   is scored on the images kept aside; nothing here can read the dataset's own test
   split. The pretrained encoder may have seen the kept-aside images unlabeled, as a
   comparison's encoder sees its whole training split.
2. **Development draws are never reported.** Label draws ``FIRST_DEVELOPMENT_DRAW`` and up
   are for choosing; a comparison (whose figures are reported) refuses them, and the
   development split refuses every other draw. So a choice and its report never share a
   draw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from .data import Dataset, draw_labels
from .errors import UsageError, check_seed
from .stats import confusion_matrix

FIRST_DEVELOPMENT_DRAW = 100
DEV_SIZE = 10_000  # training images kept aside to score variants on
SPLIT_SEED = 10_000


def check_reported_draws(seeds: Iterable[int], where: str = "seeds") -> None:
    """A comparison's draws: below ``FIRST_DEVELOPMENT_DRAW`` (those are kept for choosing
    recipes and must never be reported)."""
    for s in seeds:
        check_seed(where, s)
    bad = [s for s in seeds if s >= FIRST_DEVELOPMENT_DRAW]
    if bad:
        raise UsageError(f"{where}={bad} are development draws (seeds {FIRST_DEVELOPMENT_DRAW} "
                         f"and up are kept for choosing recipes and are never reported): use "
                         f"seeds from 0 to {FIRST_DEVELOPMENT_DRAW - 1}")


def check_development_draws(seeds: Iterable[int]) -> None:
    """Draws a recipe may be chosen on: ``FIRST_DEVELOPMENT_DRAW`` and up."""
    bad = [s for s in seeds if s < FIRST_DEVELOPMENT_DRAW]
    if bad:
        raise UsageError(f"seeds {bad} are draws whose figures are reported: choose recipes on "
                         f"development draws, seeds {FIRST_DEVELOPMENT_DRAW} and up (e.g. "
                         f"{FIRST_DEVELOPMENT_DRAW} {FIRST_DEVELOPMENT_DRAW + 1} "
                         f"{FIRST_DEVELOPMENT_DRAW + 2})")


@dataclass(frozen=True)
class DevelopmentData:
    """``train``: the training images less the development images, with no held-back
    split (what an arm is given); ``images`` / ``labels``: the development images and the
    labels that score a variant, read only after it has trained."""

    train: Dataset
    images: torch.Tensor
    labels: torch.Tensor

    def draw(self, count: int, seed: int, sampling: str = "balanced") -> torch.Tensor:
        """Labeled indices into ``train`` for development draw ``seed``."""
        check_development_draws([seed])
        return draw_labels(self.train.train_labels, count, seed, sampling)

    def score(self, predict: Callable[[torch.Tensor], torch.Tensor], worst: int = 3) -> dict:
        """Accuracy of ``predict`` on the development images and its ``worst`` confusions
        (``"7->2: 15"``: 15 sevens read as twos)."""
        k = self.train.num_classes
        confusion = torch.from_numpy(confusion_matrix(predict(self.images), self.labels, k))
        accuracy = confusion.trace().item() / len(self.labels)
        confusion.fill_diagonal_(0)
        top = confusion.flatten().topk(min(worst, k * k))
        return {"dev_accuracy": round(accuracy, 4),
                "worst": [f"{int(i) // k}->{int(i) % k}: {int(c)}"
                          for c, i in zip(top.values, top.indices, strict=True)]}


def development_indices(n: int, size: int = DEV_SIZE) -> torch.Tensor:
    """The ``size`` training indices (sorted) kept aside, the same for every draw."""
    if not 0 < size < n:
        raise UsageError(f"a development split of {size} images needs more than {size} "
                         f"training images; this dataset has {n}")
    g = torch.Generator().manual_seed(SPLIT_SEED)
    return torch.randperm(n, generator=g)[:size].sort().values


def development_data(ds: Dataset, size: int = DEV_SIZE) -> DevelopmentData:
    """``ds``'s training split cut into the arms' training images and ``size``
    development images; ``ds``'s own held-back split is withheld."""
    n = len(ds.train_labels)
    dev = development_indices(n, size)
    keep = torch.ones(n, dtype=torch.bool)
    keep[dev] = False
    train = dataclasses.replace(ds, name=f"{ds.name}-development",
                                train_images=ds.train_images[keep],
                                train_labels=ds.train_labels[keep]).without_test()
    return DevelopmentData(train, ds.train_images[dev], ds.train_labels[dev])
