import pytest
import torch

from fewlabels.classifiers import (
    FrozenEncoderChanged,
    ProbeConfig,
    knn_accuracy,
    linear_probe,
    predict,
)
from fewlabels.encoders import ConvEncoder
from fewlabels.errors import UsageError
from fewlabels.runtime import resolve

CPU = resolve("cpu", "fp32")


def test_knn_on_separable_clusters():
    ref = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    assert knn_accuracy(ref, labels, query, torch.tensor([0, 1]), k=1) == 1.0
    assert knn_accuracy(ref, labels, query, torch.tensor([1, 0]), k=3) == 0.0


def test_linear_probe_is_frozen_and_beats_chance(mnist_slice):
    torch.manual_seed(0)
    enc = ConvEncoder(width=8)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    imgs, labels = mnist_slice.train_images[:300], mnist_slice.train_labels[:300]
    r = linear_probe(enc, imgs, labels, ProbeConfig(epochs=30, augment=False), CPU)
    right = predict(enc, r["head"], mnist_slice.test_images, CPU) == mnist_slice.test_labels
    assert right.float().mean() > 0.3  # random conv features + a linear layer; chance is 0.1
    assert r["weight_decay"] in ProbeConfig().weight_decays
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k])  # BN running stats included: eval mode held


def test_probe_detects_an_encoder_that_changes(mnist_slice, monkeypatch):
    enc = ConvEncoder(width=8)
    import fewlabels.classifiers as ev

    real = ev.features

    def leaky(encoder, images, rt, chunk=2048):
        encoder.train()  # a bug that would update BatchNorm statistics
        with torch.no_grad():
            encoder(images.float()[:8] / 255)
        return real(encoder, images, rt, chunk)

    monkeypatch.setattr(ev, "features", leaky)
    with pytest.raises(FrozenEncoderChanged):
        linear_probe(enc, mnist_slice.train_images[:50], mnist_slice.train_labels[:50],
                     ProbeConfig(epochs=2, augment=False, weight_decays=[1e-3]), CPU)


def test_finetune_changes_the_encoder_and_the_probe_does_not(mnist_slice):
    from fewlabels.augment import AugmentConfig
    from fewlabels.classifiers import FinetuneConfig, train_network, with_fitted_head

    torch.manual_seed(0)
    pretrained = ConvEncoder(width=4)
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    images, labels = mnist_slice.train_images[:200], mnist_slice.train_labels[:200]
    probe = linear_probe(pretrained, images, labels, ProbeConfig(epochs=5), CPU)
    assert all(torch.equal(v, pretrained.state_dict()[k]) for k, v in before.items())
    cfg = FinetuneConfig(epochs=2, lrs=[1e-3, 3e-3], encoder_lr_scale=0.1, head_epochs=10)
    r = train_network(lambda x, y: with_fitted_head(pretrained, x, y, 10, 10, CPU, 0),
                      images, labels, cfg, CPU, AugmentConfig(), seed=0)
    tuned = r["net"].encoder.state_dict()
    assert any(not torch.equal(v, tuned[k]) for k, v in before.items())
    assert all(torch.equal(v, pretrained.state_dict()[k]) for k, v in before.items())
    assert r["lr"] in cfg.lrs and set(r["val_scores"]) == {"0.001", "0.003"}
    assert probe["head"].out_features == 10


