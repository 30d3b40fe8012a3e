"""A prediction averaged over the image and copies of it moved a few pixels.

A classifier's class for an image whose class does not hang on a pixel's place (a digit, a
garment) need not hang on it either: ``shifts=n`` averages the softmax of the image and of
four copies moved ``n`` pixels left, right, up and down, their uncovered border zeros — as
every training view's is (``augment`` fills what a shift uncovers with zeros; on
mnist-hard's coloured backgrounds zeros in scored higher than copying the edge on every
development draw measured, ``benchmarks/results/variants.md``). One rule for every network
a comparison, ``fit`` or a saved model scores (``compare``, ``fit``, ``predict`` and the
ONNX export agree); five forward passes an image instead of one, at scoring only.
``shifts=0`` is the plain prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .errors import UsageError

MOST_SHIFT = 4  # pixels; and under half the image's side (``check_shifts``)
AUTO = "auto"  # one pixel where the training views move an image that far (``resolve_shifts``)


def shifted_copies(x: torch.Tensor, pixels: int, fill: str = "constant") -> list[torch.Tensor]:
    """``x`` (N, C, H, W) and, for ``pixels`` > 0, four copies moved that far left, right,
    up and down; the uncovered border is zero (``fill="constant"``) or copies the edge
    (``"replicate"``)."""
    if pixels == 0:
        return [x]
    p = pixels
    padded = F.pad(x, (p, p, p, p), mode=fill)
    h, w = x.shape[-2:]
    return [x] + [padded[..., p + dy:p + dy + h, p + dx:p + dx + w]
                  for dx, dy in ((p, 0), (-p, 0), (0, p), (0, -p))]


def mean_softmax(logits: Callable[[torch.Tensor], torch.Tensor],
                 copies: list[torch.Tensor]) -> torch.Tensor:
    """(N, classes) float32: ``logits``' softmax averaged over ``copies`` of the same images
    (``shifted_copies``, or any other views)."""
    return sum(logits(c).float().softmax(1) for c in copies) / len(copies)


class Averaged(torch.nn.Module):
    """``net``'s class probabilities averaged over ``shifts``-pixel copies of its input: a
    saved model's prediction and its ONNX graph."""

    def __init__(self, net: torch.nn.Module, shifts: int = 0):
        super().__init__()
        self.net, self.shifts = net, shifts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_softmax(self.net, shifted_copies(x, self.shifts))


def most_shift(side: int) -> int:
    """The most pixels a copy of an image of ``side`` may move: ``MOST_SHIFT``, and under
    half the side."""
    return min(MOST_SHIFT, (side - 1) // 2)


def resolve_shifts(shifts, translate: float, image_shape) -> int:
    """The pixels a prediction on images of ``image_shape`` averages copies moved by:
    ``shifts`` itself, or for ``"auto"`` one pixel where the training views' shifts
    (``translate``, a share of the side) reach a whole pixel and the side allows one, else 0
    — the copies then look like what the network trained on (on 8×8 digits, whose views
    move at most 0.64 pixel, one-pixel copies scored lower; on 28×28 and 36×36 images,
    higher)."""
    if shifts != AUTO:
        return shifts
    side = min(image_shape[-2:])
    return 1 if translate * side >= 1 and most_shift(side) >= 1 else 0


def check_shifts(name: str, shifts, image_shape=None, auto: bool = False) -> None:
    """``shifts`` is a whole number of pixels, 0 to ``MOST_SHIFT`` and under half the side
    of ``image_shape`` (when given), or with ``auto`` (a setting, not a saved model's
    number) ``"auto"``."""
    if auto and shifts == AUTO:
        return
    side = min(image_shape[-2:]) if image_shape is not None else None
    most = MOST_SHIFT if side is None else most_shift(side)
    if isinstance(shifts, bool) or not isinstance(shifts, int) or not 0 <= shifts <= most:
        where = f" for images of side {side}" if side is not None else ""
        also = (", or auto (1 where the training views shift images a whole pixel)" if auto
                else "")
        raise UsageError(f"{name}={shifts!r} is out of range: a whole number of pixels from "
                         f"0 (the plain prediction) to {most}{where}{also}; e.g. {name}=1")
