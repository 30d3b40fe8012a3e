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


def test_conv_encoder_depth_adds_convolutions_at_the_last_resolution():
    convs = {d: sum(isinstance(m, torch.nn.Conv2d) for m in ConvEncoder(width=2, depth=d).modules())
             for d in (1, 2, 4)}
    assert convs == {1: 3, 2: 4, 4: 6}  # depth 2 is the default network
    assert ConvEncoder(width=2, depth=4)(torch.rand(2, 1, 28, 28)).shape == (2, 8)
    for bad in (0, 17, 2.5):
        with pytest.raises(UsageError, match=f"depth={bad}"):
            ConvEncoder(width=2, depth=bad)


def test_conv_encoder_draws_its_layers_weights_in_order():
    # the default network's weights from a seed are what they were before ``depth`` existed:
    # its first layers draw first, and a deeper network shares them
    torch.manual_seed(0)
    default = ConvEncoder(width=2).state_dict()
    torch.manual_seed(0)
    deeper = ConvEncoder(width=2, depth=3).state_dict()
    assert all(torch.equal(deeper[k], v) for k, v in default.items())
