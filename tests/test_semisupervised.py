import pytest
import torch
import torch.nn.functional as F

from fewlabels import semisupervised
from fewlabels.augment import AugmentConfig
from fewlabels.classifiers import with_fitted_head
from fewlabels.config import load_preset, parse_set
from fewlabels.encoders import ConvEncoder
from fewlabels.errors import UsageError
from fewlabels.runtime import resolve
from fewlabels.semisupervised import (
    SemiSupervisedConfig,
    consistency_loss,
    flexible_thresholds,
    pool_predictions,
    resized,
    settled_views,
    train_semisupervised,
)


def test_pseudo_labels_under_the_threshold_add_nothing():
    weak = torch.tensor([[8.0, 0, 0], [0.3, 0.2, 0.1], [0, 0, 9.0]])  # rows 0, 2 confident
    strong = torch.randn(3, 3, requires_grad=True)
    loss, mask, confidence, pseudo = consistency_loss(weak, strong, threshold=0.95)
    assert pseudo.tolist() == [0, 0, 2] and confidence[0] > 0.99
    assert mask.tolist() == [True, False, True]
    expected = (F.cross_entropy(strong[0:1], torch.tensor([0]))
                + F.cross_entropy(strong[2:3], torch.tensor([2]))) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert torch.equal(strong.grad[1], torch.zeros(3))  # the unsure row pulls on nothing
    assert strong.grad[0].abs().sum() > 0
    # nothing confident: zero, and still a tensor that backpropagates
    none, mask, *_ = consistency_loss(torch.zeros(4, 3), torch.randn(4, 3, requires_grad=True),
                                      0.9)
    assert none.item() == 0 and not mask.any() and none.requires_grad


def test_the_weak_views_get_no_gradient():
    weak = torch.tensor([[5.0, 0.0]], requires_grad=True)
    loss, *_ = consistency_loss(weak, torch.tensor([[0.0, 1.0]], requires_grad=True), 0.5)
    loss.backward()
    assert weak.grad is None


def test_distribution_alignment_moves_pseudo_labels_towards_the_prior():
    weak = torch.tensor([[1.2, 1.0]])  # class 0 by a little
    prior = torch.tensor([0.5, 0.5])
    running = torch.tensor([0.9, 0.1])  # the pool has been predicted class 0 far too often
    *_, plain = consistency_loss(weak, torch.zeros(1, 2), 0.0)
    loss, _, confidence, aligned = consistency_loss(weak, torch.tensor([[0.0, 5.0]]), 0.0,
                                                    prior, running)
    assert plain.tolist() == [0] and aligned.tolist() == [1]  # alignment flipped it
    # aligned probabilities by hand: softmax(1.2, 1.0) · (0.5 / 0.9, 0.5 / 0.1), renormalised
    p = torch.softmax(weak, 1)[0] * torch.tensor([0.5 / 0.9, 0.5 / 0.1])
    assert confidence.item() == pytest.approx((p[1] / p.sum()).item())
    assert loss.item() < 0.1  # the strong view already says class 1


def test_semisupervised_training_trains_the_encoder_on_labels_and_pool(mnist_slice):
    rt = resolve("cpu", "fp32")
    torch.manual_seed(0)
    encoder = ConvEncoder(width=4)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    images, labels = mnist_slice.train_images[:100], mnist_slice.train_labels[:100]
    net = with_fitted_head(encoder, images, labels, 10, 20, rt, seed=0)
    cfg = SemiSupervisedConfig(epochs=1, batch=16, ratio=3, threshold=0.1, hard_share=0)
    start, _ = pool_predictions(net, mnist_slice.train_images[:480], rt)
    history, chosen = train_semisupervised(net, images, labels, mnist_slice.train_images[:480],
                                           cfg, rt, AugmentConfig(), seed=0)
    assert len(history.records) > 0 and all("confident" in r for r in history.records)
    assert chosen["epochs"] == 1
    # the share that sets the passes is read at the rule's confidence, not the threshold's
    share = round((start >= cfg.hard_confidence).float().mean().item(), 4)
    assert share != round((start >= cfg.threshold).float().mean().item(), 4)
    assert chosen["confident_share_at_start"] == share
    assert chosen["flexible"]  # 10 labels a class, under the default's 20
    assert not net.training
    changed = any(not torch.equal(v, net.encoder.state_dict()[k]) for k, v in before.items())
    assert changed, "semi-supervised training moves the encoder"
    # the pretrained encoder handed in is a copy's source, left as it was
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in before.items())


