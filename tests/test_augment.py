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
    assert a.shape == x.shape and a.dtype == torch.float32
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


def _only_colour(**kw):
    return AugmentConfig(rotate=0, scale=0, shear=0, translate=0,
                         **{"colour": 0, "grayscale": 0, "invert": 0, **kw})


def test_colour_distortion_on_rgb_images():
    x = torch.rand(32, 3, 20, 20)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(augment(x, _only_colour(), g), x, atol=1e-5)
    grey = augment(x, _only_colour(grayscale=1.0), g)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(grey[:, 0], luma, atol=1e-5)
    assert torch.allclose(augment(x, _only_colour(invert=1.0), g), 1 - x, atol=1e-5)
    jittered = augment(x, _only_colour(colour=0.4), g)
    # a jitter of 0.4 moves every image (gains 0.6-1.4, offsets ±0.2), and each channel's
    # mean by at most 0.4 · 1 + 0.2 (plus what the final clip takes off)
    moved = (jittered - x).abs().mean((1, 2, 3))
    assert (moved > 1e-3).all()
    shuffled_means = x.mean((2, 3)).sort(1).values
    assert (jittered.mean((2, 3)).sort(1).values - shuffled_means).abs().max() < 0.6
    # a constant image stays constant within each channel, at a new colour
    flat = torch.full((8, 3, 5, 5), 0.5)
    out = augment(flat, _only_colour(colour=0.4), g)
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out))
    assert not torch.allclose(out[0], out[1])


def test_colour_settings_leave_grey_images_alone():
    x = torch.rand(8, 1, 28, 28)
    cfg = _only_colour(colour=0.4, grayscale=1.0, invert=1.0)
    assert torch.allclose(augment(x, cfg, torch.Generator().manual_seed(0)), x, atol=1e-5)


def test_strong_views_are_seeded_bounded_and_differ_from_weak_ones(mnist):
    from fewlabels.augment import StrongAugmentConfig, strong_augment

    x = mnist.train_images[:64].float() / 255
    cfg = StrongAugmentConfig()
    a = strong_augment(x, cfg, torch.Generator().manual_seed(1))
    b = strong_augment(x, cfg, torch.Generator().manual_seed(1))
    c = strong_augment(x, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape
    weak = augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    # strong views move further from the image than weak ones, on average
    assert (a - x).abs().mean() > (weak - x).abs().mean()
    colour = strong_augment(torch.rand(8, 3, 20, 24), cfg, torch.Generator().manual_seed(0))
    assert colour.shape == (8, 3, 20, 24)


def test_strong_identity_settings_leave_only_the_drawn_operations():
    from fewlabels.augment import StrongAugmentConfig, strong_augment

    x = torch.rand(16, 1, 28, 28)
    none = strong_augment(x, StrongAugmentConfig(ops=0, cutout=0),
                          torch.Generator().manual_seed(0))
    assert torch.allclose(none, x, atol=1e-5)
    cut = strong_augment(torch.zeros(256, 1, 28, 28), StrongAugmentConfig(ops=0, cutout=0.5),
                         torch.Generator().manual_seed(0))
    grey = (cut == 0.5).float().mean((1, 2, 3))  # the cutout square, grey, up to a quarter
    assert grey.max() <= 0.25 + 0.05 and grey.mean() > 0.02


def test_a_strong_view_depends_on_its_own_image_only():
    from fewlabels.augment import StrongAugmentConfig, strong_augment

    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    other = x.clone()
    other[1:] = torch.rand(63, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    cfg = StrongAugmentConfig()
    a = strong_augment(x, cfg, torch.Generator().manual_seed(0))
    b = strong_augment(other, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1:], b[1:])


def test_photometric_operations_closed_form():
    from fewlabels.augment import _photometric

    x = torch.linspace(0.1, 0.6, 16).view(1, 1, 4, 4)
    one, zero, up = torch.ones(1), torch.zeros(1), torch.ones(1)
    stretched = _photometric("autocontrast", x, one, up)
    assert stretched.min() == 0 and stretched.max() == 1
    # solarize at magnitude 0.5 inverts the pixels at or above 0.5
    sol = _photometric("solarize", x, 0.5 * one, up)
    assert torch.allclose(sol, torch.where(x >= 0.5, 1 - x, x))
    # posterize at magnitude 0 keeps 8 bits: a pixel on the 1/255 grid stays put
    grid = torch.arange(0, 256, 17).float().view(1, 1, 4, 4) / 255
    assert torch.allclose(_photometric("posterize", grid, zero, up), grid, atol=1e-6)
    assert torch.allclose(_photometric("brightness", x, zero, up), x)


def test_every_strong_operation_at_full_strength_stays_finite():
    from fewlabels.augment import STRONG_OPS, StrongAugmentConfig, strong_augment

    cfg = StrongAugmentConfig(ops=len(STRONG_OPS), magnitude=1.0)
    for x in (torch.zeros(32, 1, 28, 28), torch.ones(32, 3, 28, 28), torch.rand(32, 1, 28, 28)):
        for seed in range(3):  # a NaN would pass the final clip: check before trusting it
            assert torch.isfinite(strong_augment(x, cfg, torch.Generator().manual_seed(seed))
                                  ).all()


def test_each_photometric_operation_keeps_the_range_by_itself():
    """Checked on each operation's own output, before the final clip that would hide a
    value out of [0, 1] (e.g. an autocontrast that divides by a range of zero)."""
    from fewlabels.augment import _PHOTOMETRIC, _photometric

    g = torch.Generator().manual_seed(0)
    inputs = (torch.rand(64, 3, 8, 8, generator=g), torch.zeros(64, 1, 8, 8),
              torch.ones(64, 1, 8, 8), torch.full((64, 1, 8, 8), 0.3))
    m = torch.linspace(0, 1, 64)
    for name in _PHOTOMETRIC:
        for x in inputs:
            for sign in (torch.ones(64), -torch.ones(64)):
                y = _photometric(name, x, m, sign)
                assert torch.isfinite(y).all(), name
                assert y.min() >= 0 and y.max() <= 1, (name, y.min(), y.max())


def test_flip_mirrors_about_half_the_images_and_costs_no_draw_when_off():
    from fewlabels.augment import StrongAugmentConfig, strong_augment

    x = torch.rand(200, 1, 28, 28)
    mirrored = augment(x, AugmentConfig(rotate=0, scale=0, shear=0, translate=0, flip=0.5),
                       torch.Generator().manual_seed(0))
    flipped = torch.isclose(mirrored, x.flip(-1), atol=1e-5).flatten(1).all(1)
    kept = torch.isclose(mirrored, x, atol=1e-5).flatten(1).all(1)
    assert (flipped | kept).all() and 60 < flipped.sum() < 140
    # off (the default): the same random stream as before the option existed
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(augment(x, AugmentConfig(), g1), augment(x, AugmentConfig(flip=0), g2))
    assert torch.equal(g1.get_state(), g2.get_state())
    none = StrongAugmentConfig(ops=0, cutout=0)
    always = strong_augment(x, none, torch.Generator().manual_seed(0), flip=1.0)
    assert torch.allclose(always, x.flip(-1), atol=1e-5)
