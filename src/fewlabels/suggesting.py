"""Which images of a folder to label next: ``fewlabels suggest``.

The folder is laid out as ``fit`` reads it: ``labeled/<class>/`` (optional: the images
labeled so far, which count as chosen and are never suggested) and the images to choose
from in ``unlabeled/`` (or, without it, anywhere else in the folder). The images are
embedded by a model from ``fit`` or an encoder from ``pretrain`` and chosen by a strategy
of ``fewlabels.selection`` — never by a label.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from . import images
from .errors import UsageError
from .predictor import load_for_embedding
from .selection import check_classes, select


def candidates(root: Path) -> list[str]:
    """What holds the images to choose from (and to label): ``unlabeled/``, or every image
    outside ``labeled/`` (hidden folders, the labeling page's state among them, are never
    read)."""
    if (root / "unlabeled").is_dir():
        return [str(root / "unlabeled")]
    skipped: dict[str, str] = {}
    labeled = (root / "labeled").resolve()
    return [f for f in images.expand([str(root)], skipped)
            if labeled not in Path(f).resolve().parents]


def suggest(folder: str | Path, budget: int, embedder: str | Path, *,
            strategy: str = "typical", seed: int = 0, classes: int | None = None,
            progress: bool = False) -> dict:
    """The ``budget`` images of ``folder`` to label next, in order (a prefix is the choice
    for a smaller budget). ``embedder``: a ``.model`` or an ``.encoder``. ``classes``: how
    many classes to expect (the ``coverage`` strategy's radius; default: labeled/'s class
    folders; ``coverage`` refuses to guess when there are none). Returns {"files" (paths
    relative to ``folder``), "labeled", "candidates", "unreadable" {file: why},
    "seconds"}."""
    start = time.perf_counter()
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"{str(root)!r} is not a folder: give the folder whose images are to "
                         "be labeled (its labeled/<class>/ images, if any, count as chosen)")
    labeled_dir = root / "labeled"
    known = sorted(d.name for d in labeled_dir.iterdir() if d.is_dir()
                   and not d.name.startswith(".")) if labeled_dir.is_dir() else []
    # labeled/'s class folders count the classes from two on: one is a folder begun, not
    # a count (it was refused as "--classes 1", an option nobody gave)
    classes = classes if classes is not None else len(known) if len(known) >= 2 else None
    check_classes(strategy, classes,  # before the images are read
                  f", and {str(labeled_dir)!r} holds {len(known)} class folder"
                  f"{'' if len(known) == 1 else 's'}, too few to count them")
    least = max(2, len(known))  # a class count below labeled/'s own is a contradiction
    if classes is not None and classes < least:
        raise UsageError(f"--classes {classes} is out of range: use at least {least} ("
                         + (f"{str(labeled_dir)!r} holds {len(known)} class folders"
                            if len(known) >= 2 else "a classifier tells two classes or more")
                         + ")")
    source = load_for_embedding(embedder)
    inputs = ([str(labeled_dir)] if known else []) + candidates(root)
    if not inputs[len(known) > 0:]:
        raise UsageError(f"no image to choose from in {str(root)!r}: put them in "
                         f"{root}/unlabeled/")
    feats, files, unreadable = source.embed(inputs, progress=progress)
    is_labeled = torch.tensor([labeled_dir.resolve() in Path(f).resolve().parents
                               for f in files], dtype=torch.bool)
    free = int((~is_labeled).sum())
    if free == 0:
        raise UsageError(f"no readable image to choose from in {str(root)!r}")
    if not 1 <= budget <= free:
        raise UsageError(f"--budget {budget} is out of range: use 1..{free} (the images not "
                         "labeled yet)")
    if classes is not None and classes > len(files):
        raise UsageError(f"--classes {classes} is out of range: use {least}..{len(files)} (the "
                         "images in the folder; a class needs at least one)")
    chosen = select(torch.from_numpy(feats), budget, strategy, seed,
                    labeled=is_labeled.nonzero().flatten(),
                    classes=classes)
    return {"files": [os.path.relpath(files[i], root) for i in chosen.tolist()],
            "labeled": int(is_labeled.sum()), "candidates": free, "unreadable": unreadable,
            "seconds": round(time.perf_counter() - start, 1)}


def check_links(out: str | Path) -> Path:
    """``out`` if it can take the links: a new or an empty folder; else one line."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--links {str(out)!r} exists and is not an empty folder: give a new "
                         "folder (nothing in it is replaced)")
    missing = [p for p in (out, *out.parents) if not p.exists()]
    try:  # made and removed again: the folder is tried before the images are read
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--links {str(out)!r} cannot be made ({e.strerror}): choose a "
                         "folder you can write") from None
    for p in missing:  # the leaf first
        p.rmdir()
    return out


def write_links(root: str | Path, files: list[str], out: str | Path) -> Path:
    """A folder ``out`` of links to ``files`` (relative to ``root``), named in the order
    suggested (``0001-<name>``), to open in any image viewer. ``out`` must be new or
    empty: nothing is replaced."""
    out = check_links(out)
    out.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(len(files))))
    for n, f in enumerate(files, 1):
        (out / f"{n:0{width}d}-{Path(f).name}").symlink_to(Path(root, f).resolve())
    return out