def test_the_moving_average_becomes_the_final_model(mnist_slice):
    rt = resolve("cpu", "fp32")
    torch.manual_seed(0)
    images, labels = mnist_slice.train_images[:64], mnist_slice.train_labels[:64]
    pool = mnist_slice.train_images[:256]
    encoder = ConvEncoder(width=4)
    finals = {}
    for ema in (0.0, 0.9):  # the same start, the same steps: only the averaging differs
        net = with_fitted_head(encoder, images, labels, 10, 5, rt, seed=0)
        start = {k: v.clone() for k, v in net.state_dict().items()}
        cfg = SemiSupervisedConfig(epochs=2, batch=16, ratio=2, threshold=0.5, ema=ema,
                                   hard_share=0)  # a new encoder's pool: 2 passes, not 20
        train_semisupervised(net, images, labels, pool, cfg, rt, AugmentConfig(), seed=0)
        finals[ema] = net.state_dict()["head.weight"].clone()
        assert not torch.equal(finals[ema], start["head.weight"])
    assert not torch.allclose(finals[0.0], finals[0.9])


class _Fixed(torch.nn.Module):
    """A 'network' whose confidence on image i is set by its first pixel."""

    def forward_features(self, x):
        top = x[:, 0, 0, 0] * 10  # pixel 255 → logit 10 (confident), 0 → 0 (uniform)
        return torch.stack([top, torch.zeros_like(top)], 1)

    def forward_head(self, features):
        return features


def test_a_pool_that_starts_unsure_gets_the_longer_schedule():
    rt = resolve("cpu", "fp32")
    pool = torch.zeros(100, 1, 4, 4, dtype=torch.uint8)
    pool[:30, 0, 0, 0] = 255  # 30% confident
    net = _Fixed()

    def share():
        return (pool_predictions(net, pool, rt)[0] >= 0.9).float().mean().item()

    assert share() == pytest.approx(0.3)
    cfg = SemiSupervisedConfig(epochs=8, hard_pool_epochs=12, hard_share=0.5, threshold=0.9,
                               reduced_share=0.25, hard_pool_reduced_share=0.5)
    assert cfg.pool_schedule(share()) == (12, 0.5)  # a hard pool: more passes, half reduced
    pool[:60, 0, 0, 0] = 255  # 60%: not hard
    assert cfg.pool_schedule(share()) == (8, 0.25)
    cfg.hard_share = 0  # the rule switched off
    pool[:, 0, 0, 0] = 0
    assert cfg.pool_schedule(share()) == (8, 0.25)
    before = torch.get_rng_state()
    pool_predictions(net, pool, rt)
    assert torch.equal(torch.get_rng_state(), before) and not net.training


def test_flexible_thresholds_lower_the_bar_for_classes_that_claimed_little_of_the_pool():
    claims = torch.tensor([0] * 6 + [1] * 3 + [-1])  # class 2 claimed nothing yet
    t = flexible_thresholds(claims, 3, 0.9)
    assert t[0] == pytest.approx(0.9)  # the best-learnt class keeps the full threshold
    assert t[1] == pytest.approx(0.9 * 0.5 / 1.5) and t[2] == 0
    # warm-up: while most of the pool is unclaimed, every threshold is low
    warm = flexible_thresholds(torch.tensor([0, 1] + [-1] * 8), 3, 0.9)
    assert warm.tolist() == pytest.approx([0.9 * (1 / 8) / (2 - 1 / 8)] * 2 + [0])
    # per-class thresholds in the loss: the same confidence counts for one class only
    weak = torch.tensor([[2.0, 0, 0], [0, 2.0, 0]])  # 0.79 sure of class 0, of class 1
    _, mask, *_ = consistency_loss(weak, torch.zeros(2, 3), torch.tensor([0.9, 0.3, 0.0]))
    assert mask.tolist() == [False, True]


