"""``fewlabels fit`` on MNIST written as an image folder: the labeled images of one
balanced draw (``--labels``, ``--seed``, the same draw ``compare`` makes) in
``labeled/<digit>/``, the rest of the training set in ``unlabeled/``, the test split in
``test/<digit>/``; then the default recipe through the folder path, as a user runs it.
Prints JSON: the chosen arm, every candidate's validation accuracy, the test accuracy,
seconds, the CPU. Compare its test accuracy with ``compare``'s on the same draw.
``--digits``: the README's example instead, scikit-learn's 1,797 digits written by
``examples/digits_folder.py`` (10 labeled a class, 300 for test).
Usage: python benchmarks/fit_folder.py [--digits] [--labels 600] [--seed 0] [--arms ...]
[--refit] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from emit import emit


def write_folder(root: Path, labels: int, seed: int) -> None:
    from PIL import Image

    from fewlabels.data import draw_labels, load_dataset

    ds = load_dataset("mnist")
    picked = set(draw_labels(ds.train_labels, labels, seed).tolist())
    for split, x, y in (("train", ds.train_images, ds.train_labels),
                        ("test", ds.test_images, ds.test_labels)):
        for i in range(len(x)):
            if split == "test":
                folder = root / "test" / str(int(y[i]))
            elif i in picked:
                folder = root / "labeled" / str(int(y[i]))
            else:
                folder = root / "unlabeled"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i, 0].numpy()).save(folder / f"{split}{i:05d}.png")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--labels", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arms", nargs="+")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--digits", action="store_true", help="the README's digits example")
    ap.add_argument("--refit", action="store_true", help="fit --refit")
    ap.add_argument("--out")
    args = ap.parse_args()
    from fewlabels.fitting import CANDIDATES, fit
    from fewlabels.runtime import cpu_name, set_threads

    set_threads()  # as the CLI does: FEWLABELS_THREADS, else the CPUs allowed

    with tempfile.TemporaryDirectory(prefix="fewlabels-mnist-folder-") as tmp:
        root = Path(tmp) / ("digits" if args.digits else "mnist")
        t = time.perf_counter()
        if args.digits:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
            from digits_folder import write_digits_folder

            write_digits_folder(root)
        else:
            write_folder(root, args.labels, args.seed)
        written = time.perf_counter() - t
        os.environ.setdefault("XDG_CACHE_HOME", str(Path(tmp) / "cache"))
        t = time.perf_counter()
        model = fit(root, Path(tmp) / "fitted.model", arms=args.arms or CANDIDATES,
                    seed=args.seed, quick_run=args.quick, refit=args.refit)
        seconds = time.perf_counter() - t
        # the ONNX export (needs fewlabels[onnx]), checked on real test images
        from fewlabels.data import load_dataset

        check = (model.decode([str(root / "test")])[0] if args.digits
                 else load_dataset("mnist").test_images[:1000])
        exported = model.export_onnx(Path(tmp) / "fitted.onnx", check=check)
    m = model.meta
    result = {"cpu": cpu_name(), "data": "digits" if args.digits else "mnist",
              "labels": m["labeled_images"], "seed": args.seed,
              "arm": m["arm"], "refit": m["refit"], "training_labels": m["training_labels"],
              "validation_accuracy": m["validation_accuracy"],
              "test_accuracy": m["test_accuracy"], "seconds_fit": round(seconds, 1),
              "seconds_writing_pngs": round(written, 1), "quick": args.quick,
              "onnx_check": exported}
    emit(result, args.out)


if __name__ == "__main__":
    main()
