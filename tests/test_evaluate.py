import pytest
import torch

from fewlabels.encoders import ConvEncoder
from fewlabels.evaluate import FrozenEncoderChanged, ProbeConfig, knn_accuracy, linear_probe
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
    r = linear_probe(enc, imgs, labels, mnist_slice.test_images, mnist_slice.test_labels,
                     ProbeConfig(epochs=30, augment=False), CPU)
    assert r["test_accuracy"] > 0.3  # random conv features + a linear layer; chance is 0.1
    assert r["weight_decay"] in ProbeConfig().weight_decays
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k])  # BN running stats included: eval mode held


def test_probe_detects_an_encoder_that_changes(mnist_slice, monkeypatch):
    enc = ConvEncoder(width=8)
    import fewlabels.evaluate as ev

    real = ev.features

    def leaky(encoder, images, rt, chunk=2048):
        encoder.train()  # a bug that would update BatchNorm statistics
        with torch.no_grad():
            encoder(images.float()[:8] / 255)
        return real(encoder, images, rt, chunk)

    monkeypatch.setattr(ev, "features", leaky)
    with pytest.raises(FrozenEncoderChanged):
        linear_probe(enc, mnist_slice.train_images[:50], mnist_slice.train_labels[:50],
                     mnist_slice.test_images[:50], mnist_slice.test_labels[:50],
                     ProbeConfig(epochs=2, augment=False, weight_decays=[1e-3]), CPU)
