"""Datasets from the user: an image folder or an ``.npz`` of arrays, named by path.

An image folder::

    DIR/labeled/<class>/**     the labeled images, one folder a class (its name is the class)
    DIR/unlabeled/**           optional: images without labels, any layout below
    DIR/test/<class>/**        optional: a test split; without it no test accuracy is claimed

Arrays: an ``.npz`` with ``x_train`` (N, H, W) or (N, H, W, C) or (N, C, H, W), uint8 or
float in [0, 1]; ``y_train`` (N,), −1 for an unlabeled image; optional ``x_test``,
``y_test`` and ``classes`` (names, in label order).

A folder is decoded once (``images.decode``) into a cache file keyed by a hash of the
files' paths, sizes and contents and of the size and mode asked for, so a second run
starts in seconds and a changed file is noticed. Files that cannot be read are listed
with the reason and skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import images
from .checkpoint import atomic_write_bytes
from .data import Dataset, cache_dir
from .errors import DataError, UsageError, check_positive, one_line

CACHE_VERSION = 2  # 2: the files that fail to decode are kept relative to the folder
UNLABELED = -1


@dataclass
class Skipped:
    """Files left out of a dataset, each with the reason."""

    files: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, limit: int = 20) -> str:
        if not self.files:
            return ""
        lines = [f"fewlabels: skipped {len(self.files)} file(s) that could not be used:"]
        lines += [f"  {entry}" for entry in self._entries(limit)]
        if len(self.files) > limit:
            lines.append(f"  ... and {len(self.files) - limit} more")
        return "\n".join(lines)

    def brief(self, limit: int = 3) -> str:
        """The summary on one line, for an error message."""
        more = f"; and {len(self.files) - limit} more" if len(self.files) > limit else ""
        return (f"{len(self.files)} file(s) could not be used: "
                f"{'; '.join(self._entries(limit))}{more}")

    def _entries(self, limit: int) -> list[str]:
        """'path: why' for the first ``limit`` files, each name on one line."""
        return [f"{one_line(path)}: {why}" for path, why in self.files[:limit]]


def is_user_data(name: str) -> bool:
    """Whether a dataset name is a path (a folder or an .npz) rather than a built-in name."""
    return name.endswith(".npz") or "/" in name or Path(name).is_dir()


def load_user_data(path: str | Path, image_size: int | None = None, *,
                   progress: bool = True, warn=None) -> tuple[Dataset, Skipped]:
    """A ``Dataset`` (labels −1 for the unlabeled images; an empty test split when there is
    none) and the files skipped. ``image_size``: the side images are brought to (default:
    the median of the longer sides, capped at ``images.MAX_DEFAULT_SIZE``)."""
    warn = warn or (lambda message: print(f"fewlabels: warning: {message}", file=sys.stderr))
    if image_size is not None:
        check_image_size(image_size)
    path = Path(path)
    if path.suffix == ".npz":
        ds, skipped = _from_arrays(path, image_size), Skipped()
    elif path.is_dir():
        ds, skipped = _from_folder(path, image_size, progress)
    else:
        from .data import DATASETS

        builtin = (f" ({str(path)!r} is a built-in dataset: `fewlabels compare --dataset "
                   f"{path}` measures it; to fit on some of its labels, save them as an .npz)"
                   if str(path) in DATASETS else "")
        raise UsageError(f"dataset {str(path)!r} is neither a folder nor an .npz file: give a "
                         "folder with labeled/<class>/ images or an .npz with x_train and "
                         f"y_train{builtin}")
    if skipped.files:
        print(skipped.summary(), file=sys.stderr)
    _check_labels(ds, warn)
    return ds, skipped


MAX_IMAGE_SIZE = 512  # the side an image may be brought to: far past what the encoders need


def check_image_size(size) -> None:
    """``--image-size``: a whole number of pixels from 4 to ``MAX_IMAGE_SIZE``."""
    check_positive("--image-size", size, integer=True)
    if not 4 <= size <= MAX_IMAGE_SIZE:
        raise UsageError(f"--image-size {size} is out of range: use 4..{MAX_IMAGE_SIZE} (the "
                         "side, in pixels, every image is brought to; the default is the "
                         f"median side, capped at {images.MAX_DEFAULT_SIZE})")


def check_fits_in_memory(count: int, channels: int, side: int) -> None:
    """Refuse, before decoding, images that would not fit in the memory available."""
    need = count * channels * side * side
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return
    if need > free // 2:
        raise UsageError(f"{count:,} images at {side}×{side} need {need / 2**30:.1f} GiB, more "
                         f"than half the {free / 2**30:.1f} GiB of memory free: give a smaller "
                         "--image-size (e.g. 64)")


def has_test(ds: Dataset) -> bool:
    return len(ds.test_labels) > 0


def _check_labels(ds: Dataset, warn) -> None:
    labeled = ds.train_labels[ds.train_labels != UNLABELED]
    if len(labeled) == 0:
        raise UsageError(f"dataset {ds.name!r} has no labeled image: put images in "
                         "labeled/<class>/ folders (or give y_train labels >= 0)")
    counts = Counter(labeled.tolist())
    present = [ds.classes[c] for c in sorted(counts)]
    if len(present) < 2:
        raise UsageError(f"dataset {ds.name!r} has labeled images of {len(present)} class(es) "
                         f"({', '.join(present)}): a classifier needs at least two")
    missing = [name for c, name in enumerate(ds.classes) if c not in counts]
    if missing:
        raise UsageError(f"classes {missing} have no labeled image: add images to their "
                         "labeled/<class>/ folders or remove those empty folders (in an .npz: "
                         "label some images of them, or drop them from `classes`)")
    few = [f"{ds.classes[c]} ({n})" for c, n in sorted(counts.items()) if n < 2]
    if few:
        warn(f"classes with a single labeled image: {', '.join(few)}; no validation image "
             "can be held out for them, so their validation figures mean little: label more")
    if max(counts.values()) >= 10 * min(counts.values()):
        warn(f"very unbalanced labels: {max(counts.values())} images in the largest class, "
             f"{min(counts.values())} in the smallest; accuracy will favour the large classes")


# ----------------------------------------------------------------------------- arrays


def _nchw(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"{name} has shape {list(x.shape)}: give (N, H, W), (N, H, W, C) or "
                        "(N, C, H, W) with C = 1 or 3")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{name} has dtype {x.dtype}: give uint8 or floats in [0, 1]")
    if not np.isfinite(x).all():
        raise DataError(f"{name} holds {int((~np.isfinite(x)).sum())} NaN or infinite "
                        "pixel(s): give uint8 or finite floats in [0, 1]")
    if x.min(initial=0) < 0 or x.max(initial=0) > 255:  # before a cast that could overflow
        raise DataError(f"{name} holds values in [{x.min()}, {x.max()}]: give uint8, floats "
                        "in [0, 1], or whole numbers in 0..255")
    x = x.astype(np.float32)
    top = 255.0 if x.max(initial=0) > 1 else 1.0
    if top == 255 and not np.all(x == np.round(x)):
        raise DataError(f"{name} holds values in [{x.min()}, {x.max()}]: give uint8, floats "
                        "in [0, 1], or whole numbers in 0..255")
    return np.round(x / top * 255).astype(np.uint8)


def _resized(x: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or x.shape[2:] == (size, size):
        return x
    from PIL import Image

    check_fits_in_memory(len(x), x.shape[1], size)
    out = np.empty((len(x), x.shape[1], size, size), np.uint8)
    for i, a in enumerate(x):
        image = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
        b = np.asarray(images.letterbox(image, size))
        out[i] = b[None] if b.ndim == 2 else b.transpose(2, 0, 1)
    return out


def _labels(y: np.ndarray, name: str) -> np.ndarray:
    """Labels as int64, refused when they are not whole numbers or not one a row ((N,) or,
    as Keras' datasets store them, (N, 1))."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{name} has shape {list(y.shape)}: give one class index an image, "
                        "shape (N,) or (N, 1)")
    floating = np.issubdtype(y.dtype, np.floating)
    if not (np.issubdtype(y.dtype, np.integer) or floating) or (
            floating and not np.all(np.isfinite(y) & (y == np.round(y)))):
        raise DataError(f"{name} holds values that are not whole numbers (dtype {y.dtype}): "
                        "give integer class indices")
    return y.astype(np.int64)


NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test", "classes")  # what an .npz may hold


def _from_arrays(path: Path, size: int | None) -> Dataset:
    if not path.is_file():
        raise UsageError(f"{str(path)!r} " + ("is not a regular file" if path.exists()
                                             else "does not exist")
                         + ": give an .npz with x_train and y_train")
    try:
        arrays = np.load(path, allow_pickle=False)
        fields = {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{str(path)!r} is not a readable .npz ({str(e)[:100]}): write it "
                        "with numpy.savez") from None
    unread = sorted(set(fields) - set(NPZ_ARRAYS))
    if unread:  # a misnamed array (class_names for classes) would be ignored without a word
        raise DataError(f"{str(path)!r} holds arrays fewlabels does not read: {unread}; it "
                        f"reads {', '.join(NPZ_ARRAYS)}: rename or remove them")
    for key in ("x_train", "y_train"):
        if key not in fields:
            raise DataError(f"{str(path)!r} has no {key!r} array (it has {sorted(fields)}): "
                            "give x_train and y_train (−1 = unlabeled)")
    x = _resized(_nchw(fields["x_train"], "x_train"), size)
    y = _labels(fields["y_train"], "y_train")
    if ("x_test" in fields) != ("y_test" in fields):
        given, missing = ("x_test", "y_test") if "x_test" in fields else ("y_test", "x_test")
        raise DataError(f"{str(path)!r} has {given} but no {missing}: give both (a test split) "
                        "or neither")
    has_test = "x_test" in fields
    xt = (_resized(_nchw(fields["x_test"], "x_test"), size) if has_test
          else np.zeros((0, *x.shape[1:]), np.uint8))
    yt = _labels(fields["y_test"], "y_test") if has_test else np.zeros(0, np.int64)
    for a, b, name in ((x, y, "train"), (xt, yt, "test")):
        if len(a) != len(b):
            raise DataError(f"x_{name} has {len(a)} images but y_{name} {len(b)} labels")
    if xt.shape[1:] != x.shape[1:]:
        raise DataError(f"x_test images are {list(xt.shape[1:])}, x_train's "
                        f"{list(x.shape[1:])}: give both one shape")
    k = int(max(y.max(initial=0), yt.max(initial=0))) + 1
    classes = ([str(c) for c in np.asarray(fields["classes"]).reshape(-1).tolist()]
               if "classes" in fields else [str(c) for c in range(k)])
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise DataError(f"classes names {repeated} more than once: give each class one name")
    for labels, name in ((y, "y_train"), (yt, "y_test")):
        low = UNLABELED if name == "y_train" else 0
        if len(labels) and (labels.min() < low or labels.max() >= len(classes)):
            raise DataError(f"{name} holds labels in [{labels.min()}, {labels.max()}]: use "
                            f"0..{len(classes) - 1}" + (" or −1 for unlabeled"
                                                        if name == "y_train" else ""))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Dataset(path.stem, torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xt),
                   torch.from_numpy(yt), tuple(classes), str(path), {path.name: digest})


