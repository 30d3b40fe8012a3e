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

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of red, green and blue in brightness


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
    flip: float = 0.0  # probability of a left-right mirror image (for data whose mirror
    # images keep their class: clothes, objects; not digits)
    # colour images only (3 channels; no-ops on grey ones): shuffle the channels and jitter
    # each one's gain and offset by up to ``colour``; turn grey with probability
    # ``grayscale``; invert with probability ``invert``. Without them a contrastive method
    # can tell two views apart by colour alone and never learn shape.
    colour: float = 0.4
    grayscale: float = 0.2
    invert: float = 0.5


def check_augment(where: str, cfg: AugmentConfig) -> None:
    """Raise UsageError naming the first field of ``cfg`` out of its range."""
    from .errors import UsageError, check_fraction, check_non_negative, check_positive

    for name in ("rotate", "scale", "shear", "translate", "elastic", "noise", "colour"):
        check_non_negative(where + name, getattr(cfg, name))
    if cfg.scale >= 1:
        raise UsageError(f"{where}scale={cfg.scale!r} is out of range: use [0, 1), "
                         "the zoom then lies in [1 - scale, 1 + scale]")
    check_positive(where + "elastic_grid", cfg.elastic_grid, integer=True)
    for name in ("erase", "grayscale", "invert", "flip"):
        check_fraction(where + name, getattr(cfg, name), zero=True, one=True)
    low, high = cfg.erase_area
    if not 0 < low <= high <= 1:
        raise UsageError(f"{where}erase_area={list(cfg.erase_area)!r} is out of range: "
                         "give two fractions of the image, 0 < low <= high <= 1")


def _uniform(n, low, high, g, device):
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def _colour(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Colour distortion of a batch of RGB images (as SimCLR's, simplified to per-channel
    gain and offset): channel shuffle, jitter, grey, inversion — per image."""
    n, dev = len(x), x.device
    if cfg.colour > 0:
        order = torch.rand(n, 3, generator=g, device=dev).argsort(1)
        x = x.gather(1, order.view(n, 3, 1, 1).expand_as(x))
        gain = _uniform(3 * n, 1 - cfg.colour, 1 + cfg.colour, g, dev).view(n, 3, 1, 1)
        offset = _uniform(3 * n, -cfg.colour / 2, cfg.colour / 2, g, dev).view(n, 3, 1, 1)
        x = (x * gain + offset).clamp(0, 1)
    if cfg.grayscale > 0:
        grey = (x * torch.tensor(LUMA, device=dev).view(1, 3, 1, 1)).sum(
            1, keepdim=True).expand_as(x)
        pick = (torch.rand(n, generator=g, device=dev) < cfg.grayscale).view(n, 1, 1, 1)
        x = torch.where(pick, grey, x)
    if cfg.invert > 0:
        pick = (torch.rand(n, generator=g, device=dev) < cfg.invert).view(n, 1, 1, 1)
        x = torch.where(pick, 1 - x, x)
    return x


def _mirror(a: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """The (N, 2, 2) output→input maps ``a``, each mirrored left-right with probability
    ``p`` (its x column negated). With ``p`` = 0, ``a`` itself and no draw from ``g``."""
    if p <= 0:
        return a
    sign = torch.where(torch.rand(len(a), generator=g, device=a.device) < p, -1.0, 1.0)
    return a * torch.stack([sign, torch.ones_like(sign)], 1).view(-1, 1, 2)


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
    a = _mirror(a, cfg.flip, g)
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
    if x.shape[1] == 3 and (cfg.colour > 0 or cfg.grayscale > 0 or cfg.invert > 0):
        x = _colour(x, cfg, g)
    if cfg.noise > 0:
        x = x + torch.randn(x.shape, generator=g, device=dev) * cfg.noise
    return x.clamp_(0, 1)


# ----------------------------------------------------------------------------- strong views


@dataclass
class StrongAugmentConfig:
    """RandAugment with random magnitudes, then Cutout: FixMatch's strong view (Sohn et al.,
    NeurIPS 2020; Cubuk et al., CVPRW 2020; DeVries & Taylor, 2017). Each image gets ``ops``
    operations drawn from ``STRONG_OPS``, each at a magnitude drawn uniformly up to its
    maximum times ``magnitude``, then a square of side up to ``cutout`` of the image set to
    grey."""

    ops: int = 2  # operations per image
    magnitude: float = 1.0  # scales every operation's maximum (1: FixMatch's ranges)
    cutout: float = 0.5  # largest side of the cutout square, fraction of the image size

    def validate(self, where: str = "strong.") -> StrongAugmentConfig:
        from .errors import UsageError, check_fraction, check_non_negative

        check_non_negative(where + "ops", self.ops, integer=True)
        if self.ops > len(STRONG_OPS):
            raise UsageError(f"{where}ops={self.ops} is out of range: there are "
                             f"{len(STRONG_OPS)} operations to draw from")
        check_fraction(where + "magnitude", self.magnitude, one=True)
        check_fraction(where + "cutout", self.cutout, zero=True, one=True)
        return self


# geometric operations (composed into one affine warp) and their largest magnitudes
_GEOMETRIC = {"rotate": 30.0, "shear_x": 0.3, "shear_y": 0.3, "translate_x": 0.3,
              "translate_y": 0.3}
_PHOTOMETRIC = ("identity", "autocontrast", "solarize", "posterize", "contrast", "brightness",
                "sharpness")
STRONG_OPS = (*_GEOMETRIC, *_PHOTOMETRIC)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """other + factor · (x − other), per image (factor: (N,)); PIL's ImageEnhance."""
    return (other + factor.view(-1, 1, 1, 1) * (x - other)).clamp(0, 1)


