"""Measure recipe variants of one arm on a development split, never on the test set.

The development split is 10,000 training images outside the label draw (their labels are
read only to score the variant; a semi-supervised arm sees them, unlabeled, in its pool).
Defaults are chosen from these numbers; the test set stays for the comparison itself.
Each variant prints one JSON line and appends it to ``--table``.

    python benchmarks/variants.py --encoder runs/X/mnist.encoder --arm finetune \\
        --set finetune.epochs=30 --seeds 0 1 2 --table benchmarks/variants.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from fewlabels.arms import ARMS
from fewlabels.config import load_preset, parse_set
from fewlabels.data import draw_labels, load_dataset, parse_label_budget
from fewlabels.pretrain import load_encoder
from fewlabels.runtime import cpu_name, resolve

DEV_SIZE = 10_000


def dev_split(n: int, labeled: torch.Tensor, seed: int) -> torch.Tensor:
    """DEV_SIZE training indices outside ``labeled``, drawn reproducibly."""
    outside = torch.ones(n, dtype=torch.bool)
    outside[labeled] = False
    candidates = outside.nonzero().flatten()
    g = torch.Generator().manual_seed(10_000 + seed)
    return candidates[torch.randperm(len(candidates), generator=g)[:DEV_SIZE]].sort().values


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arm", required=True, choices=sorted(ARMS))
    p.add_argument("--encoder", help="a pretrained .encoder (arms that need one)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--labels", default="600")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--name", default="", help="a label for the table")
    p.add_argument("--table", type=Path, help="append each result (JSON line) here")
    args = p.parse_args(argv)

    cfg = load_preset(args.preset, parse_set(args.set))
    rt = resolve(cfg.device, cfg.precision)
    ds = load_dataset(args.dataset)
    encoder = None
    if ARMS[args.arm].pretrained:
        encoder, _ = load_encoder(args.encoder)
        encoder.to(rt.device)
    count = parse_label_budget(args.labels, len(ds.train_labels))
    for seed in args.seeds:
        labeled = draw_labels(ds.train_labels, count, seed, cfg.label_sampling)
        dev = dev_split(len(ds.train_labels), labeled, seed)
        start = time.perf_counter()
        outcome = ARMS[args.arm].run(ds.without_test(), labeled, seed, cfg, encoder)
        seconds = time.perf_counter() - start
        predicted = outcome.predict(ds.train_images[dev])
        truth = ds.train_labels[dev]
        k = ds.num_classes
        confusion = torch.bincount(truth * k + predicted, minlength=k * k).view(k, k)
        confusion.fill_diagonal_(0)
        worst = confusion.flatten().topk(3)
        row = {"arm": args.arm, "name": args.name, "set": args.set, "dataset": args.dataset,
               "labels": count, "seed": seed,
               "dev_accuracy": round((predicted == truth).float().mean().item(), 4),
               "seconds": round(seconds, 1),
               "worst": [f"{int(i) // k}->{int(i) % k}: {int(c)}"
                         for c, i in zip(worst.values, worst.indices, strict=True)],
               "encoder": Path(args.encoder).name if args.encoder else None,  # not its path
               "cpu": cpu_name(), "threads": torch.get_num_threads()}
        print(json.dumps(row), flush=True)
        if args.table:
            with args.table.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
