"""``compare --workers N`` against one process: the same runs (MNIST, 600 labels, seeds
0 1 2, ``--quick`` arms on one encoder) as (a) one process with one thread, (b) one
one-thread worker a CPU, (c) one worker more than the CPUs (one thread each: ``auto``),
(d) one process with every CPU's thread. Each in a fresh process, one after the other.
Prints JSON: the wall seconds of each, the ratios to (c), and whether (a), (b) and (c)
wrote the same accuracies (they must: the same threads a run).
Usage: python benchmarks/workers.py [--encoder FILE] [--arms ...] [--only TEXT ...] [--out FILE]
(without --encoder, a short pretraining makes one first; with --only, the settings whose
names hold one of the texts, (c) always among them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emit import emit

FEWLABELS = [sys.executable, "-m", "fewlabels"]


def timed(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(FEWLABELS + args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def accuracies(folder: Path) -> dict:
    runs = json.loads((folder / "results.json").read_text())["runs"]
    return {f"{r['arm']} seed {r['seed']}": r["test_accuracy"] for r in runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder")
    ap.add_argument("--arms", nargs="+", default=["probe", "finetune", "semisupervised",
                                                  "supervised"])
    ap.add_argument("--only", nargs="+", help="the settings whose names hold one of these")
    ap.add_argument("--out")
    args = ap.parse_args()
    from fewlabels.runtime import available_cpus, cpu_name

    with tempfile.TemporaryDirectory(prefix="fewlabels-workers-") as tmp:
        tmp = Path(tmp)
        encoder = args.encoder
        if encoder is None:
            encoder = str(tmp / "mnist.encoder")
            timed(["pretrain", "--preset", "default", "--epochs", "0.5", "--set",
                   "refine_epochs=0", "--set", "self_label_epochs=0", "--out", encoder])
        common = ["compare", "--pretrained", encoder, "--quick", "--seeds", "0", "1", "2",
                  "--arms", *args.arms, "--set", "feature_map=0"]
        cpus = available_cpus()
        settings = {"one process, 1 thread": ["--threads", "1"] + common + ["--workers", "1"],
                    f"{cpus} workers, 1 thread each": common + ["--workers", str(cpus)],
                    f"{cpus + 1} workers, 1 thread each": common + ["--workers", str(cpus + 1)],
                    f"one process, {cpus} threads": ["--threads", str(cpus)] + common
                    + ["--workers", "1"]}
        auto = list(settings)[2]
        one_thread_a_run = list(settings)[:3]
        if args.only:
            settings = {n: a for n, a in settings.items()
                        if n == auto or any(text in n for text in args.only)}
        seconds, found = {}, {}
        for i, (name, argv) in enumerate(settings.items()):
            folder = tmp / f"run{i}"
            seconds[name] = round(timed(argv + ["--out", str(folder)]), 1)
            found[name] = accuracies(folder)
    same = [found[n] for n in one_thread_a_run if n in found]
    emit({"cpu": cpu_name(), "cpus_available": cpus, "arms": args.arms, "runs": len(found[auto]),
          "wall_seconds": seconds,
          "speedup_of_auto": {n: round(seconds[n] / seconds[auto], 2)
                              for n in settings if n != auto},
          "same_accuracies_as_one_process_1_thread": all(a == same[0] for a in same),
          "accuracies": found[auto]}, args.out)


if __name__ == "__main__":
    main()