def _photometric(name: str, x: torch.Tensor, m: torch.Tensor, sign: torch.Tensor):
    """Operation ``name`` at magnitudes ``m`` in [0, 1] (N,), on images in [0, 1]."""
    n = len(x)
    if name == "identity":
        return x
    if name == "autocontrast":
        low = x.amin((2, 3), keepdim=True)
        high = x.amax((2, 3), keepdim=True)
        return torch.where(high > low, (x - low) / (high - low).clamp_min(1e-6), x)
    if name == "solarize":  # invert pixels above a threshold that falls with m
        threshold = (1 - m).view(n, 1, 1, 1)
        return torch.where(x >= threshold, 1 - x, x)
    if name == "posterize":  # keep 8 − 4m bits
        levels = torch.pow(2.0, (8 - torch.round(4 * m))).view(n, 1, 1, 1)
        return torch.floor(x * (levels - 1) + 0.5) / (levels - 1)
    factor = 1 + 0.95 * m * sign  # in [0.05, 1.95]
    if name == "contrast":
        return _blend(x, x.mean((1, 2, 3), keepdim=True).expand_as(x), factor)
    if name == "brightness":
        return _blend(x, torch.zeros_like(x), factor)
    if name == "sharpness":
        kernel = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], device=x.device) / 13
        c = x.shape[1]
        blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"),
                           kernel.view(1, 1, 3, 3).expand(c, 1, 3, 3), groups=c)
        return _blend(x, blurred, factor)
    raise KeyError(name)


def strong_augment(x: torch.Tensor, cfg: StrongAugmentConfig, g: torch.Generator,
                   flip: float = 0.0) -> torch.Tensor:
    """A strong view of each image: (N, C, H, W) float in [0, 1] → same, seeded by ``g``
    (on ``x``'s device), mirrored left-right with probability ``flip``. Operations are
    computed on the whole batch and kept where drawn: no per-image Python loop."""
    n, c, h, w = x.shape
    dev = x.device
    x = x.float()
    # ``ops`` distinct operations per image (drawn twice, an operation could leave its range)
    chosen = torch.rand(n, len(STRONG_OPS), generator=g, device=dev).argsort(1)[:, :cfg.ops]
    magnitude = torch.rand(n, cfg.ops, generator=g, device=dev) * cfg.magnitude
    sign = torch.where(torch.rand(n, cfg.ops, generator=g, device=dev) < 0.5, -1.0, 1.0)

    # each geometric operation's signed amount per image (0 where it was not drawn)
    geo = {name: (magnitude * sign * (chosen == i)).sum(1) * top
           for i, (name, top) in enumerate(_GEOMETRIC.items())}
    rot = geo["rotate"] * (math.pi / 180)
    cos, sin = torch.cos(rot), torch.sin(rot)
    shx, shy = geo["shear_x"], geo["shear_y"]
    # output→input map: rotation · shear
    a = torch.stack([cos - sin * shy, cos * shx - sin, sin + cos * shy, sin * shx + cos],
                    1).view(n, 2, 2)
    a = _mirror(a, flip, g)
    shift = torch.stack([geo["translate_x"], geo["translate_y"]], 1) * 2
    theta = torch.cat([a, shift.view(n, 2, 1)], 2)
    grid = F.affine_grid(theta, (n, c, h, w), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # each photometric operation on the images that drew it only (about one in six)
    for k, name in enumerate(_PHOTOMETRIC, start=len(_GEOMETRIC)):
        hit = chosen == k
        rows = hit.any(1).nonzero().squeeze(1)
        if len(rows) and name != "identity":
            hit = hit[rows]
            x[rows] = _photometric(name, x[rows], (magnitude[rows] * hit).sum(1),
                                   (sign[rows] * hit).sum(1))
    if cfg.cutout > 0:
        side = torch.rand(n, generator=g, device=dev) * cfg.cutout
        cy, cx = torch.rand(2, n, generator=g, device=dev)
        rows = (torch.arange(h, device=dev) + 0.5) / h
        cols = (torch.arange(w, device=dev) + 0.5) / w
        box = (((rows.view(1, h, 1) - cy.view(n, 1, 1)).abs() <= side.view(n, 1, 1) / 2)
               & ((cols.view(1, 1, w) - cx.view(n, 1, 1)).abs() <= side.view(n, 1, 1) / 2))
        x = x.masked_fill(box.unsqueeze(1), 0.5)
    return x.clamp_(0, 1)