def test_flexible_thresholds_apply_under_the_labels_a_class_and_are_seeded(mnist_slice):
    rt = resolve("cpu", "fp32")
    images, labels = mnist_slice.train_images[:64], mnist_slice.train_labels[:64]
    pool = mnist_slice.train_images[:256]
    torch.manual_seed(0)
    encoder = ConvEncoder(width=4)
    states, flags = [], []
    for below in (7, 7, 6):  # 6.4 labels a class: flexible, flexible, fixed threshold
        net = with_fitted_head(encoder, images, labels, 10, 5, rt, seed=0)
        cfg = SemiSupervisedConfig(epochs=2, batch=16, ratio=2, threshold=0.5,
                                   flexible_below=below, hard_share=0)
        history, chosen = train_semisupervised(net, images, labels, pool, cfg, rt,
                                               AugmentConfig(), seed=0)
        assert all("confident" in r for r in history.records)
        states.append(net.state_dict())
        flags.append(chosen["flexible"])
    assert flags == [True, True, False]
    assert all(torch.equal(v, states[1][k]) for k, v in states[0].items())
    assert any(not torch.equal(v, states[2][k]) for k, v in states[0].items())


@pytest.mark.parametrize("confident_only", [False, True])
def test_the_student_computes_only_counted_strong_views_unless_told_otherwise(
        mnist_slice, monkeypatch, confident_only):
    rt = resolve("cpu", "fp32")
    torch.manual_seed(0)
    images, labels = mnist_slice.train_images[:96], mnist_slice.train_labels[:96]  # 6 × 16
    net = with_fitted_head(ConvEncoder(width=4), images, labels, 10, 20, rt, seed=0)
    pool = mnist_slice.train_images[:480]
    start, _ = pool_predictions(net, pool, rt)
    cfg = SemiSupervisedConfig(epochs=1, batch=16, ratio=3, hard_share=0,
                               threshold=start.median().item(),  # about half count at first
                               ema=0, align=False, flexible_below=0,
                               confident_only=confident_only)
    seen, counted = [], []  # images in each training-mode forward; counted pool images
    net.register_forward_hook(lambda m, i, o: seen.append(len(o)) if m.training else None)
    real_pseudo_labels = semisupervised.pseudo_labels

    def recording(*args, **kwargs):
        mask, confidence, pseudo = real_pseudo_labels(*args, **kwargs)
        counted.append(int(mask.sum()))
        return mask, confidence, pseudo

    monkeypatch.setattr(semisupervised, "pseudo_labels", recording)
    history, _ = train_semisupervised(net, images, labels, pool, cfg, rt, AugmentConfig(),
                                      seed=0)
    assert len(seen) == len(counted) == 10  # 480 pool images, 48 a step
    assert any(0 < c < 48 for c in counted), counted  # steps where some pool images do not count
    expected = [16 + c for c in counted] if confident_only else [16 + 48] * 10
    assert seen == expected
    assert len(history.records) == 10