# ----------------------------------------------------------------------------- folders


def _listing(root: Path) -> tuple[list[tuple[Path, str, int]], list[str], Skipped]:
    """[(file, split, class index or −1)], class names, files skipped for their extension."""
    labeled = root / "labeled"
    if not labeled.is_dir():
        raise UsageError(f"{str(root)!r} has no labeled/ folder: put the labeled images in "
                         f"{root}/labeled/<class>/ (and any others in {root}/unlabeled/)")
    classes = sorted(d.name for d in labeled.iterdir() if d.is_dir()
                     and not d.name.startswith("."))
    loose = sorted(f.name for f in labeled.iterdir() if f.is_file()
                   and f.suffix.lower() in images.EXTENSIONS)
    if loose:
        raise UsageError(f"{len(loose)} image(s) lie directly in labeled/ "
                         f"({one_line(loose[0])}, ...): put each in labeled/<its class>/, "
                         "the folder's name is the label")
    test_classes = sorted(d.name for d in (root / "test").iterdir() if d.is_dir()
                          and not d.name.startswith(".")) if (root / "test").is_dir() else []
    extra = sorted(set(test_classes) - set(classes))
    if extra:
        raise UsageError(f"test/ has classes {extra} that labeled/ lacks: every test class "
                         "needs labeled images")
    entries, skipped = [], Skipped()
    for split, folder in (("train", labeled), ("test", root / "test")):
        for c, name in enumerate(classes):
            found, other = images.image_files(folder / name)
            entries += [(p, split, c) for p in found]
            skipped.files += other
    if (root / "unlabeled").is_dir():
        found, other = images.image_files(root / "unlabeled")
        entries += [(p, "train", UNLABELED) for p in found]
        skipped.files += other
    return entries, classes, skipped


