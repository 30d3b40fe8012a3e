"""scikit-learn's bundled handwritten digits (1,797 real 8×8 images) written as an image
folder: ``labeled/<digit>/`` (``per_class`` a class), ``unlabeled/`` and ``test/<digit>/``."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def digits_arrays():
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images / 16 * 255).astype(np.uint8)  # values 0..16 → 0..255
    return images, d.target.astype(np.int64)


def write_digits_folder(root: Path, per_class: int = 10, test: int = 300,
                        seed: int = 0) -> dict:
    """Write the folder; return how many images went where."""
    from PIL import Image

    images, labels = digits_arrays()
    order = np.random.default_rng(seed).permutation(len(images))
    test_idx, rest = order[:test], order[test:]
    labeled = np.concatenate([rest[labels[rest] == c][:per_class] for c in range(10)])
    unlabeled = np.setdiff1d(rest, labeled)
    for split, idx in (("labeled", labeled), ("test", test_idx)):
        for i in idx:
            folder = root / split / str(labels[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(folder / f"{i:04d}.png")
    (root / "unlabeled").mkdir(parents=True, exist_ok=True)
    for i in unlabeled:
        Image.fromarray(images[i]).save(root / "unlabeled" / f"{i:04d}.png")
    return {"labeled": len(labeled), "unlabeled": len(unlabeled), "test": len(test_idx)}


def add_broken_files(root: Path) -> dict:
    """A truncated PNG, a text file named .png, an empty file (all unreadable), and an RGBA
    and a 16-bit PNG of real digits (readable). Returns {name: readable?}."""
    from PIL import Image

    images, labels = digits_arrays()
    folder = root / "labeled" / "3"
    good = next(folder.glob("*.png")).read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "notes.png").write_text("this is not an image\n")
    (folder / "empty.png").write_bytes(b"")
    three = images[np.flatnonzero(labels == 3)[-1]]
    rgba = np.stack([three, three, three, np.full_like(three, 255)], -1)
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(three.astype(np.uint16) * 257).save(folder / "sixteen.png")
    return {"truncated.png": False, "notes.png": False, "empty.png": False,
            "rgba.png": True, "sixteen.png": True}


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="where to write it (must not exist yet)")
    args = p.parse_args()
    if args.folder.exists():
        p.exit(2, f"{p.prog}: error: {args.folder} exists already: give a new folder\n")
    counts = write_digits_folder(args.folder)
    print(f"wrote {args.folder}: {counts['labeled']} labeled/, {counts['unlabeled']} "
          f"unlabeled/, {counts['test']} test/ images")
