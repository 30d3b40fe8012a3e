"""One test over the whole registry of arms: each runs end to end on a small real slice of
MNIST, appears in results.json and in the report, and has what the rest reads of it."""

import dataclasses
import json
import re
import warnings

import pytest

from fewlabels.arms import ARMS, TUNED, arm_of, order
from fewlabels.catalog import ARM_ABOUT
from fewlabels.config import CompareConfig, load_preset
from fewlabels.experiment import compare


def test_every_arm_is_complete():
    cfg = CompareConfig()
    for name, arm in ARMS.items():
        assert arm.name == name and callable(arm.run) and arm.about
        assert re.fullmatch(r"#[0-9a-f]{6}", arm.colour)
        assert dataclasses.is_dataclass(getattr(cfg, arm.section))
        assert arm_of(name + TUNED) is arm
    assert order()[:2] == ["probe", "probe" + TUNED]
    # every arm runs unless the user picks some, but the ceiling, asked for by name
    assert cfg.arms == [a for a in ARMS if a != "ceiling"]
    assert list(ARM_ABOUT) == list(ARMS)  # the help lists every arm, in the registry's order


def test_a_withheld_test_split_refuses_every_use(mnist):
    blind = mnist.subset(train=100, test=10).without_test()
    for touch in (lambda t: t[0], len, lambda t: t.shape, lambda t: t.float(), list):
        with pytest.raises(RuntimeError, match="test split was read before the final"):
            touch(blind.test_images)
    assert blind.train_images.shape[0] == 100


@pytest.fixture(scope="module")
def every_arm(mnist, tmp_path_factory):
    """Every arm, tuned and untuned, through ``compare``: each runner is handed the dataset
    with its test split withheld (any read raises), and only its returned predictor sees
    the test images, at the end."""
    out = tmp_path_factory.mktemp("arms") / "run"
    small = dataclasses.replace(mnist.subset(train=1500, test=300), name="mnist")
    cfg = load_preset("default", {
        "device": "cpu", "precision": "fp32", "labels": ["60"], "seeds": [0, 1], "tune": 1,
        "arms": list(ARMS),
        "feature_map": 40,
        "pretrain": {"epochs": 1, "batch": 500, "encoder_options": {"width": 4},
                     "refine_rounds": 1, "refine_epochs": 1, "self_label_epochs": 1},
        "supervised": {"epochs": 2}, "probe": {"epochs": 5},
        "ceiling": {"max_epochs": 2, "val_size": 150, "at_least_semisupervised": False},
        "finetune": {"epochs": 2, "head_epochs": 5},
        "semisupervised": {"epochs": 1, "head_epochs": 5, "batch": 16, "ratio": 3,
                           "hard_share": 0}})  # a pool that starts unsure: 1 pass, not 20
    results = compare(cfg, out, datasets={"mnist": small}, log=lambda line: None)
    return out, results


def test_the_ceiling_runs_only_when_asked_for():
    default = load_preset("default")
    assert "ceiling" not in default.arms
    assert sorted(default.arms) == sorted(a for a in ARMS if a != "ceiling")


@pytest.mark.parametrize("name", list(ARMS))
def test_every_arm_runs_and_is_reported(every_arm, name):
    out, results = every_arm
    arm = ARMS[name]
    runs = [r for r in results["runs"] if r["arm"] == name]
    assert len(runs) == (1 if arm.every_label else 2)
    for r in runs:
        confusion = r["confusion"]
        assert r["test_accuracy"] == pytest.approx(
            sum(confusion[k][k] for k in range(10)) / 300)
        assert sum(map(sum, r["confusion"])) == 300
        assert r["labels"] == (1500 if arm.every_label else 60)
    assert (r["method"] is not None) == arm.pretrained
    tuned = [r for r in results["runs"] if r["arm"] == name + TUNED]
    assert len(tuned) == (2 if arm.space else 0)
    report = (out / "report.md").read_text()
    assert f"| mnist | {name} | " in report
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]
    # the run list written before anything ran is the runs made, in their order
    planned = json.loads((out / "plan.json").read_text())
    made = [(r["arm"], r["labels"], r["seed"], r["pretrain_seed"]) for r in results["runs"]]
    assert made == [(p["arm"] + ("-tuned" if p["tuned"] else ""), p["labels"], p["seed"],
                     p["pretrain_seed"]) for p in planned]


