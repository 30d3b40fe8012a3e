"""Encoders: image → feature vector, behind one interface (``num_features``,
``forward_features``), so every arm uses the same network and differs only in training."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .errors import UsageError, check_positive

MAX_WIDTH = 1024  # the conv encoder's width: 32 by default; past this a layer needs gigabytes
MAX_DEPTH = 16  # the conv encoder's convolutions at its last resolution: 2 by default


def _mlp(sizes: Sequence[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return layers


class MLPEncoder(nn.Module):
    """The notebook's encoder: flatten → [Linear → ReLU] per hidden width → Linear(latent).

    Input (N, C, H, W) float in [0, 1]; output (N, latent_size). The code layer has no
    activation, as in a plain autoencoder (Hinton & Salakhutdinov, Science 2006).
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28),
                 hidden: Sequence[int] = (512, 128), latent_size: int = 10):
        super().__init__()
        check_positive("latent_size", latent_size, integer=True)
        for h in hidden:
            check_positive("hidden", h, integer=True)
        self.in_shape = tuple(in_shape)
        self.hidden = tuple(int(h) for h in hidden)
        self.num_features = int(latent_size)
        self.net = nn.Sequential(nn.Flatten(), *_mlp([math.prod(self.in_shape), *self.hidden,
                                                      self.num_features]))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    forward = forward_features


class MLPDecoder(nn.Module):
    """Mirror of ``MLPEncoder``: latent → hidden widths reversed → pixels through a sigmoid.

    The sigmoid keeps every reconstructed pixel in [0, 1], so no later conversion to
    uint8 can wrap around (the notebook's "black dots").
    """

    def __init__(self, out_shape: Sequence[int] = (1, 28, 28),
                 hidden: Sequence[int] = (512, 128), latent_size: int = 10):
        super().__init__()
        self.out_shape = tuple(out_shape)
        sizes = [latent_size, *reversed(tuple(hidden)), math.prod(self.out_shape)]
        self.net = nn.Sequential(*_mlp(sizes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(z).float()).view(-1, *self.out_shape)


class ClassifierNet(nn.Module):
    """An encoder plus one linear layer: (N, C, H, W) → (N, num_classes) logits."""

    def __init__(self, encoder: nn.Module, num_classes: int = 10):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def check_frozen_layers(encoder: nn.Module, layers: int, where: str = "") -> None:
    """Refuse a ``frozen_layers`` count above ``encoder``'s weight layers (convolutions or
    linear layers)."""
    count = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in encoder.modules())
    if layers > count:
        raise UsageError(f"{where}frozen_layers={layers} is out of range: this encoder has "
                         f"{count} weight layers; freeze at most {count}")


def freeze_first_layers(encoder: nn.Module, layers: int, where: str = "") -> None:
    """Keep the first ``layers`` weight layers of ``encoder`` (convolutions or linear
    layers, each with the normalisation after it) at their weights: no gradient, so a step
    pays no backward pass through them, nor their input's gradient in the next layer."""
    check_frozen_layers(encoder, layers, where)
    seen = 0
    for module in encoder.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            seen += 1
            if seen > layers:
                return
        if seen and not any(module.children()):
            module.requires_grad_(False)


class _SpatialMean(torch.autograd.Function):
    """Mean over height and width, (N, C, H, W) → (N, C), whose gradient keeps the input's
    memory layout. Autograd's own mean hands back a broadcast (stride 0) gradient; with a
    channels-last input, the ReLU before the pool then runs its backward on two layouts at
    once, a slow path: about 8% of a bf16 encoder step on a 2-core CPU."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        ctx.channels_last = (x.is_contiguous(memory_format=torch.channels_last)
                             and not x.is_contiguous())
        return x.mean((2, 3))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        n, c, h, w = ctx.shape
        spread = (grad / (h * w))[:, :, None, None].expand(n, c, h, w)
        return spread.contiguous(memory_format=torch.channels_last) if ctx.channels_last \
            else spread


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) → (N, C): the mean of each channel (see ``_SpatialMean``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SpatialMean.apply(x)


def _conv_bn(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class ConvEncoder(nn.Module):
    """A small CNN built for speed on CPU at 28×28: the first layer is strided, so no
    convolution runs at full resolution (those are slow on CPU), and it runs channels-last.

    (N, C, 28, 28) → 3×3/2 conv (14×14, w) → 3×3 conv (2w) → 3×3/2 conv (7×7, 4w)
    → ``depth`` − 1 3×3 convs (4w) → global average pool → (N, 4w) features.
    ``depth`` counts the convolutions at the last resolution (2 by default); each one more
    adds half the default network's work and widens what a feature sees by 8 pixels.
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), width: int = 32,
                 depth: int = 2, channels_last: bool = True):
        super().__init__()
        check_positive("width", width, integer=True)
        if width > MAX_WIDTH:  # 100,000 asked 720 GB of the allocator for one layer
            raise UsageError(f"width={width} is out of range: use 1..{MAX_WIDTH} (the "
                             "default is 32; memory and time grow with its square)")
        check_positive("depth", depth, integer=True)
        if depth > MAX_DEPTH:
            raise UsageError(f"depth={depth} is out of range: use 1..{MAX_DEPTH} (the "
                             "default is 2; time grows with it)")
        self.in_shape = tuple(in_shape)
        self.width = int(width)
        w = self.width
        layers = [*_conv_bn(in_shape[0], w, 2), *_conv_bn(w, 2 * w, 1),
                  *_conv_bn(2 * w, 4 * w, 2)]
        for _ in range(int(depth) - 1):  # built in order: a seed draws the same weights
            layers += _conv_bn(4 * w, 4 * w, 1)
        self.net = nn.Sequential(*layers, GlobalAvgPool())
        self.num_features = 4 * w
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=self.memory_format))

    forward = forward_features


def build_encoder(name: str, in_shape: Sequence[int], where: str = "encoder_options.",
                  **kwargs) -> nn.Module:
    """An encoder from its registry name and keyword arguments (stored in checkpoints);
    a bad option is a UsageError naming it under ``where``."""
    from .errors import check_choice, construct

    check_choice("encoder", name, ENCODERS)
    return construct(ENCODERS[name], where, f"the {name} encoder", in_shape, **kwargs)


ENCODERS: dict[str, type[nn.Module]] = {"mlp": MLPEncoder, "conv": ConvEncoder}
