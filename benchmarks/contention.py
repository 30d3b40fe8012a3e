"""A short training run alone and beside busy competitors, under different thread
settings: how much slower does sharing the CPU make it?

The run: the seed preset's supervised arm on one draw of 600 MNIST labels (``--epochs``),
in a fresh process. Competitors: none; one busy single-thread process; one 2-thread torch
process doing matrix products; two busy processes. Settings: fewlabels' default (it makes
OpenMP threads sleep at barriers when the CPUs are busy as it starts: ``openmp.py``),
libgomp's default spinning forced (``GOMP_SPINCOUNT=300000``), other spin counts
(``--spincounts``), and one thread. Prints JSON: seconds per setting and competitor and
the ratio to the same setting alone and to the fastest setting alone, and the CPU. Usage:
python benchmarks/contention.py [--epochs 300] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from emit import emit

RUN = """
import os, time
from fewlabels.arms import ARMS  # fewlabels first: it sets the wait policy before torch loads
import torch
from fewlabels.config import load_preset
from fewlabels.data import draw_labels, load_dataset
cfg = load_preset("seed", {{"supervised": {{"epochs": {epochs}}}}})
ds = load_dataset("mnist")
labeled = draw_labels(ds.train_labels, 600, 0)
t = time.perf_counter()
ARMS["supervised"].run(cfg.context(ds.without_test(), labeled, 0), cfg.supervised)
print(os.environ.get("OMP_WAIT_POLICY", "default"), time.perf_counter() - t)
"""

BUSY = {"python": "while True: pass",
        "torch": "import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\n"
                 "while True: a @ a"}
COMPETITORS = {"alone": [], "one busy process": ["python"],
               "one 2-thread torch process": ["torch"], "two busy processes": ["python", "python"]}


def timed_run(epochs: int, env: dict) -> tuple[str, float]:
    """(the OpenMP wait policy the run had, its seconds)."""
    out = subprocess.run([sys.executable, "-c", RUN.format(epochs=epochs)], env=env,
                         capture_output=True, text=True, check=True)
    policy, seconds = out.stdout.strip().splitlines()[-1].split()
    return policy, float(seconds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--spincounts", nargs="*", type=int, default=[],
                    help="libgomp spin counts to try besides the defaults")
    ap.add_argument("--out")
    args = ap.parse_args()
    from fewlabels.runtime import available_cpus, cpu_name

    cpus = available_cpus()
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                         "FEWLABELS_THREADS")}
    settings = {
        f"{cpus} threads, fewlabels' default": {**base, "OMP_NUM_THREADS": str(cpus)},
        f"{cpus} threads, libgomp's default spin (GOMP_SPINCOUNT=300000)": {
            **base, "OMP_NUM_THREADS": str(cpus), "GOMP_SPINCOUNT": "300000"},
        **{f"{cpus} threads, GOMP_SPINCOUNT={n}": {**base, "OMP_NUM_THREADS": str(cpus),
                                                   "GOMP_SPINCOUNT": str(n)}
           for n in args.spincounts},
        "1 thread": {**base, "OMP_NUM_THREADS": "1"},
    }
    result = {"cpu": cpu_name(), "cpus_available": cpus, "epochs": args.epochs,
              "seconds": {}, "wait_policy": {}, "ratio_to_alone": {}}
    for name, env in settings.items():
        seconds, policies = {}, {}
        for competitor, kinds in COMPETITORS.items():
            busy = [subprocess.Popen([sys.executable, "-c", BUSY[k]], env=base)
                    for k in kinds]
            try:
                time.sleep(1.0 if busy else 0)
                policy, took = timed_run(args.epochs, env)
                seconds[competitor] = round(took, 2)
                policies[competitor] = policy
            finally:
                for p in busy:
                    p.kill()
                    p.wait()
        result["seconds"][name] = seconds
        result["wait_policy"][name] = policies
        result["ratio_to_alone"][name] = {k: round(v / seconds["alone"], 2)
                                          for k, v in seconds.items()}
    fastest = min(v["alone"] for v in result["seconds"].values())
    result["ratio_to_fastest_alone"] = {
        name: {k: round(v / fastest, 2) for k, v in seconds.items()}
        for name, seconds in result["seconds"].items()}
    emit(result, args.out)


if __name__ == "__main__":
    main()