def test_batchnorm_recalibration_measures_the_images_it_is_given():
    from fewlabels.classifiers import recalibrate_batchnorm
    from fewlabels.encoders import ClassifierNet

    torch.manual_seed(0)
    net = ClassifierNet(ConvEncoder(width=4), 10).eval()
    first_bn = net.encoder.net[1]
    first_bn.running_mean.fill_(5.0)  # statistics of other inputs
    first_bn.running_var.fill_(9.0)
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    rt = resolve("cpu", "fp32")
    recalibrate_batchnorm(net, images, rt, chunk=64)
    assert not net.training
    with torch.no_grad():
        conv = net.encoder.net[0](images.float() / 255)  # the first convolution's output
    assert torch.allclose(first_bn.running_mean, conv.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(first_bn.running_var, conv.var((0, 2, 3), unbiased=True), atol=1e-5)


def test_supervised_training_smooths_its_labels_except_in_the_notebooks_recipe():
    import torch.nn.functional as F

    from fewlabels.classifiers import FinetuneConfig, SupervisedConfig, classification_loss
    from fewlabels.config import load_preset
    from fewlabels.encoders import ClassifierNet

    assert SupervisedConfig().label_smoothing == FinetuneConfig().label_smoothing == 0.1
    assert load_preset("seed").supervised.label_smoothing == 0  # the notebook's own loss
    torch.manual_seed(0)
    net = ClassifierNet(ConvEncoder(width=4), 10).eval()
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
    g = torch.Generator().manual_seed(0)
    smoothed, _ = classification_loss(net, x, y, None, g, 0.1)(torch.arange(8))
    plain, _ = classification_loss(net, x, y, None, g)(torch.arange(8))
    logits = net(x).float()
    assert torch.allclose(smoothed, F.cross_entropy(logits, y, label_smoothing=0.1))
    assert torch.allclose(plain, F.cross_entropy(logits, y)) and not torch.allclose(plain,
                                                                                    smoothed)


def test_the_loss_floor_of_smoothed_targets_is_fitted_and_chance_is_not():
    import math

    from fewlabels.classifiers import fitted_share

    assert fitted_share(math.log(10), 10, 0.1) == pytest.approx(0.0, abs=1e-12)
    # the entropy of targets smoothed by 0.1 over ten classes: 0.91 and nine times 0.01
    floor = -0.91 * math.log(0.91) - 9 * 0.01 * math.log(0.01)
    assert fitted_share(floor, 10, 0.1) == pytest.approx(1.0)
    assert fitted_share(0.0, 10, 0.0) == pytest.approx(1.0)
    assert fitted_share(5.0, 1, 0.1) == 1.0  # one class: nothing to fit


@pytest.mark.parametrize("share, cycles", [(0.8, 1), (0.7, 3)])
def test_supervised_training_runs_another_cycle_while_it_ends_under_fitted(
        mnist_slice, monkeypatch, share, cycles):
    from fewlabels import classifiers
    from fewlabels.augment import AugmentConfig
    from fewlabels.classifiers import SupervisedConfig, train_network
    from fewlabels.encoders import ClassifierNet

    def make_net(images, labels):
        torch.manual_seed(0)
        return ClassifierNet(ConvEncoder(width=4), 10)

    losses = []
    monkeypatch.setattr(classifiers, "fitted_share",
                        lambda loss, *args: losses.append(loss) or share)
    images, labels = mnist_slice.train_images[:64], mnist_slice.train_labels[:64]
    cfg = SupervisedConfig(epochs=2, batch=32, cycles=3, fit_level=0.75).validate()
    r = train_network(make_net, images, labels, cfg, CPU, AugmentConfig(), seed=0)
    records = r["history"].records
    assert r["cycles"] == cycles == records[-1]["cycle"] == len(losses)
    assert records[-1]["epoch"] == 2 * cycles and records[-1]["step"] == 4 * cycles
    assert [r["cycle"] for r in records] == sorted(r["cycle"] for r in records)
    # each cycle is judged by the mean loss of its last epoch's records
    for cycle, loss in enumerate(losses, 1):
        last = [r["loss"] for r in records if r["cycle"] == cycle and r["epoch"] > 2 * cycle - 1]
        assert loss == pytest.approx(sum(last) / len(last))
    with pytest.raises(UsageError, match=r"fit_level=1.5 is out of range: .* in \[0, 1\]"):
        SupervisedConfig(fit_level=1.5).validate()
    with pytest.raises(UsageError, match="cycles=0 is not allowed: it must be a positive integer"):
        SupervisedConfig(cycles=0).validate()
    with pytest.raises(UsageError, match="cycles=101 is out of range: at most 100 cycles"):
        SupervisedConfig(cycles=101).validate()


def test_labels_too_few_to_split_keep_the_first_candidate_unscored():
    """Two labeled images split 0.2 leave none to choose with (NaN scores chose by order):
    the first candidate is trained on both and no score is claimed. `compare` refuses such
    a split before any work (tests/test_cli.py); `fit` on a handful of labels gets this."""
    from fewlabels.classifiers import _choose_on_validation

    fitted = []

    def fit(candidate, idx):
        fitted.append((candidate, idx.tolist()))
        return candidate, None

    (model, _), best, scores = _choose_on_validation(
        [1e-3, 3e-3], torch.tensor([0, 1]), 0.2, 0, fit, lambda m, idx: 1.0)
    assert (model, best, scores) == (1e-3, 1e-3, {}) and fitted == [(1e-3, [0, 1])]
    (_, _), best, scores = _choose_on_validation(
        [1e-3, 3e-3], torch.arange(10) % 2, 0.2, 0, fit, lambda m, idx: m)
    assert best == 3e-3 and set(scores) == {"0.001", "0.003"}  # ten split 8 / 2: chosen
