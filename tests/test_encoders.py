import pytest
import torch

from fewlabels.encoders import ConvEncoder, GlobalAvgPool, MLPEncoder, build_encoder
from fewlabels.errors import UsageError


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_global_pool_is_the_channel_mean_and_its_gradient_keeps_the_layout(layout):
    x = torch.randn(3, 5, 4, 6, dtype=torch.float64).contiguous(memory_format=layout)
    x.requires_grad_(True)
    pooled = GlobalAvgPool()(x)
    assert torch.allclose(pooled, x.mean((2, 3)))
    weights = torch.randn(3, 5, dtype=torch.float64)
    (grad,) = torch.autograd.grad((pooled * weights).sum(), x)
    assert torch.allclose(grad, (weights / 24)[:, :, None, None].expand_as(x))
    if layout == torch.channels_last:  # materialised in the input's layout, not broadcast
        assert grad.is_contiguous(memory_format=torch.channels_last) and grad.stride()[1] == 1
    assert torch.autograd.gradcheck(GlobalAvgPool(), (x,))


@pytest.mark.parametrize("channels_last", [True, False])
def test_conv_encoder_gives_4w_features_in_either_layout(channels_last):
    enc = ConvEncoder(width=4, channels_last=channels_last)
    x = torch.rand(2, 1, 28, 28)
    f = enc(x)
    assert f.shape == (2, 16) and enc.num_features == 16
    f.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_encoders_are_built_by_name_and_unknown_names_are_refused():
    assert isinstance(build_encoder("mlp", (1, 28, 28), latent_size=7), MLPEncoder)
    assert build_encoder("conv", (3, 32, 32), width=2)(torch.rand(1, 3, 32, 32)).shape == (1, 8)
    with pytest.raises(UsageError, match="encoder"):
        build_encoder("resnet", (1, 28, 28))


def test_a_first_layer_at_full_resolution_keeps_the_later_maps_and_their_work():
    strided, full = ConvEncoder(width=4), ConvEncoder(width=4, first_stride=1)
    x = torch.rand(2, 1, 28, 28)
    sizes = {}
    for name, enc in (("strided", strided), ("full", full)):
        maps = []
        hooks = [m.register_forward_hook(lambda m, i, o: maps.append(tuple(o.shape[1:])))
                 for m in enc.net if isinstance(m, torch.nn.Conv2d)]
        assert enc(x).shape == (2, 16)
        for h in hooks:
            h.remove()
        sizes[name] = maps
    assert sizes["strided"] == [(4, 14, 14), (8, 14, 14), (16, 7, 7), (16, 7, 7)]
    assert sizes["full"] == [(4, 28, 28), (8, 14, 14), (16, 7, 7), (16, 7, 7)]
    assert [p.shape for p in strided.parameters()] == [p.shape for p in full.parameters()]
    for bad in (0, 3, True):
        with pytest.raises(UsageError, match=f"first_stride={bad!r} is out of range: 2"):
            ConvEncoder(width=4, first_stride=bad)
