"""Pretrain a recipe once and keep the encoder each of its stages leaves, to measure what
each stage adds (and costs) without a pretraining per shortened recipe.

    python benchmarks/pretrain_stages.py --out runs/stages
    python benchmarks/variants.py --arm probe --encoder runs/stages/2-scan-round-2.encoder \\
        --seeds 100 101 102 --table benchmarks/results/variants-mnist-600.jsonl

Writes ``OUT/<number>-<stage>.encoder`` after each stage and one JSON line a stage (its
seconds, the recipe's seconds so far, the CPU) to ``OUT/stages.jsonl``. The encoders are
scored the way every recipe is chosen: on the development split and development draws
(``benchmarks/variants.py``). The stage after the last refine round is not the same as
a shorter recipe's self-labelling (that starts from an earlier round), so a stage dropped
from the recipe is confirmed by pretraining the shorter recipe itself.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

from fewlabels.config import load_preset, parse_set
from fewlabels.data import load_dataset
from fewlabels.pretrain import pretrain, save_encoder
from fewlabels.runtime import cpu_bf16_units, cpu_name, resolve, set_threads


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--preset", default="default")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, required=True, help="a folder for the encoders")
    args = p.parse_args(argv)
    set_threads()  # as the CLI does: FEWLABELS_THREADS, else the CPUs allowed
    cfg = load_preset(args.preset, parse_set(args.set))
    rt = resolve(cfg.device, cfg.precision)
    ds = load_dataset(args.dataset).without_test()
    args.out.mkdir(parents=True, exist_ok=True)
    started = last = time.perf_counter()
    numbers = iter(range(1_000))

    def keep(stage, method, history) -> None:
        nonlocal last
        now = time.perf_counter()
        name = f"{next(numbers)}-{stage.name.replace(' ', '-')}"
        encoder = copy.deepcopy(method.encoder).eval()
        save_encoder(args.out / f"{name}.encoder", encoder, cfg.pretrain, ds, history)
        row = {"stage": stage.name, "encoder": f"{name}.encoder",
               "seconds": round(now - last, 1), "seconds_so_far": round(now - started, 1),
               "recipe": cfg.pretrain.name(), "set": args.set, "dataset": args.dataset,
               "cpu": cpu_name(), "cpu_bf16": cpu_bf16_units(), "precision": rt.precision,
               "threads": torch.get_num_threads()}
        print(json.dumps(row), flush=True)
        with (args.out / "stages.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        last = time.perf_counter()

    pretrain(ds, cfg.pretrain, rt, progress=False, after_stage=keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