def _key(root: Path, entries, size: int | None, skipped: Skipped) -> tuple[str, list]:
    """(a hash of every file's path (relative to ``root``), size and contents, and of the
    size asked for; the entries that could be read). A file that cannot be read (a
    dangling or looping link, a pipe, no permission) goes into ``skipped`` with the reason."""
    h = hashlib.sha256(f"fewlabels-images-v{CACHE_VERSION} size={size}\n".encode())
    kept = []
    for path, split, c in entries:
        if not path.is_file():
            skipped.files.append((str(path), "cannot open (no such file: a dangling or looping "
                                  "link?)" if not path.exists() else "cannot open (not a file)"))
            continue
        try:
            data = path.read_bytes()
        except OSError as e:
            skipped.files.append((str(path), f"cannot read ({e.strerror or e})"))
            continue
        h.update(f"{path.relative_to(root)}\0{split}\0{c}\0{len(data)}\0".encode())
        h.update(hashlib.sha256(data).digest())
        kept.append((path, split, c))
    return h.hexdigest(), kept


def _from_folder(root: Path, size: int | None, progress: bool) -> tuple[Dataset, Skipped]:
    entries, classes, skipped = _listing(root)
    key, entries = _key(root, entries, size, skipped)
    cached = cache_dir() / "images" / f"{key}.npz"
    if cached.is_file():
        try:
            return _read_cache(cached, root, classes, key, skipped)
        except (OSError, ValueError, KeyError):
            pass  # damaged: decode again
    undecodable = Skipped()  # files in the key that fail to decode: the cache keeps them
    heads, readable = {}, []
    for path, split, c in tqdm(entries, desc="reading headers", disable=not progress,
                               leave=False):
        try:
            heads[path] = images.header(path)
            readable.append((path, split, c))
        except images.UnreadableImage as e:
            undecodable.files.append((str(path.relative_to(root)), str(e)))
    if not readable:
        failed = Skipped(skipped.files + [(str(root / f), why) for f, why in undecodable.files])
        raise UsageError(f"no readable image under {str(root)!r}: "
                         + (failed.brief() if failed.files else "the folders are empty"))
    grey = sum(g for _, g in heads.values())
    channels = 1 if grey * 2 >= len(heads) else 3
    side = size or images.default_size([s for s, _ in heads.values()])
    check_fits_in_memory(len(readable), channels, side)
    out = np.empty((len(readable), channels, side, side), np.uint8)
    kept = []
    for path, split, c in tqdm(readable, desc=f"decoding {len(readable)} images",
                               disable=not progress):
        try:
            out[len(kept)] = images.decode(path, side, channels)
            kept.append((path, split, c))
        except images.UnreadableImage as e:
            undecodable.files.append((str(path.relative_to(root)), str(e)))
    out = out[:len(kept)]
    split = np.array([s for _, s, _ in kept])
    labels = np.array([c for _, _, c in kept], np.int64)
    files = np.array([str(p.relative_to(root)) for p, _, _ in kept])
    buf = io.BytesIO()
    np.savez(buf, images=out, labels=labels, split=split, files=files,
             skipped=np.array(json.dumps(undecodable.files)))
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cached, buf.getvalue())
    del out
    return _read_cache(cached, root, classes, key, skipped)


def _read_cache(cached: Path, root: Path, classes, key: str,
                skipped: Skipped) -> tuple[Dataset, Skipped]:
    """The dataset a cache file holds; ``skipped`` (what the listing left out now) gains the
    cached files that failed to decode, named under ``root``."""
    with np.load(cached, allow_pickle=False) as z:
        out, labels, split = z["images"], z["labels"], z["split"]
        skipped = Skipped(skipped.files + [(str(root / f), why) for f, why
                                           in json.loads(str(z["skipped"]))])
    train, test = split == "train", split == "test"
    return Dataset(root.resolve().name, torch.from_numpy(out[train]),
                   torch.from_numpy(labels[train]), torch.from_numpy(out[test]),
                   torch.from_numpy(labels[test]), tuple(classes), str(root),
                   {"files": key}), skipped
