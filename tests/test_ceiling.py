"""The ceiling: its rate chosen and its training stopped on a validation split of the
training labels, to a plateau, never shorter than the semi-supervised arm."""

import pytest
import torch

from fewlabels.augment import AugmentConfig
from fewlabels.ceiling import CeilingConfig, Plateau, train_ceiling
from fewlabels.classifiers import new_classifier, predict
from fewlabels.data import split_indices
from fewlabels.encoders import build_encoder
from fewlabels.errors import UsageError
from fewlabels.runtime import resolve


def _feed(plateau: Plateau, accuracies, every: int = 10) -> list[int]:
    """Feed one validation record a step of ``every``; the steps where it said stop."""
    stops = []
    for i, acc in enumerate(accuracies, 1):
        if plateau({"step": i * every, "val_accuracy": acc}):
            stops.append(i * every)
    return stops


def test_the_rate_drops_on_a_plateau_and_training_ends_at_the_last_one():
    plateau = Plateau(CeilingConfig(patience=2, decays=2, warmup_steps=0), min_steps=0)
    plateau.net = torch.nn.Linear(2, 2)
    # rises, then flat: two flat evaluations drop the rate, twice; then two more end it
    stops = _feed(plateau, [0.90, 0.95, 0.95, 0.95, 0.96, 0.96, 0.96, 0.96, 0.96, 0.96])
    assert plateau.drop_steps == [40, 70]
    assert plateau.scale(75) == pytest.approx(0.01)
    assert stops[0] == 90 and plateau.best == 0.96 and plateau.best_step == 50


def test_training_never_ends_before_the_semisupervised_arms_steps():
    plateau = Plateau(CeilingConfig(patience=1, decays=0, warmup_steps=0), min_steps=60)
    plateau.net = torch.nn.Linear(2, 2)
    stops = _feed(plateau, [0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8])
    assert stops and stops[0] == 60  # flat from step 20, but 60 steps are the least


def test_the_best_validation_weights_are_kept():
    net = torch.nn.Linear(2, 2)
    plateau = Plateau(CeilingConfig(patience=5, warmup_steps=4), min_steps=0)
    plateau.net = net
    assert plateau.scale(1) == pytest.approx(0.25) and plateau.scale(8) == 1.0
    plateau({"step": 10, "val_accuracy": 0.9})
    kept = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    plateau({"step": 20, "val_accuracy": 0.8})  # worse: the earlier weights stay the best
    assert torch.equal(plateau.best_state["weight"], kept)


def test_train_ceiling_chooses_on_validation_and_restores_its_best_epoch(mnist):
    small = mnist.subset(train=1500)
    cfg = CeilingConfig(val_size=150, batch=50, lrs=[1e-5, 3e-3], choose_epochs=2,
                        patience=1, decays=1, max_epochs=6, warmup_steps=5,
                        augments=["none"])
    rt = resolve("cpu", "fp32")

    def make():
        return new_classifier(lambda: build_encoder("conv", (1, 28, 28), width=8), 10, 0)

    r = train_ceiling(make, small.train_images, small.train_labels, cfg, rt, AugmentConfig(),
                      seed=0, min_steps=30, progress=False)
    assert set(r["val_scores"]) == {"1e-05", "0.003"} and r["lr"] == 3e-3
    assert str(r["lr"]) == max(r["val_scores"], key=r["val_scores"].get)
    curve = r["history"].series("val_accuracy")[1]
    assert r["val_accuracy"] == max(curve) and r["steps"] >= 30
    assert len(curve) == round(r["epochs"])  # one evaluation an epoch
    # the returned network is the best epoch's: its validation accuracy is the best one
    _, va = split_indices(torch.arange(1500), 1 - 150 / 1500, 0)
    again = (predict(r["net"].encoder, r["net"].head, small.train_images[va], rt)
             == small.train_labels[va]).float().mean().item()
    assert again == pytest.approx(r["val_accuracy"])
    assert r["val_accuracy"] > 0.5  # a 1,200-image MNIST net: far above chance (0.1)


def test_a_bad_ceiling_setting_names_the_key():
    with pytest.raises(UsageError, match="ceiling.patience"):
        CeilingConfig(patience=0).validate()
    with pytest.raises(UsageError, match="ceiling.augments=.*policy, light, none"):
        CeilingConfig(augments=["mirror"]).validate()


def test_the_augmentation_is_chosen_on_validation(mnist):
    """Each candidate trains to its own plateau; the best validation run is the ceiling,
    and its validation accuracy is the network's that comes back."""
    small = mnist.subset(train=600)
    cfg = CeilingConfig(val_size=60, batch=50, lrs=[3e-3], patience=1, decays=0,
                        max_epochs=3, warmup_steps=0, augments=["none", "light"])
    rt = resolve("cpu", "fp32")
    r = train_ceiling(lambda: new_classifier(lambda: build_encoder("conv", (1, 28, 28),
                                                                   width=4), 10, 0),
                      small.train_images, small.train_labels, cfg, rt, AugmentConfig(), seed=0,
                      progress=False)
    cands = r["candidates"]
    assert set(cands) == {"none", "light"}
    assert cands["none"]["val_accuracy"] != cands["light"]["val_accuracy"]  # different views
    assert r["augment"] == max(cands, key=lambda k: cands[k]["val_accuracy"])
    _, va = split_indices(torch.arange(600), 1 - 60 / 600, 0)
    again = (predict(r["net"].encoder, r["net"].head, small.train_images[va], rt)
             == small.train_labels[va]).float().mean().item()
    assert again == pytest.approx(r["val_accuracy"])


def test_a_small_dataset_keeps_nine_tenths_for_training(mnist):
    small = mnist.subset(train=400)
    cfg = CeilingConfig(lrs=[3e-3], max_epochs=1, augments=["none"])  # val_size 5,000 > 400
    rt = resolve("cpu", "fp32")
    r = train_ceiling(lambda: new_classifier(lambda: build_encoder("conv", (1, 28, 28),
                                                                   width=4), 10, 0),
                      small.train_images, small.train_labels, cfg, rt, AugmentConfig(), seed=0,
                      progress=False)
    assert r["val_accuracy"] * 40 == pytest.approx(round(r["val_accuracy"] * 40))  # of 40
    assert r["steps"] == 2  # 360 training images at 256 a step
