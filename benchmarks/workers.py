"""``compare --workers 2`` against one process: the same runs (MNIST, 600 labels, seeds
0 1 2, ``--quick`` arms on one encoder) as (a) one process with one thread, (b) two
workers with one thread each, (c) one process with every CPU's thread. Each in a fresh
process, one after the other. Prints JSON: the wall seconds of each, the ratios, and
whether (a) and (b) wrote the same accuracies (they must: the same threads a run).
Usage: python benchmarks/workers.py [--encoder FILE] [--arms ...] [--out FILE]
(without --encoder, a short pretraining makes one first).
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
                    "2 workers, 1 thread each": common + ["--workers", "2"],
                    f"one process, {cpus} threads": ["--threads", str(cpus)] + common
                    + ["--workers", "1"]}
        seconds, folders = {}, {}
        for i, (name, argv) in enumerate(settings.items()):
            folders[name] = tmp / f"run{i}"
            seconds[name] = round(timed(argv + ["--out", str(folders[name])]), 1)
        one, two = (accuracies(folders[n]) for n in list(settings)[:2])
        names = list(settings)
    emit({"cpu": cpu_name(), "cpus_available": cpus, "arms": args.arms, "runs": len(one),
          "wall_seconds": seconds,
          "speedup_of_2_workers": {names[0]: round(seconds[names[0]] / seconds[names[1]], 2),
                                   names[2]: round(seconds[names[2]] / seconds[names[1]], 2)},
          "same_accuracies_as_one_process_1_thread": one == two,
          "accuracies": two}, args.out)


if __name__ == "__main__":
    main()
