"""Autoencoders: reconstruct the image from the encoder's features (Hinton &
Salakhutdinov, Science 2006), optionally from a masked input (denoising: Vincent et al.,
ICML 2008; patch masking as in MAE: He et al., CVPR 2022)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ConvDecoder(nn.Module):
    """features (N, D) → 7×7 map → two ×2 transposed convs → (N, C, 28, 28) in [0, 1]."""

    def __init__(self, num_features: int, out_shape=(1, 28, 28), width: int = 32):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.width = width
        self.fc = nn.Linear(num_features, 2 * width * 7 * 7)
        self.net = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width),
            nn.ReLU(), nn.ConvTranspose2d(width, out_shape[0], 4, 2, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, 2 * self.width, 7, 7)
        return torch.sigmoid(self.net(x).float())


def make_decoder(encoder: nn.Module) -> nn.Module:
    """A decoder matching the encoder: transposed convs for a CNN, a mirrored MLP otherwise."""
    from ..encoders import ConvEncoder, MLPDecoder

    shape = encoder.in_shape
    if isinstance(encoder, ConvEncoder) and shape[1:] == (28, 28):
        return ConvDecoder(encoder.num_features, shape, encoder.width)
    hidden = getattr(encoder, "hidden", (512, 128))
    return MLPDecoder(shape, hidden, encoder.num_features)


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel, in float32."""
    return F.mse_loss(recon.float().view_as(target), target.float())


def mask_patches(x: torch.Tensor, ratio: float, generator: torch.Generator,
                 patch: int = 4) -> torch.Tensor:
    """Zero a random ``ratio`` of the ``patch``×``patch`` squares of each image; the masks
    come from ``generator`` (on ``x``'s device)."""
    from .. import distributed

    n, _, h, w = x.shape
    gh, gw = math.ceil(h / patch), math.ceil(w / patch)
    # a rank draws the whole batch's masks and keeps its share: the masks one process draws
    shards = distributed.world() if distributed.is_sharded() else 1
    keep = (torch.rand(n * shards, 1, gh, gw, generator=generator, device=x.device) >= ratio
            ).to(x.dtype)
    keep = distributed.local(keep) if shards > 1 else keep
    keep = keep.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[:, :, :h, :w]
    return x * keep


class AutoEncoderLoss(nn.Module):
    """Reconstruct the clean image from its features. Needs no augmented views."""

    views = 0

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = make_decoder(encoder)

    def forward(self, views: list[torch.Tensor], clean: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(self.decoder(self.encoder.forward_features(clean)), clean)


class MaskedAutoEncoderLoss(AutoEncoderLoss):
    """Reconstruct the whole clean image from a copy with ``mask_ratio`` of its 4×4 patches
    zeroed (a denoising autoencoder whose noise is masking)."""

    def __init__(self, encoder: nn.Module, mask_ratio: float = 0.5, seed: int = 0):
        super().__init__(encoder)
        from ..errors import check_fraction

        check_fraction("mask_ratio", mask_ratio, zero=True)
        self.mask_ratio = mask_ratio
        self.seed = seed
        self._generator: torch.Generator | None = None

    def forward(self, views: list[torch.Tensor], clean: torch.Tensor) -> torch.Tensor:
        if self._generator is None or self._generator.device != clean.device:
            # the masks' own seeded stream, never the global RNG
            self._generator = torch.Generator(clean.device).manual_seed(self.seed)
        masked = mask_patches(clean, self.mask_ratio, self._generator)
        z = self.encoder.forward_features(masked)
        return reconstruction_loss(self.decoder(z), clean)
