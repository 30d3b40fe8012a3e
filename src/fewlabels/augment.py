"""Batched, seeded augmentations on image tensors: one ``grid_sample`` warps a whole batch
(random affine + elastic distortion), then erasing and noise. No per-image Python loop;
the same code runs on CPU and GPU.

Elastic distortion follows Simard, Steinkraus & Platt (ICDAR 2003): a smooth random
displacement field, here drawn at low resolution and upsampled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    rotate: float = 15.0  # max rotation, degrees
    scale: float = 0.15  # zoom in [1 - scale, 1 + scale]
    shear: float = 10.0  # max shear, degrees
    translate: float = 0.08  # max shift, fraction of the image size
    elastic: float = 0.0  # std of the elastic displacement, fraction of the image size
    elastic_grid: int = 5  # resolution of the random displacement field
    erase: float = 0.0  # probability of erasing one random rectangle
    erase_area: tuple[float, float] = (0.05, 0.2)  # its area, fraction of the image
    noise: float = 0.0  # std of added Gaussian noise (pixels in [0, 1])


def _uniform(n, low, high, g, device):
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def augment(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Augment a batch: (N, C, H, W) float in [0, 1] → same shape, float in [0, 1].

    ``g`` must live on ``x``'s device; the same generator state gives the same batch.
    """
    n, _, h, w = x.shape
    dev = x.device
    x = x.float()
    rot = _uniform(n, -cfg.rotate, cfg.rotate, g, dev) * (math.pi / 180)
    shear = _uniform(n, -cfg.shear, cfg.shear, g, dev) * (math.pi / 180)
    zoom = _uniform(n, 1 - cfg.scale, 1 + cfg.scale, g, dev)
    shift = _uniform(2 * n, -2 * cfg.translate, 2 * cfg.translate, g, dev).view(n, 2)
    cos, sin = torch.cos(rot), torch.sin(rot)
    # output→input map: rotation · shear, divided by zoom (zoom > 1 magnifies)
    a = torch.stack([cos, -sin + cos * torch.tan(shear), sin, cos + sin * torch.tan(shear)],
                    1).view(n, 2, 2) / zoom.view(n, 1, 1)
    theta = torch.cat([a, shift.view(n, 2, 1)], 2)
    grid = F.affine_grid(theta, (n, 1, h, w), align_corners=False)
    if cfg.elastic > 0:
        k = cfg.elastic_grid
        field = torch.randn(n, 2, k, k, generator=g, device=dev) * (2 * cfg.elastic)
        field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=False)
        grid = grid + field.permute(0, 2, 3, 1)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.erase > 0:
        area = _uniform(n, *cfg.erase_area, g, dev) * (h * w)
        aspect = torch.exp(_uniform(n, -1.0, 1.0, g, dev))
        eh = (area * aspect).sqrt().clamp(1, h)
        ew = (area / aspect).sqrt().clamp(1, w)
        top = torch.rand(n, generator=g, device=dev) * (h - eh)
        left = torch.rand(n, generator=g, device=dev) * (w - ew)
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        box = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
               & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)))
        apply = torch.rand(n, generator=g, device=dev) < cfg.erase
        x = x.masked_fill((box & apply.view(n, 1, 1)).unsqueeze(1), 0.0)
    if cfg.noise > 0:
        x = x + torch.randn(x.shape, generator=g, device=dev) * cfg.noise
    return x.clamp_(0, 1)
