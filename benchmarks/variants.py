"""Measure recipe variants of one arm on the development split and development draws.

Recipes are chosen here and nowhere else (``fewlabels.development``): the arm trains on
the training images less a development split of 10,000, with the dataset's held-back
images withheld, and is scored on the development split; the label draws are development
draws (seeds 100 and up), which a comparison refuses, so no reported draw is ever a draw a
choice was made on. Each variant prints one JSON line and appends it to ``--table``.

    python benchmarks/variants.py --encoder runs/X/mnist.encoder --arm finetune \\
        --set finetune.epochs=30 --seeds 100 101 102 --table benchmarks/variants.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

from fewlabels.arms import ARMS, network_outcome
from fewlabels.classifiers import recalibrate_batchnorm
from fewlabels.config import load_preset, parse_set
from fewlabels.data import load_dataset, parse_label_budget
from fewlabels.development import FIRST_DEVELOPMENT_DRAW, check_development_draws, development_data
from fewlabels.errors import UsageError
from fewlabels.pretrain import load_encoder
from fewlabels.runtime import cpu_bf16_units, cpu_name, resolve, set_threads


def loss_curve(records: list[dict], points: int = 10) -> list[float]:
    """The training loss at about ``points`` evenly spaced records (a run that stalls or
    diverges shows in it)."""
    losses = [r["loss"] for r in records or [] if "loss" in r]
    if not losses:
        return []
    every = max(1, len(losses) // points)
    return [round(float(v), 4) for v in losses[every - 1::every]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arm", required=True, choices=sorted(ARMS))
    p.add_argument("--encoder", help="a pretrained .encoder (arms that need one)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--labels", default="600")
    p.add_argument("--seeds", nargs="+", type=int, default=[FIRST_DEVELOPMENT_DRAW],
                   help=f"development draws ({FIRST_DEVELOPMENT_DRAW} and up)")
    p.add_argument("--preset", default="default")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--name", default="", help="a label for the table")
    p.add_argument("--table", type=Path, help="append each result (JSON line) here")
    p.add_argument("--also-recalibrated", action="store_true",
                   help="a second row a draw: the same trained network with its BatchNorm "
                        "statistics re-estimated on the clean pool (what "
                        "semisupervised.recalibrate=true does after training)")
    args = p.parse_args(argv)
    set_threads()  # as the CLI does: FEWLABELS_THREADS, else the CPUs allowed
    try:
        check_development_draws(args.seeds)
        cfg = load_preset(args.preset, parse_set(args.set))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rt = resolve(cfg.device, cfg.precision)
    dev = development_data(load_dataset(args.dataset))
    encoder = None
    if ARMS[args.arm].pretrained:
        encoder, _ = load_encoder(args.encoder)
        encoder.to(rt.device)
    count = parse_label_budget(args.labels, len(dev.train.train_labels))
    for seed in args.seeds:
        labeled = dev.draw(count, seed, cfg.label_sampling)
        start = time.perf_counter()
        outcome = ARMS[args.arm].run(cfg.context(dev.train, labeled, seed, encoder, rt),
                                     cfg.settings(args.arm))
        seconds = time.perf_counter() - start
        row = {"arm": args.arm, "name": args.name, "set": args.set, "dataset": args.dataset,
               "labels": count, "seed": seed, "split": "development",
               **dev.score(outcome.predict), "seconds": round(seconds, 1),
               "chosen": {k: v for k, v in outcome.chosen.items() if k != "val_scores"},
               "loss_curve": loss_curve(outcome.history),
               "encoder": Path(args.encoder).name if args.encoder else None,  # not its path
               "cpu": cpu_name(), "cpu_bf16": cpu_bf16_units(), "precision": rt.precision,
               "threads": torch.get_num_threads()}
        rows = [row]
        if args.also_recalibrated and outcome.net is not None:
            start = time.perf_counter()
            net = copy.deepcopy(outcome.net)
            recalibrate_batchnorm(net, dev.train.train_images, rt)
            rows.append({**row, "name": f"{args.name} + BatchNorm recalibrated on the clean pool",
                         "set": [*args.set, "semisupervised.recalibrate=true"],
                         **dev.score(network_outcome(net, rt).predict),
                         "seconds": round(seconds + time.perf_counter() - start, 1)})
        for r in rows:
            print(json.dumps(r), flush=True)
            if args.table:
                with args.table.open("a") as f:
                    f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