def test_settled_views_are_thinned_and_reweighted_so_the_term_keeps_its_expectation():
    cfg = SemiSupervisedConfig(settled_loss=0.05, settled_share=0.25)
    n = 40_000
    kept = torch.arange(n)
    last = torch.where(kept % 2 == 0, 0.01, float("inf"))  # even positions settled
    g = torch.Generator().manual_seed(0)
    chosen, weights = settled_views(kept, last, cfg, g)
    odd = chosen % 2 == 1
    assert torch.equal(chosen[odd], kept[1::2])  # every unsettled view stays, at weight 1
    assert torch.all(weights[odd] == 1)
    assert torch.all(weights[~odd] == 4)  # the settled ones kept stand for four each
    assert abs(int((~odd).sum()) / (n / 2) - 0.25) < 0.01
    assert abs(float(weights[~odd].sum()) / (n / 2) - 1) < 0.04  # the expected total
    again, _ = settled_views(kept, last, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(again, chosen)  # drawn from the generator it is given


def test_settled_pool_images_skip_teacher_and_student_on_most_visits(mnist_slice, monkeypatch):
    rt = resolve("cpu", "fp32")
    torch.manual_seed(0)
    images, labels = mnist_slice.train_images[:96], mnist_slice.train_labels[:96]
    net = with_fitted_head(ConvEncoder(width=4), images, labels, 10, 20, rt, seed=0)
    pool = mnist_slice.train_images[:96]  # two steps a pass: each image seen once a pass
    # every view counts and any loss is "settled": from the second pass on, a quarter of
    # the pool's views reach the student
    cfg = SemiSupervisedConfig(epochs=4, batch=16, ratio=3, hard_share=0, threshold=0,
                               ema=0, align=False, flexible_below=0, settled_loss=1e9,
                               settled_share=0.25)
    seen = []
    net.register_forward_hook(lambda m, i, o: seen.append(len(o)) if m.training else None)
    history, chosen = train_semisupervised(net, images, labels, pool, cfg, rt,
                                           AugmentConfig(), seed=0)
    assert seen[:2] == [16 + 48] * 2  # the first pass: no image has a loss yet
    later = sum(seen[2:]) - 16 * len(seen[2:])
    assert 0.1 * 48 * 6 < later < 0.45 * 48 * 6, seen
    assert chosen["student_share"] == pytest.approx(
        sum(r["computed"] for r in history.records) / len(history.records), abs=1e-4)
    assert chosen["student_share"] < 0.7
    # the teacher skips the images left out as well: it looks at what the student computes
    assert chosen["teacher_share"] == chosen["student_share"]


def test_resized_scales_height_and_width_and_keeps_full_size_and_empty_batches():
    x = torch.rand(3, 2, 28, 36)
    assert resized(x, 0.72).shape == (3, 2, 20, 26)
    assert resized(x, 1.0) is x
    assert resized(torch.rand(0, 1, 28, 28), 0.5).shape == (0, 1, 28, 28)
    assert resized(torch.rand(1, 1, 2, 2), 0.1).shape == (1, 1, 1, 1)
    flat = torch.full((1, 1, 28, 28), 0.25)  # a mean-preserving filter keeps a flat image
    assert torch.allclose(resized(flat, 0.5), torch.full((1, 1, 14, 14), 0.25))


def test_the_first_steps_see_reduced_images_teacher_and_student_alike(mnist_slice):
    rt = resolve("cpu", "fp32")
    torch.manual_seed(0)
    images, labels = mnist_slice.train_images[:96], mnist_slice.train_labels[:96]
    net = with_fitted_head(ConvEncoder(width=4), images, labels, 10, 20, rt, seed=0)
    # eight steps (two a pass), the first three quarters at half the side
    cfg = SemiSupervisedConfig(epochs=4, batch=16, ratio=3, hard_share=0, threshold=0,
                               ema=0.5, align=False, flexible_below=0, settled_loss=0,
                               reduced_side=0.5, reduced_share=0.75)
    seen = []
    hook = lambda m, i, o: seen.append((m.training, tuple(i[0].shape[-2:])))  # noqa: E731
    net.register_forward_hook(hook)  # the teacher, a copy of net, keeps it too
    history, chosen = train_semisupervised(net, images, labels, images, cfg, rt,
                                           AugmentConfig(), seed=0)
    assert chosen["reduced_share"] == 0.75
    # each step: the teacher (eval mode) on the weak views, then the student, at one size
    assert seen == [(False, (14, 14)), (True, (14, 14))] * 6 + [
        (False, (28, 28)), (True, (28, 28))] * 2, seen
    assert len(history.records) == 8
    with pytest.raises(UsageError, match="reduced_side"):
        SemiSupervisedConfig(reduced_side=0).validate()
    with pytest.raises(UsageError, match="reduced_share"):
        SemiSupervisedConfig(reduced_share=1.5).validate()
    with pytest.raises(UsageError, match="hard_pool_reduced_share"):
        SemiSupervisedConfig(hard_pool_reduced_share=-0.1).validate()


def test_frozen_layers_keep_their_pretrained_weights_and_the_rest_trains(mnist_slice):
    rt = resolve("cpu", "fp32")
    torch.manual_seed(0)
    images, labels = mnist_slice.train_images[:100], mnist_slice.train_labels[:100]
    net = with_fitted_head(ConvEncoder(width=4), images, labels, 10, 20, rt, seed=0)
    before = {k: v.clone() for k, v in net.encoder.named_parameters()}
    cfg = SemiSupervisedConfig(epochs=1, batch=16, ratio=3, threshold=0.5, hard_share=0,
                               frozen_layers=2)
    train_semisupervised(net, images, labels, mnist_slice.train_images[:480], cfg, rt,
                         AugmentConfig(), seed=0)
    after = dict(net.encoder.named_parameters())
    # net.0/1: the first convolution and its BatchNorm; net.3/4 the second; net.6 the third
    for name in ("net.0.weight", "net.1.weight", "net.1.bias", "net.3.weight", "net.4.bias"):
        assert torch.equal(before[name], after[name]), name
    for name in ("net.6.weight", "net.9.weight"):
        assert not torch.equal(before[name], after[name]), name
    too_many = SemiSupervisedConfig(epochs=1, batch=16, ratio=3, frozen_layers=5)
    with pytest.raises(Exception, match=r"semisupervised.frozen_layers=5 is out of range: "
                                        r"this encoder has 4 weight layers"):
        train_semisupervised(net, images, labels, mnist_slice.train_images[:480], too_many,
                             rt, AugmentConfig(), seed=0)


def test_recalibration_leaves_the_final_model_with_the_clean_pools_statistics(mnist_slice):
    rt = resolve("cpu", "fp32")
    torch.manual_seed(0)
    images, labels = mnist_slice.train_images[:100], mnist_slice.train_labels[:100]
    pool = mnist_slice.train_images[:480]
    net = with_fitted_head(ConvEncoder(width=4), images, labels, 10, 20, rt, seed=0)
    cfg = SemiSupervisedConfig(epochs=1, batch=16, ratio=3, threshold=0.5, hard_share=0,
                               recalibrate=True)
    train_semisupervised(net, images, labels, pool, cfg, rt, AugmentConfig(), seed=0)
    with torch.no_grad():  # the first convolution on the clean pool, in chunks of 256
        chunks = [net.encoder.net[0](part.float() / 255).mean((0, 2, 3))
                  for part in pool.split(256)]
    assert torch.allclose(net.encoder.net[1].running_mean, sum(chunks) / len(chunks), atol=1e-5)


def test_flexmatch_scales_its_own_base_threshold_and_one_threshold_is_the_other(mnist_slice,
                                                                                monkeypatch):
    """Two regimes, two thresholds, each chosen on its own development runs: under
    ``flexible_below`` labels a class FlexMatch's class thresholds scale
    ``flexible_threshold``; above it every pseudo-label needs ``threshold``."""
    rt = resolve("cpu", "fp32")
    torch.manual_seed(0)
    images, labels = mnist_slice.train_images[:100], mnist_slice.train_labels[:100]
    pool = mnist_slice.train_images[:480]
    bases, used = [], []
    real_flexible, real_pseudo = (semisupervised.flexible_thresholds,
                                  semisupervised.pseudo_labels)
    monkeypatch.setattr(semisupervised, "flexible_thresholds",
                        lambda c, k, t: bases.append(t) or real_flexible(c, k, t))
    monkeypatch.setattr(semisupervised, "pseudo_labels",
                        lambda w, t, *a: used.append(t) or real_pseudo(w, t, *a))
    for below in (20, 0):  # 10 labels a class: flexible, then one threshold
        net = with_fitted_head(ConvEncoder(width=4), images, labels, 10, 20, rt, seed=0)
        cfg = SemiSupervisedConfig(epochs=1, batch=16, ratio=3, hard_share=0, threshold=0.3,
                                   flexible_threshold=0.9, flexible_below=below)
        _, chosen = train_semisupervised(net, images, labels, pool, cfg, rt, AugmentConfig(),
                                         seed=0)
        assert chosen["flexible"] == (below > 0)
    assert len(bases) == 10 and set(bases) == {0.9}  # the flexible run's 10 steps
    assert all(torch.is_tensor(t) and (t <= 0.9).all() for t in used[:10])
    assert used[10:] == [0.3] * 10


def test_a_reduced_side_that_leaves_images_of_a_few_pixels_is_refused_before_any_work():
    """``reduced_side=0.01`` used to train on 1-pixel images: chance accuracy, then a NaN
    loss blamed on the learning rate. The data's side sets the least reduced side."""
    cfg = load_preset("default", parse_set(["semisupervised.reduced_side=0.01"]))
    with pytest.raises(UsageError, match=r"reduced_side=0.01 leaves 1-pixel images of this "
                                         r"data's 28-pixel side \(at least 4\): use 0.125"):
        cfg.check_data((1, 28, 28))
    with pytest.raises(UsageError, match="8-pixel side"):
        load_preset("default", parse_set(["semisupervised.reduced_side=0.3"])).check_data(
            (1, 8, 8))  # 2 pixels of scikit-learn's 8x8 digits
    load_preset("default").check_data((1, 8, 8))  # 0.86 of 8: 7 pixels, kept
    load_preset("default", parse_set(["semisupervised.reduced_side=0.01",
                                      "semisupervised.hard_pool_reduced_share=0"])
                ).check_data((1, 28, 28))  # no step reduced: nothing to refuse
