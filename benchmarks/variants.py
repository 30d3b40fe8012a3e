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
from functools import partial
from pathlib import Path

import torch

from fewlabels.arms import ARMS, network_outcome
from fewlabels.augment import augment
from fewlabels.classifiers import probabilities, recalibrate_batchnorm
from fewlabels.config import load_preset, parse_set
from fewlabels.data import load_dataset, parse_label_budget
from fewlabels.development import FIRST_DEVELOPMENT_DRAW, check_development_draws, development_data
from fewlabels.errors import UsageError
from fewlabels.pretrain import load_encoder
from fewlabels.runtime import cpu_bf16_units, cpu_name, resolve, set_threads
from fewlabels.shifts import shifted_copies


def loss_curve(records: list[dict], points: int = 10) -> list[float]:
    """The training loss at about ``points`` evenly spaced records (a run that stalls or
    diverges shows in it)."""
    losses = [r["loss"] for r in records or [] if "loss" in r]
    if not losses:
        return []
    every = max(1, len(losses) // points)
    return [round(float(v), 4) for v in losses[every - 1::every]]


def shifted_views(pixels: int, fill: str = "constant"):
    """The images and four copies moved ``pixels`` left, right, up and down, zeros in (what
    ``--set shifts=N`` does to every network's prediction; ``fill="replicate"``: the edge
    copied in)."""
    return partial(shifted_copies, pixels=pixels, fill=fill)


def policy_views(count: int, policy, seed: int = 0):
    """The images and ``count`` - 1 views of the dataset's augmentation ``policy`` (the
    semi-supervised arm's weak views), the same views on every call."""
    def views(x: torch.Tensor) -> list[torch.Tensor]:
        g = torch.Generator(device=x.device).manual_seed(seed)
        return [x] + [augment(x, policy, g) for _ in range(count - 1)]
    return views


def averaged_predict(net, rt, views, chunk: int = 1024):
    """A predictor whose class is the argmax of ``net``'s softmax averaged over ``views``
    (the library's ``probabilities``, as ``--set shifts=N`` scores, with other views)."""
    return lambda images: probabilities(net.encoder, net.head, images, rt, chunk=chunk,
                                        views=views).argmax(1)


def recalibrated_predict(net, images: torch.Tensor, rt):
    """The predictor of a copy of ``net`` whose BatchNorm statistics are re-estimated on
    ``images`` (what ``semisupervised.recalibrate=true`` does after training)."""
    net = copy.deepcopy(net)
    recalibrate_batchnorm(net, images, rt)
    return network_outcome(net, rt).predict


def rescored(row: dict, what: str, dev, trained_seconds: float, make_predict, **fields) -> dict:
    """``row`` for the same trained network scored again by ``make_predict()``'s predictor;
    its seconds: the training's plus building and scoring that predictor."""
    start = time.perf_counter()
    score = dev.score(make_predict())
    return {**row, "name": f"{row['name']} + {what}", **fields, **score,
            "seconds": round(trained_seconds + time.perf_counter() - start, 1)}


AVERAGED = {"shifts-1": lambda ctx: shifted_views(1), "shifts-2": lambda ctx: shifted_views(2),
            "shifts-1-edge": lambda ctx: shifted_views(1, "replicate"),
            "shifts-2-edge": lambda ctx: shifted_views(2, "replicate"),
            "weak-5": lambda ctx: policy_views(5, ctx.augment),
            "weak-9": lambda ctx: policy_views(9, ctx.augment)}


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
    p.add_argument("--also-averaged", nargs="+", default=[], choices=sorted(AVERAGED),
                   help="more rows a draw: the same trained network's prediction averaged "
                        "over views of each scored image (test-time augmentation); the "
                        "first row is the arm's own prediction, which the default's "
                        "shifts=auto already averages on 28x28 and larger images (--set "
                        "shifts=0: the plain one)")
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
        ctx = cfg.context(dev.train, labeled, seed, encoder, rt)
        outcome = ARMS[args.arm].run(ctx, cfg.settings(args.arm))
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
        if outcome.net is not None:
            if args.also_recalibrated:
                rows.append(rescored(
                    row, "BatchNorm recalibrated on the clean pool", dev, seconds,
                    partial(recalibrated_predict, outcome.net, dev.train.train_images, rt),
                    set=[*args.set, "semisupervised.recalibrate=true"]))
            rows += [rescored(row, f"prediction averaged over {how}", dev, seconds,
                              partial(averaged_predict, outcome.net, rt, AVERAGED[how](ctx)),
                              averaged=how)
                     for how in args.also_averaged]
        for r in rows:
            print(json.dumps(r), flush=True)
            if args.table:
                with args.table.open("a") as f:
                    f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
