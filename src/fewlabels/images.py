"""Images from files: decode any common format to one size and one mode.

Every image goes through ``decode``: Pillow reads it (PNG, JPEG, BMP, TIFF, WebP, GIF);
16-bit and 32-bit grey images are scaled to 8 bits; palette, RGBA, CMYK and the rest are
converted to grey (``L``) or ``RGB``, whichever the dataset uses (alpha is dropped); the
image is resized so its longer side is ``size``, keeping its aspect, then padded to a
square with the mean of its border pixels ("letterbox"). Training, prediction and the
ONNX model's documented pre-processing all use this one function.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from glob import glob
from pathlib import Path

import numpy as np

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
MAX_DEFAULT_SIZE = 64  # the default size (the median of the images' longer sides) is capped


class UnreadableImage(ValueError):
    """A file that is not an image Pillow can decode; the message says why."""


def _open(path: str | Path, load: bool = True):
    """The Pillow image at ``path``, decoded when ``load``; UnreadableImage says why not."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise UnreadableImage("cannot open (no such file)" if not os.path.exists(path)
                              else "cannot open (not a file)")
    if os.path.getsize(path) == 0:
        raise UnreadableImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # between MAX_IMAGE_PIXELS and twice it Pillow decodes and warns mid-run; the
            # image is used, and past twice it is refused below: the warning says nothing more
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
            if load:
                image.load()
        return image
    except UnidentifiedImageError:
        raise UnreadableImage("not an image (Pillow cannot identify its format)") from None
    except PermissionError:
        raise UnreadableImage("cannot open (permission denied)") from None
    except Image.DecompressionBombError:  # raised at twice MAX_IMAGE_PIXELS (never if None)
        raise UnreadableImage(f"too large to decode safely (Pillow refuses images over "
                              f"{2 * Image.MAX_IMAGE_PIXELS:,} pixels as possible "
                              f"decompression bombs): shrink it") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UnreadableImage(f"truncated or damaged ({str(e)[:80]})") from None


def is_grey(image) -> bool:
    return image.mode in GREY_MODES


def _to_mode(image, channels: int):
    """A Pillow image in ``L`` (channels 1) or ``RGB`` (channels 3), 8 bits a channel."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(image, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        image = Image.fromarray(np.clip(a / top * 255 + 0.5, 0, 255).astype(np.uint8))
    if channels == 3:
        return image.convert("RGB")
    if image.mode == "L":
        return image
    return image.convert("L") if image.mode in GREY_MODES else image.convert("RGB").convert("L")


def letterbox(image, size: int):
    """Resize so the longer side is ``size`` (aspect kept), pad to ``size``×``size`` with
    the mean of the border pixels, centred."""
    from PIL import Image

    w, h = image.size
    if (w, h) != (size, size):
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        resized = image.resize((nw, nh), Image.Resampling.BILINEAR)
        a = np.asarray(image)
        border = np.concatenate([a[0].reshape(-1, *a.shape[2:]), a[-1].reshape(-1, *a.shape[2:]),
                                 a[:, 0].reshape(-1, *a.shape[2:]),
                                 a[:, -1].reshape(-1, *a.shape[2:])])
        fill = tuple(int(round(v)) for v in np.atleast_1d(border.mean(0)))
        canvas = Image.new(image.mode, (size, size), fill if len(fill) > 1 else fill[0])
        canvas.paste(resized, ((size - nw) // 2, (size - nh) // 2))
        image = canvas
    return image


def decode(path: str | Path, size: int, channels: int) -> np.ndarray:
    """The image at ``path`` as uint8 (channels, size, size); UnreadableImage if it is not one."""
    image = letterbox(_to_mode(_open(path), channels), size)
    a = np.asarray(image, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def header(path: str | Path) -> tuple[tuple[int, int], bool]:
    """(width, height) and whether the image is grey, from the file's header (no decoding)."""
    with _open(path, load=False) as image:
        return image.size, is_grey(image)


def image_files(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Every file under ``folder`` (sorted, hidden ones ignored): (images by extension,
    [(other file, why it was skipped)])."""
    found, other = [], []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.suffix.lower() in EXTENSIONS:
                found.append(path)
            else:
                other.append((str(path), f"extension {path.suffix or '(none)'!r} is not an "
                                         f"image type ({' '.join(EXTENSIONS)})"))
    return found, other


def expand(inputs: Iterable[str], skipped: dict[str, str] | None = None) -> Iterator[str]:
    """Files named by ``inputs``: files, folders (every image under them), globs, and ``-``
    (one path a line on stdin), in the order given. A folder's files that are not images
    by their extension go into ``skipped`` (file → why), when given."""
    for item in inputs:
        if item == "-":
            yield from (line.strip() for line in sys.stdin if line.strip())
        elif Path(item).is_dir():
            found, other = image_files(Path(item))
            if skipped is not None:
                skipped.update(other)
            yield from (str(p) for p in found)
        elif any(c in item for c in "*?[") and not Path(item).exists():
            # a glob that matches nothing stays as it is: reading it fails, and says so
            yield from sorted(glob(item, recursive=True)) or [item]
        else:
            yield item


def default_size(sizes: list[tuple[int, int]]) -> int:
    """The median of the images' longer sides, capped at ``MAX_DEFAULT_SIZE``."""
    return int(min(MAX_DEFAULT_SIZE, max(4, np.median([max(s) for s in sizes]))))
