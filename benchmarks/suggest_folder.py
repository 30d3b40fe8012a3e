"""``fewlabels suggest`` on real MNIST as an image folder: the training images as PNGs (600
in labeled/<digit>/, the rest in unlabeled/), then ``suggest`` timed end to end — decoding
every PNG, the encoder's features, the selection — for each strategy, with how many of the
ten classes the suggested images hold (read afterwards, for the record; the selection never
sees a label). Prints JSON (seconds per strategy, the CPU).
Usage: python benchmarks/suggest_folder.py --encoder F [--train 60000] [--budget 100] [--out FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from emit import emit
from images import write_pngs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", required=True, help="an .encoder or a .model")
    ap.add_argument("--train", type=int, default=60_000)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--strategies", nargs="+", default=["typical", "coverage", "random"])
    ap.add_argument("--out")
    args = ap.parse_args()
    from fewlabels.runtime import cpu_bf16_units, cpu_name, set_threads
    from fewlabels.suggesting import suggest

    set_threads()  # as the CLI does: FEWLABELS_THREADS, else the CPUs allowed

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        write_pngs(root, args.train, 0)
        written = time.perf_counter() - t
        folder = root / "folder"
        rows = []
        for strategy in args.strategies:
            r = suggest(folder, args.budget, args.encoder, strategy=strategy)
            digits = {Path(f).name for f in r["files"]}
            rows.append({"strategy": strategy, "seconds": r["seconds"],
                         "images": r["candidates"] + r["labeled"], "budget": args.budget,
                         "classes_in_suggestion": _classes(digits, args.train)})
    emit({"benchmark": "suggest on MNIST as a folder", "seconds_writing_pngs": round(written, 1),
          "runs": rows, "cpu": cpu_name(), "cpu_bf16": cpu_bf16_units(),
          "threads": torch.get_num_threads()}, args.out)


def _classes(names: set[str], train: int) -> int:
    from fewlabels.data import load_dataset

    labels = load_dataset("mnist").train_labels[:train]
    return len({int(labels[int(n.split(".")[0])]) for n in names})


if __name__ == "__main__":
    main()
