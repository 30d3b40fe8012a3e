"""The development protocol: recipes are chosen on a split of the training images and on
development draws, never on the held-back images or a reported draw."""

import json
import sys
from pathlib import Path

import pytest
import torch

from fewlabels.config import load_preset
from fewlabels.development import (
    DEV_SIZE,
    FIRST_DEVELOPMENT_DRAW,
    check_reported_draws,
    development_data,
    development_indices,
)
from fewlabels.errors import UsageError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_development_split_is_apart_from_the_arms_images_and_fixed(mnist):
    dev = development_data(mnist)
    assert len(dev.images) == DEV_SIZE
    assert len(dev.train.train_images) == len(mnist.train_images) - DEV_SIZE
    kept = development_indices(len(mnist.train_labels))
    assert torch.equal(kept, development_indices(len(mnist.train_labels)))  # every variant
    assert torch.equal(dev.images, mnist.train_images[kept])
    # no development image is among the arms' training images (compared by content)
    rows = {bytes(x.flatten().tolist()) for x in dev.images[:200]}
    assert not rows & {bytes(x.flatten().tolist()) for x in dev.train.train_images[:5000]}


def test_the_held_back_images_are_out_of_reach(mnist):
    dev = development_data(mnist)
    with pytest.raises(RuntimeError, match="test split was read"):
        len(dev.train.test_images)
    with pytest.raises(RuntimeError, match="test split was read"):
        dev.train.test_labels[0]


def test_development_draws_and_reported_draws_never_meet(mnist):
    dev = development_data(mnist.subset(train=12_000))
    with pytest.raises(UsageError, match="choose recipes on development draws"):
        dev.draw(100, 0)
    labeled = dev.draw(100, FIRST_DEVELOPMENT_DRAW)
    assert len(labeled) == 100 and int(labeled.max()) < len(dev.train.train_labels)
    with pytest.raises(UsageError, match="development draws"):
        check_reported_draws([0, FIRST_DEVELOPMENT_DRAW])
    with pytest.raises(UsageError, match="seeds=\\[100\\] are development draws"):
        load_preset("default", {"seeds": "0,100"})


def test_score_counts_the_worst_confusions(mnist):
    dev = development_data(mnist.subset(train=12_000), size=1000)
    truth = dev.labels.clone()
    wrong = truth.clone()
    sevens = (truth == 7).nonzero().flatten()[:5]
    wrong[sevens] = 2  # five sevens read as twos
    scored = dev.score(lambda images: wrong)
    assert scored["dev_accuracy"] == pytest.approx(1 - 5 / 1000)
    assert scored["worst"][0] == "7->2: 5"


def _variants():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import variants
    finally:
        sys.path.remove(str(BENCHMARKS))
    return variants


@pytest.mark.usefixtures("mnist")
def test_variants_refuses_a_reported_draw_and_writes_nothing(tmp_path, capsys):
    table = tmp_path / "table.jsonl"
    assert _variants().main(["--arm", "pixels-knn", "--labels", "100", "--seeds", "0",
                             "--table", str(table)]) == 2
    assert "choose recipes on development draws" in capsys.readouterr().err
    assert not table.exists()


def test_fit_choice_refuses_a_reported_draw_and_its_folders_hold_out_what_they_say(capsys):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import fit_choice
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert fit_choice.main(["--seeds", "0"]) == 2
    assert "choose recipes on development draws" in capsys.readouterr().err
    ds, truth = fit_choice.folder(100)
    labeled = ds.train_labels >= 0
    assert len(ds.train_labels) == 1497 and len(ds.test_labels) == 0
    assert torch.bincount(ds.train_labels[labeled]).tolist() == [10] * 10
    assert torch.equal(ds.train_labels[labeled], truth[labeled])
    other, _ = fit_choice.folder(101)
    assert not torch.equal(other.train_images, ds.train_images)


@pytest.mark.usefixtures("mnist")
def test_variants_scores_on_the_development_split(tmp_path):
    table = tmp_path / "table.jsonl"
    assert _variants().main(["--arm", "pixels-knn", "--labels", "100", "--table",
                             str(table)]) == 0
    row = json.loads(table.read_text())
    assert row["seed"] == FIRST_DEVELOPMENT_DRAW and row["split"] == "development"
    # 1-NN on 100 MNIST pixels scores 0.6-0.8; chance is 0.1
    assert 0.5 < row["dev_accuracy"] < 0.9 and len(row["worst"]) == 3


def test_no_reported_figure_rests_on_a_development_draw():
    results = BENCHMARKS / "results"
    reported = sorted(results.glob("compare-*.json"))
    assert reported
    for path in reported:
        seeds = {r["seed"] for r in json.loads(path.read_text())["runs"]}
        assert max(seeds) < FIRST_DEVELOPMENT_DRAW, path.name
    for path in sorted(results.glob("variants-*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("split") == "development":  # this round's rule
                assert row["seed"] >= FIRST_DEVELOPMENT_DRAW, (path.name, row)


def test_averaged_predictions_read_each_view_of_the_same_images():
    variants = _variants()
    from fewlabels.arms import network_outcome
    from fewlabels.augment import AugmentConfig
    from fewlabels.encoders import ClassifierNet, ConvEncoder
    from fewlabels.runtime import resolve

    x = torch.zeros(2, 1, 6, 6)
    x[:, :, 2, 3] = 1
    views = variants.shifted_views(1)(x)
    assert all(v.shape == x.shape for v in views)  # one pixel of each edge dropped, zeros in
    assert {tuple((v[0, 0] == 1).nonzero()[0].tolist()) for v in views} == {
        (2, 3), (2, 2), (2, 4), (1, 3), (3, 3)}
    weak = variants.policy_views(3, AugmentConfig())
    assert all(torch.equal(a, b) for a, b in zip(weak(x), weak(x), strict=True))  # seeded
    torch.manual_seed(0)
    net, rt = ClassifierNet(ConvEncoder(width=2)).eval(), resolve("cpu", "fp32")
    images = (torch.rand(40, 1, 28, 28) * 255).to(torch.uint8)
    alone = variants.averaged_predict(net, rt, lambda v: [v], chunk=16)(images)
    assert torch.equal(alone, network_outcome(net, rt).predict(images))
