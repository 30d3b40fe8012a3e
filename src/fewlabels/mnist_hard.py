"""``mnist-hard``: MNIST made harder, deterministically — each digit is rotated, placed at
a random position on a larger canvas, and coloured (3 channels, a random foreground and
background colour with enough contrast to stay legible).

Everything is drawn from one NumPy PCG64 generator seeded with ``SEED`` (train and test
from separate streams) and computed in float64, so the same MNIST files give the same
bytes; the result is stored as IDX files and checked by SHA-256 like the originals.
"""

from __future__ import annotations

import numpy as np

from .augment import LUMA

SEED = 0
CANVAS = 36  # the 28×28 digit moves by up to ±4 pixels on a 36×36 canvas
MAX_ROTATION = 30.0  # degrees, either way
MIN_CONTRAST = 96.0  # least difference in luma between foreground and background (0-255)
_LUMA = np.array(LUMA)


def _colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) foreground and background colours whose luma differs by ≥ MIN_CONTRAST."""
    fg = rng.integers(0, 256, (n, 3)).astype(np.float64)
    bg = rng.integers(0, 256, (n, 3)).astype(np.float64)
    for _ in range(64):  # redraw the pairs that are too alike; a handful of rounds suffice
        bad = np.abs((fg - bg) @ _LUMA) < MIN_CONTRAST
        if not bad.any():
            break
        fg[bad] = rng.integers(0, 256, (int(bad.sum()), 3))
        bg[bad] = rng.integers(0, 256, (int(bad.sum()), 3))
    else:  # pragma: no cover - vanishingly unlikely
        raise RuntimeError("could not draw contrasting colours")
    return fg, bg


def _place(digits: np.ndarray, angle: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Rotate each (28, 28) digit about its centre by ``angle`` (radians), shift it by
    ``shift`` (pixels, (n, 2) as dy, dx) on the canvas; bilinear, zeros outside."""
    n, h, w = digits.shape
    c = (CANVAS - 1) / 2
    ys, xs = np.meshgrid(np.arange(CANVAS, dtype=np.float64), np.arange(CANVAS, dtype=np.float64),
                         indexing="ij")
    # output pixel → source pixel: undo the shift, then the rotation
    y = ys[None] - c - shift[:, 0, None, None]
    x = xs[None] - c - shift[:, 1, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    sy = cos * y - sin * x + (h - 1) / 2
    sx = sin * y + cos * x + (w - 1) / 2
    y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
    fy, fx = sy - y0, sx - x0
    padded = np.zeros((n, h + 2, w + 2))
    padded[:, 1:-1, 1:-1] = digits
    idx = np.arange(n)[:, None, None]

    def at(yy, xx):  # zero outside the digit (the padding ring catches the edges)
        inside = (yy >= -1) & (yy <= h) & (xx >= -1) & (xx <= w)
        return np.where(inside, padded[idx, np.clip(yy + 1, 0, h + 1), np.clip(xx + 1, 0, w + 1)],
                        0.0)

    return ((1 - fy) * (1 - fx) * at(y0, x0) + (1 - fy) * fx * at(y0, x0 + 1)
            + fy * (1 - fx) * at(y0 + 1, x0) + fy * fx * at(y0 + 1, x0 + 1))


def make_mnist_hard(images: np.ndarray, stream: int, seed: int = SEED,
                    chunk: int = 4096) -> np.ndarray:
    """(N, 28, 28) or (N, 1, 28, 28) uint8 MNIST → (N, 3, CANVAS, CANVAS) uint8.

    ``stream`` separates the random draws of the training (0) and test (1) images."""
    digits = images.reshape(len(images), 28, 28)
    rng = np.random.Generator(np.random.PCG64([seed, stream]))
    n = len(digits)
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION, MAX_ROTATION, n))
    shift = rng.uniform(-(CANVAS - 28) / 2, (CANVAS - 28) / 2, (n, 2))
    fg, bg = _colours(rng, n)
    out = np.empty((n, 3, CANVAS, CANVAS), dtype=np.uint8)
    for s in range(0, n, chunk):
        part = slice(s, s + chunk)
        ink = np.clip(_place(digits[part].astype(np.float64) / 255, angle[part], shift[part]),
                      0, 1)
        rgb = bg[part, :, None, None] + (fg - bg)[part, :, None, None] * ink[:, None]
        out[part] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return out
