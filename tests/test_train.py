import pytest
import torch

from fewlabels.errors import UsageError
from fewlabels.runtime import resolve
from fewlabels.train import TrainingDiverged, batch_size, loop, shuffled_batches

CPU = resolve("cpu", "fp32")


@pytest.mark.parametrize("batch, n, expected", [
    (0.05, 48000, 2400), (0.4, 600, 240), (0.5, 600, 300), (64, 600, 64), (1000, 600, 600),
    (1.0, 600, 600), (0.0001, 600, 1)])
def test_batch_size(batch, n, expected):
    assert batch_size(batch, n) == expected


@pytest.mark.parametrize("batch", [0, -1, 1.5, "big"])
def test_bad_batch(batch):
    with pytest.raises(UsageError, match="batch="):
        batch_size(batch, 100)


def test_shuffled_batches_cover_each_epoch_once():
    it = shuffled_batches(torch.arange(10), 4, torch.Generator().manual_seed(0))
    epoch = torch.cat([next(it) for _ in range(3)])
    assert sorted(epoch.tolist()) == list(range(10))


def test_fit_lowers_a_quadratic_and_logs():
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    batches = iter(lambda: torch.zeros(1), None)
    h = loop([w], lambda b: ((w ** 2).sum(), {"norm": w.norm().item()}), batches, steps=200,
            lr=0.05, runtime=CPU, log_every=10, progress=False)
    assert len(h.records) == 20 and h.records[-1]["step"] == 200
    assert h.records[-1]["loss"] < 0.01 * h.records[0]["loss"]
    assert "norm" in h.records[0]


def test_fit_stops_on_a_non_finite_loss_before_touching_weights():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    losses = iter([w.sum(), w.sum() * float("nan")])
    with pytest.raises(TrainingDiverged, match="nan at step 2.*lower it"):
        loop([w], lambda b: (next(losses), {}), iter(lambda: None, 1), steps=5, lr=0.1,
            runtime=CPU, progress=False)
    assert w.item() == pytest.approx(0.9, abs=1e-6)  # one Adam step of lr 0.1, then stopped


def test_fit_is_deterministic_under_a_seed():
    def once():
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
        batches = shuffled_batches(torch.arange(32), 8, torch.Generator().manual_seed(2))
        loop(list(model.parameters()), lambda b: (model(x[b]).pow(2).mean(), {}), batches,
            steps=20, lr=0.01, runtime=CPU, progress=False)
        return model.weight.detach().clone()

    assert torch.equal(once(), once())


def test_sgd_decays_kernels_not_vectors_and_keeps_each_groups_rate():
    """FixMatch's SGD: Nesterov momentum 0.9, weight decay coupled to the gradient, none on
    BatchNorm weights and biases. With a zero loss the first step is the decay alone:
    w − lr·(1 + 0.9)·wd·w (Nesterov's first step counts the gradient twice, less 0.1)."""
    w, b, v = (torch.nn.Parameter(torch.ones(*shape)) for shape in ((2, 2), (2,), (2, 2)))
    groups = [{"params": [w, b]}, {"params": [v], "lr_scale": 0.1}]
    zero = (w.sum() + b.sum() + v.sum()) * 0
    loop(groups, lambda _: (zero, {}), iter(lambda: None, 1), steps=1, lr=0.1,
         weight_decay=0.5, runtime=CPU, progress=False, optimizer="sgd")
    assert torch.allclose(w, torch.full((2, 2), 1 - 0.1 * 1.9 * 0.5))
    assert torch.allclose(v, torch.full((2, 2), 1 - 0.01 * 1.9 * 0.5))
    assert torch.equal(b.detach(), torch.ones(2))


def test_an_unknown_optimizer_is_refused_before_a_step():
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(UsageError, match="optimizer.*adam.*sgd"):
        loop([w], lambda _: (w.sum(), {}), iter(lambda: None, 1), steps=1, lr=0.1,
             runtime=CPU, progress=False, optimizer="adam")
    assert torch.equal(w.detach(), torch.ones(2))
