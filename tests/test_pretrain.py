import re

import pytest
import torch

from fewlabels.augment import AugmentConfig
from fewlabels.data import draw_labels
from fewlabels.errors import UsageError
from fewlabels.pretrain import PretrainConfig, load_encoder, pretrain, save_encoder
from fewlabels.runtime import resolve


def test_pretrain_monitors_knn_and_round_trips(mnist_slice, tmp_path):
    cfg = PretrainConfig(method="simclr", epochs=2, batch=300, encoder_options={"width": 4},
                         augment=AugmentConfig(rotate=5, scale=0.05, shear=0, translate=0.04))
    rt = resolve("cpu", "fp32")
    monitor = draw_labels(mnist_slice.train_labels, 200, 0)
    encoder, method, history = pretrain(mnist_slice, cfg, rt, monitor, progress=False)
    steps, knn = history.series("knn")
    assert steps == [7, 14]  # once per epoch (2,000 images / 300 per step), off the log grid
    assert all(k > 0.3 for k in knn)  # 200 labels, 5 neighbours: far above chance (0.1)
    _, loss = history.series("loss")
    assert loss[-1] < loss[0]
    path = save_encoder(tmp_path / "m.encoder", encoder, cfg, mnist_slice, history)
    back, meta = load_encoder(path)
    x = mnist_slice.test_images[:16].float() / 255
    with torch.no_grad():
        assert torch.equal(back(x), encoder.eval()(x))
    assert meta["pretrain"]["method"] == "simclr" and meta["history"] == history.records


def test_refine_stage_mines_neighbors_and_continues_the_history(mnist_slice):
    cfg = PretrainConfig(method="vicreg", epochs=1, batch=500, encoder_options={"width": 4},
                         refine="scan", refine_epochs=1, refine_options={"clusters": 10},
                         neighbors=5, self_label_epochs=1, self_label_threshold=0.5)
    rt = resolve("cpu", "fp32")
    monitor = draw_labels(mnist_slice.train_labels, 200, 0)
    seen = []
    encoder, method, history = pretrain(
        mnist_slice, cfg, rt, monitor, progress=False,
        after_stage=lambda stage, m, h: seen.append((stage.name, type(m).__name__,
                                                     len(h.records))))
    assert type(method).__name__ == "SelfLabelLoss" and method.encoder is encoder
    assert [name for name, _, _ in seen] == ["vicreg", "scan round 1", "self-label"]
    assert seen[-1][1] == "SelfLabelLoss" and seen[-1][2] == len(history.records)
    assert seen[0][2] < seen[1][2] < seen[2][2]  # each told after its own stage trained
    steps, knn = history.series("knn")
    assert steps == [4, 8, 12] and len(knn) == 3
    phases = [r["phase"] for r in history.records]
    assert list(dict.fromkeys(phases)) == ["vicreg", "scan round 1", "self-label"]


def test_scan_on_a_pool_smaller_than_its_neighbours_takes_every_other_image(mnist_slice):
    """A folder of six images has five others to mine, not cfg.neighbors (20): SCAN trains
    on them instead of failing in topk."""
    cfg = PretrainConfig(method="simclr", epochs=1, batch=4, encoder_options={"width": 4},
                         refine="scan", refine_epochs=1, refine_options={"clusters": 10})
    tiny = mnist_slice.subset(train=6, test=6)
    _, method, history = pretrain(tiny, cfg, resolve("cpu", "fp32"), None, progress=False)
    assert type(method).__name__ == "SCANLoss" and cfg.neighbors > 5
    assert [r["phase"] for r in history.records][-1] == "scan round 1"


@pytest.mark.parametrize("fields, words", [
    ({"self_label_epochs": 1}, "needs a SCAN refine stage"),
    ({"refine": "scan", "refine_epochs": 1, "self_label_epochs": 1,
      "self_label_threshold": 1.5}, "is out of range: use a fraction in (0, 1)"),
])
def test_self_label_settings_are_checked_before_training(fields, words):
    with pytest.raises(UsageError, match=re.escape(words)):
        PretrainConfig(**fields).validate()


def test_nearest_neighbors_excludes_self():
    from fewlabels.pretrain import nearest_neighbors

    f = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])
    nb = nearest_neighbors(f, 1, chunk=3)
    assert nb.flatten().tolist() == [1, 0, 3, 2]


def test_nearest_neighbors_in_chunks_match_the_whole_similarity_matrix():
    from fewlabels.pretrain import nearest_neighbors

    f = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    g = torch.nn.functional.normalize(f, dim=1)
    sim = g @ g.t()
    sim.fill_diagonal_(float("-inf"))
    expected = sim.topk(5, dim=1).indices
    for chunk in (7, 16, 50, 64):  # a last chunk shorter than the others, one, more than N
        assert torch.equal(nearest_neighbors(f, 5, chunk=chunk), expected)


def test_a_warm_up_longer_than_its_stage_is_held_to_half_of_it(mnist_slice, monkeypatch):
    """warmup_epochs=100 on a 1-epoch stage left the rate rising to its peak at the last
    step, never decayed; now half the stage warms up and the cosine decays the rest."""
    from fewlabels import pretrain as module

    seen = []
    real = module.warmup_cosine
    monkeypatch.setattr(module, "warmup_cosine",
                        lambda steps, warmup: seen.append((steps, warmup)) or real(steps, warmup))
    cfg = PretrainConfig(method="simclr", epochs=1, batch=100, warmup_epochs=100,
                         encoder_options={"width": 4})
    pretrain(mnist_slice.subset(train=800, test=10), cfg, resolve("cpu", "fp32"), None,
             progress=False)
    (steps, warmup), = seen
    assert steps >= 4 and warmup == steps // 2
    assert real(steps, warmup)(steps) < 1e-6  # decayed to nothing at the end
