"""A training run alone and beside busy competitors, under different thread settings:
how much slower does sharing the CPU make it?

The run (``--arm``): the seed preset's supervised arm on one draw of 600 MNIST labels
(``--epochs``), or the default preset's semi-supervised arm from a new encoder
(``--passes`` over the pool), in a fresh process. Competitors: none; one busy
single-thread process; one 2-thread torch process doing matrix products; two busy
processes; a 2-thread torch process or a busy one that starts 3 s after the run (its start
saw idle CPUs: only sharing while it runs, ``sharing.py``, helps), from the same session or
from another one (another terminal: Linux's autogroup then shares the CPUs by session).
Settings: fewlabels' default (OpenMP threads sleep at barriers when the CPUs are busy as it starts,
``openmp.py``, it runs on one thread while others crowd the CPUs, ``sharing.py``, and its
work runs in a session of its own as the command line's does, ``session.py``); the same in
the caller's session (``FEWLABELS_OWN_SESSION=0``, fewlabels' default before the session);
the same without sharing (``FEWLABELS_SHARE=0``); libgomp's default spinning forced
(``GOMP_SPINCOUNT=300000``); other spin counts (``--spincounts``); one thread. Prints JSON:
seconds per setting and competitor, the ratio to the same setting alone and to the fastest
setting alone, and the CPU. Usage: python benchmarks/contention.py [--arm supervised]
[--epochs 300] [--passes 2] [--pool N] [--only WORD ...] [--out FILE]
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
arm = {arm!r}
cfg = load_preset("seed" if arm == "supervised" else "default",
                  {{"supervised": {{"epochs": {epochs}}},
                    "semisupervised": {{"epochs": {passes}, "hard_pool_epochs": {passes}}}}})
ds = load_dataset("mnist").subset(train={pool})
labeled = draw_labels(ds.train_labels, 600, 0)
# the semi-supervised arm starts from an encoder: a new one costs the same a step (its pool
# starts unconfident, "hard": hard_pool_epochs holds the passes too)
encoder = cfg.context(ds.without_test(), labeled, 0).new_network().encoder
t = time.perf_counter()
ARMS[arm].run(cfg.context(ds.without_test(), labeled, 0, encoder), cfg.settings(arm))
print(os.environ.get("OMP_WAIT_POLICY", "default"), time.perf_counter() - t)
"""

# the run as the command line starts its work: in a session of its own where that changes
# how the CPUs are shared (``fewlabels.session``), else in the caller's
LAUNCH = """
import subprocess, sys
from fewlabels.session import own_session_wanted, run_in_own_session
run = [sys.executable, "-c", sys.argv[1]]
sys.exit(run_in_own_session(run) if own_session_wanted() else subprocess.call(run))
"""

BUSY = {"python": "while True: pass",
        "torch": "import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\n"
                 "while True: a @ a"}
# (competitors, whether they start after the run: it then saw idle CPUs at its start,
# whether they start in a session of their own, as from another terminal: Linux's
# autogroup scheduling then shares the CPUs between the two sessions, not between threads)
COMPETITORS = {"alone": ([], False, False), "one busy process": (["python"], False, False),
               "one 2-thread torch process": (["torch"], False, False),
               "two busy processes": (["python", "python"], False, False),
               "one 2-thread torch process, started 3 s after": (["torch"], True, False),
               "one busy process, started 3 s after": (["python"], True, False),
               "one 2-thread torch process, started 3 s after in another session": (
                   ["torch"], True, True),
               "one busy process, started 3 s after in another session": (
                   ["python"], True, True)}
LATE_START = 3.0  # seconds after the run starts that a late competitor starts