def test_label_spreading_gives_images_no_label_reached_the_class_shares_not_nan():
    """Two groups of images far apart, labels only in the first: the second group's images
    are reached by no label (scikit-learn leaves their distributions at 0; a test image among
    them gets 0 / 0 = NaN probabilities). Test images there must not take whichever class
    argmax meets first on NaN; they get the labeled subset's most common class."""
    import torch

    from fewlabels.arms import Context, LabelSpreadingConfig
    from fewlabels.augment import AugmentConfig
    from fewlabels.data import Dataset
    from fewlabels.runtime import resolve

    g = torch.Generator().manual_seed(0)
    near = torch.randint(0, 40, (60, 1, 8, 8), generator=g, dtype=torch.uint8)
    far = torch.randint(215, 255, (60, 1, 8, 8), generator=g, dtype=torch.uint8)
    images = torch.cat([near, far])
    labels = torch.cat([torch.tensor([0, 1, 1] * 20), torch.full((60,), 2)])
    ds = Dataset("two-groups", images, labels, images[:0], labels[:0], ("a", "b", "c"), "", {})
    labeled = torch.arange(0, 30)  # 10 of class a, 20 of class b; none from the far group
    ctx = Context(ds, labeled, 0, resolve("cpu", "fp32"), AugmentConfig(), lambda: None)
    outcome = ARMS["pixels-labelspreading"].run(ctx, LabelSpreadingConfig(components=5, k=3))
    assert outcome.chosen["unreached_images"] >= 60  # the whole far group, and a few near ones
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in divide"
        predicted = outcome.predict(far[:20])
    assert (predicted == 1).all()  # b: the most common labeled class (NaN's argmax gives a)


def test_label_spreading_on_the_shared_graph_is_scikit_learns(mnist, tmp_path):
    """The graph over the pool is built once a comparison and read by every draw; a draw
    that reads it predicts exactly what scikit-learn's LabelSpreading fitted on its own
    graph predicts (with the PCA's seed fixed: a pool this small gets the randomized
    solver; MNIST's 60,000 images get the exact one, whatever the seed)."""
    import numpy as np
    import torch
    from sklearn.decomposition import PCA
    from sklearn.semi_supervised import LabelSpreading

    from fewlabels.arms import Context, LabelSpreadingConfig
    from fewlabels.augment import AugmentConfig
    from fewlabels.runtime import resolve

    small = mnist.subset(train=1500, test=300)
    pool, test = small.without_test(), small.test_images
    c = LabelSpreadingConfig(components=20, k=10)
    pixels = lambda t: t.reshape(len(t), -1).float().div(255).numpy()  # noqa: E731
    for seed in (0, 1):
        labeled = torch.randperm(1500, generator=torch.Generator().manual_seed(seed))[:100]
        ctx = Context(pool, labeled, seed, resolve("cpu", "fp32"), AugmentConfig(),
                      lambda: None, shared=tmp_path)
        outcome = ARMS["pixels-labelspreading"].run(ctx, c)
        assert outcome.chosen["unreached_images"] == 0  # as scikit-learn's, untouched
        ours = outcome.predict(test)
        pca = PCA(c.components, random_state=0)
        targets = np.full(1500, -1)
        targets[labeled.numpy()] = small.train_labels[labeled].numpy()
        theirs = LabelSpreading(kernel="knn", n_neighbors=c.k, alpha=c.alpha, max_iter=100,
                                n_jobs=1).fit(pca.fit_transform(pixels(small.train_images)),
                                              targets).predict(pca.transform(pixels(test)))
        assert torch.equal(ours, torch.from_numpy(theirs).long())
    assert len(list(tmp_path.glob("labelspreading-graph-*.pickle"))) == 1  # built once


def test_semisupervised_draws_share_the_pool_features_and_train_as_alone(mnist, tmp_path,
                                                                          monkeypatch):
    """Every draw starts from the pretrained encoder's features of the same pool: computed
    once a comparison, and a draw that reads them trains exactly the network it trains
    alone."""
    monkeypatch.setenv("FEWLABELS_SHARE", "0")  # the same threads throughout, even on a busy CPU
    import torch

    from fewlabels.arms import Context
    from fewlabels.augment import AugmentConfig
    from fewlabels.encoders import ConvEncoder
    from fewlabels.runtime import resolve
    from fewlabels.semisupervised import SemiSupervisedConfig

    torch.manual_seed(0)
    encoder = ConvEncoder(width=4)
    pool = mnist.subset(train=600, test=10).without_test()
    s = SemiSupervisedConfig(epochs=1, batch=16, ratio=3, head_epochs=5, hard_share=0)
    for seed in (0, 1):
        labeled = torch.arange(seed * 50, seed * 50 + 50)
        nets = [ARMS["semisupervised"].run(
            Context(pool, labeled, seed, resolve("cpu", "fp32"), AugmentConfig(), lambda: None,
                    encoder, shared=shared), s).net for shared in (None, tmp_path)]
        alone, shared = (n.state_dict() for n in nets)
        assert all(torch.equal(alone[k], shared[k]) for k in alone)
    assert len(list(tmp_path.glob("pool-features-*.pickle"))) == 1  # computed once
