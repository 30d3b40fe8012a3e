"""Properties of each loss, on constructed inputs."""

import math

import pytest
import torch

from fewlabels.methods.autoencoder import mask_patches, reconstruction_loss
from fewlabels.methods.simclr import nt_xent
from fewlabels.methods.vicreg import covariance, invariance, variance, vicreg_loss


@pytest.mark.parametrize("loss", [nt_xent, vicreg_loss])
def test_two_view_losses_are_symmetric_in_their_views(loss):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(64, 16, generator=g), torch.randn(64, 16, generator=g)
    assert loss(z1, z2).item() == pytest.approx(loss(z2, z1).item(), rel=1e-6)


def test_nt_xent_closed_form_when_all_embeddings_are_equal():
    z = torch.ones(10, 4)
    assert nt_xent(z, z, 0.5).item() == pytest.approx(math.log(19), rel=1e-6)


def test_nt_xent_is_low_for_matched_orthogonal_pairs():
    z = torch.eye(8) * 10
    assert nt_xent(z, z, 0.1).item() < 1e-3


def test_vicreg_terms():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(256, 8, generator=g)
    assert invariance(z, z).item() == 0
    assert variance(z * 3).item() == 0  # every std ≈ 3 > γ = 1
    assert variance(torch.zeros(32, 8)).item() == pytest.approx(1 - math.sqrt(1e-4), rel=1e-6)
    # covariance: perfectly correlated pair of dims
    a = torch.randn(1000, 1, generator=g)
    zz = torch.cat([a, a], 1)
    c = covariance(zz)
    var = a.var().item()
    assert c.item() == pytest.approx(2 * var ** 2 / 2, rel=1e-4)
    assert covariance(torch.randn(4096, 4, generator=g)).item() < 0.01


def test_vicreg_weighs_the_mean_variance_of_the_two_views():
    # collapsed embeddings: every std is √eps, so each view's hinge is 1 − √eps; with the
    # authors' 25/25/1 weights the variance term adds 25 · (1 − √eps), not twice that
    z = torch.zeros(16, 8)
    assert vicreg_loss(z, z).item() == pytest.approx(25 * (1 - math.sqrt(1e-4)), rel=1e-6)


def test_reconstruction_loss_closed_form():
    assert reconstruction_loss(torch.full((2, 1, 4, 4), 0.5),
                               torch.zeros(2, 1, 4, 4)).item() == pytest.approx(0.25)


def test_mask_patches_zeroes_whole_patches_at_the_ratio():
    x = torch.ones(200, 1, 28, 28)
    m = mask_patches(x, 0.5, torch.Generator().manual_seed(0))
    again = mask_patches(x, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(m, again)  # the generator alone decides the masks
    blocks = m.unfold(2, 4, 4).unfold(3, 4, 4)  # (N, 1, 7, 7, 4, 4)
    per_block = blocks.reshape(200, 49, 16).sum(-1)
    assert set(per_block.unique().tolist()) <= {0.0, 16.0}
    assert (per_block == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_scan_terms_closed_form():
    from fewlabels.methods.scan import consistency, neg_entropy

    one_hot = torch.eye(4)
    sure = one_hot * 100  # logits of a near one-hot assignment
    assert consistency(sure, sure).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(4, 4)
    assert consistency(uniform, uniform).item() == pytest.approx(math.log(4), rel=1e-6)
    assert neg_entropy(one_hot).item() == pytest.approx(-math.log(4), rel=1e-6)
    assert neg_entropy(one_hot[:1].repeat(4, 1)).item() == pytest.approx(0.0, abs=1e-6)


def test_scan_consistency_is_symmetric():
    from fewlabels.methods.scan import consistency

    g = torch.Generator().manual_seed(2)
    a = torch.randn(32, 10, generator=g)
    b = torch.randn(32, 10, generator=g)
    assert consistency(a, b).item() == pytest.approx(consistency(b, a).item(), rel=1e-6)
    # the same value as −log ⟨softmax(a), softmax(n)⟩ computed directly
    dot = (torch.softmax(a, 1) * torch.softmax(b, 1)).sum(1)
    assert consistency(a, b).item() == pytest.approx(-dot.log().mean().item(), rel=1e-5)


def test_scan_consistency_keeps_a_gradient_for_pairs_far_apart():
    from fewlabels.methods.scan import consistency

    # two confident heads that disagree by a logit gap of 40: a clamped dot product
    # would be constant here, the logsumexp form still pulls them together
    a = torch.tensor([[40.0, 0.0]], requires_grad=True)
    n = torch.tensor([[0.0, 40.0]])
    consistency(a, n).backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0.5


class _Flatten(torch.nn.Module):
    num_features = 3

    def forward_features(self, x):
        return x.flatten(1)


def test_self_label_closed_form():
    from fewlabels.methods.scan import SelfLabelLoss

    loss = SelfLabelLoss(_Flatten(), torch.nn.Identity(), threshold=0.99)
    clean = torch.tensor([[10.0, 0, 0], [0, 10.0, 0], [10.0, 0, 0], [0, 0, 0]])
    views = torch.tensor([[1.0, 2, 3], [0, 1, 0], [2, 0, 1], [5, 5, 5]])
    # confident: rows 0-2 (targets 0, 1, 0); the uniform row 3 is left out; class 0 has
    # two samples and class 1 one, so each class-0 sample weighs half a class-1 sample
    nll = -torch.log_softmax(views[:3], 1)[[0, 1, 2], [0, 1, 0]]
    w = torch.tensor([1.0, 2.0, 1.0])
    expected = (w * nll).sum() / w.sum()
    assert loss([views], clean).item() == pytest.approx(expected.item(), rel=1e-6)


def test_self_label_is_zero_with_a_graph_when_nothing_is_confident():
    from fewlabels.methods.scan import SelfLabelLoss

    encoder = _Flatten()
    head = torch.nn.Linear(3, 3)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)  # uniform predictions: nothing passes the threshold
    out = SelfLabelLoss(encoder, head, threshold=0.5)([torch.rand(4, 3)], torch.rand(4, 3))
    assert out.item() == 0.0 and out.requires_grad


def test_self_label_with_one_confident_sample_normalises_over_the_whole_batch():
    from fewlabels.methods.scan import SelfLabelLoss

    head = torch.nn.Sequential(torch.nn.BatchNorm1d(3, affine=False), torch.nn.Linear(3, 3))
    clean = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p = torch.softmax(head(clean), 1).max(1)
    top = p.values.sort(descending=True).values
    loss = SelfLabelLoss(_Flatten(), head, threshold=float(top[1] + top[0]) / 2)
    out = loss([clean + 0.01], clean)  # only the most confident row passes the threshold
    # BatchNorm sees all 8 augmented images (as in SCAN), the loss only the confident one
    row = int(p.values.argmax())
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(head(clean + 0.01)[row:row + 1],
                                                     p.indices[row:row + 1])
    assert out.item() == pytest.approx(expected.item(), rel=1e-5) and out.item() > 0
    out.backward()
    assert head[1].weight.grad.abs().sum() > 0