def timed_run(run_code: str, env: dict, kinds: list[str], base: dict,
              late: bool, own_session: bool = False) -> tuple[str, float]:
    """(the OpenMP wait policy the run had, its seconds), beside competitors ``kinds``
    started before it (or ``LATE_START`` s after it, with ``late``; in a session of their
    own with ``own_session``)."""
    def start(kinds):
        return [subprocess.Popen([sys.executable, "-c", BUSY[k]], env=base,
                                 start_new_session=own_session) for k in kinds]

    busy = [] if late else start(kinds)
    try:
        time.sleep(1.0 if busy else 0)
        run = subprocess.Popen([sys.executable, "-c", LAUNCH, run_code], env=env,
                               stdout=subprocess.PIPE, text=True)
        if late:
            time.sleep(LATE_START)
            busy = start(kinds)
        out, _ = run.communicate()
        if run.returncode:
            raise SystemExit(f"the timed run failed (exit {run.returncode})")
    finally:
        for p in busy:
            p.kill()
            p.wait()
    policy, seconds = out.strip().splitlines()[-1].split()
    return policy, float(seconds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", choices=["supervised", "semisupervised"], default="supervised",
                    help="the run: the seed preset's supervised arm, or the default preset's "
                         "semi-supervised arm from a new encoder")
    ap.add_argument("--epochs", type=int, default=300, help="the supervised arm's epochs")
    ap.add_argument("--passes", type=float, default=2.0,
                    help="the semi-supervised arm's passes over the pool")
    ap.add_argument("--pool", type=int, default=None,
                    help="the first N training images only (a quick check; default: all)")
    ap.add_argument("--only", nargs="*", default=[], metavar="WORD",
                    help="only the settings and competitors whose names hold each word's "
                         "setting or competitor part (e.g. default after): a subset")
    ap.add_argument("--spincounts", nargs="*", type=int, default=[],
                    help="libgomp spin counts to try besides the defaults")
    ap.add_argument("--out")
    args = ap.parse_args()
    from fewlabels.runtime import available_cpus, cpu_name

    cpus = available_cpus()
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                         "FEWLABELS_THREADS", "FEWLABELS_SHARE", "FEWLABELS_OWN_SESSION")}
    settings = {
        f"{cpus} threads, fewlabels' default": {**base, "OMP_NUM_THREADS": str(cpus)},
        f"{cpus} threads, libgomp's default spin (GOMP_SPINCOUNT=300000)": {
            **base, "OMP_NUM_THREADS": str(cpus), "GOMP_SPINCOUNT": "300000"},
        **{f"{cpus} threads, GOMP_SPINCOUNT={n}": {**base, "OMP_NUM_THREADS": str(cpus),
                                                   "GOMP_SPINCOUNT": str(n)}
           for n in args.spincounts},
        f"{cpus} threads, in the caller's session (FEWLABELS_OWN_SESSION=0)": {
            **base, "OMP_NUM_THREADS": str(cpus), "FEWLABELS_OWN_SESSION": "0"},
        f"{cpus} threads, no sharing (FEWLABELS_SHARE=0)": {
            **base, "OMP_NUM_THREADS": str(cpus), "FEWLABELS_SHARE": "0"},
        "1 thread": {**base, "OMP_NUM_THREADS": "1"},
    }
    def chosen(names):  # "alone" always: every ratio is to it
        return [n for n in names if n == "alone" or not args.only
                or any(w in n for w in args.only)]
    result = {"cpu": cpu_name(), "cpus_available": cpus, "arm": args.arm,
              "epochs": args.epochs if args.arm == "supervised" else None,
              "passes": args.passes if args.arm == "semisupervised" else None,
              "pool": args.pool,
              "seconds": {}, "wait_policy": {}, "ratio_to_alone": {}}
    run_code = RUN.format(arm=args.arm, epochs=args.epochs, passes=args.passes, pool=args.pool)
    for name in [n for n in settings if not args.only or any(w in n for w in args.only)]:
        env = settings[name]
        seconds, policies = {}, {}
        for competitor in chosen(COMPETITORS):
            kinds, late, own_session = COMPETITORS[competitor]
            policy, took = timed_run(run_code, env, kinds, base, late, own_session)
            seconds[competitor] = round(took, 2)
            policies[competitor] = policy
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
