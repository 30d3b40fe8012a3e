import torch

from fewlabels.augment import AugmentConfig, augment

ZERO = AugmentConfig(rotate=0, scale=0, shear=0, translate=0)


def test_identity_settings_return_the_input():
    x = torch.rand(8, 1, 28, 28)
    y = augment(x, ZERO, torch.Generator().manual_seed(0))
    assert torch.allclose(x, y, atol=1e-5)


def test_seeded_and_batched():
    x = torch.rand(16, 1, 28, 28)
    cfg = AugmentConfig(elastic=0.03, erase=0.5, noise=0.05)
    a = augment(x, cfg, torch.Generator().manual_seed(3))
    b = augment(x, cfg, torch.Generator().manual_seed(3))
    c = augment(x, cfg, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    # each image gets its own transform
    same = augment(x[:1].repeat(16, 1, 1, 1), cfg, torch.Generator().manual_seed(0))
    assert not torch.allclose(same[0], same[1])


def test_translation_moves_mass_by_at_most_the_limit():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 12:16, 12:16] = 1
    cfg = AugmentConfig(rotate=0, scale=0, shear=0, translate=0.1)
    y = augment(x, cfg, torch.Generator().manual_seed(0))
    coords = torch.arange(28.0)
    cy = (y.sum(3).squeeze(1) * coords).sum(1) / y.sum((1, 2, 3))
    assert (cy - 13.5).abs().max() <= 0.1 * 28 + 0.5
    assert (cy - 13.5).abs().max() > 0.5


def test_erasing_zeroes_a_rectangle():
    x = torch.ones(32, 1, 28, 28)
    cfg = AugmentConfig(rotate=0, scale=0, shear=0, translate=0, erase=1.0,
                        erase_area=(0.1, 0.1))
    y = augment(x, cfg, torch.Generator().manual_seed(0))
    erased = (y == 0).float().sum((1, 2, 3)) / (28 * 28)
    assert ((erased > 0.05) & (erased < 0.16)).all()
