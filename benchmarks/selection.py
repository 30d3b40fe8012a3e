"""Which images to label: test accuracy of an arm on the labels each strategy chooses.

For every budget and draw, ``random``, ``typical`` and ``coverage`` (``fewlabels.selection``,
in the encoder's embedding of the training images, never reading a label) and the
``balanced`` oracle (the same count of each class: it reads the labels of images nobody
has labeled, so no user can do it) choose the images whose labels the arm trains on; the
arm is scored on the dataset's test split. Nothing is chosen from these figures — they are
reports, on reported draws (seeds under 100). A change to a strategy is chosen with
``--development``: the pool is the training images less the development split, the arm is
scored on the development split, and the draws are development draws (100 and up). Paired
differences against ``random`` over draws, 95% intervals (``fewlabels.stats``).

    python benchmarks/selection.py --encoder runs/X/mnist.encoder --budgets 10 20 40 100 \\
        --seeds 0 1 2 3 4 --out benchmarks/results/selection-mnist-probe.json

Rows print as JSON lines as they finish; ``--merge LOG ...`` writes the result of rows
printed by several processes (one a strategy or a budget, side by side) instead of running:

    python benchmarks/selection.py --merge runs/sel-*.log --out selection-....json

``--classes-kept 5 --assumed-classes 10``: five classes, the strategies told ten — what
``suggest`` assumes of a folder with nothing labeled yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from fewlabels.arms import ARMS
from fewlabels.catalog import STRATEGIES as SELECTIONS
from fewlabels.classifiers import features
from fewlabels.config import load_preset, parse_set
from fewlabels.data import Dataset, draw_labels, load_dataset
from fewlabels.development import (
    check_development_draws,
    check_reported_draws,
    development_data,
)
from fewlabels.pretrain import load_encoder
from fewlabels.runtime import cpu_bf16_units, cpu_name, resolve, set_threads
from fewlabels.selection import KMEANS_RESTARTS, select
from fewlabels.stats import paired_differences, summarize

STRATEGIES = (*SELECTIONS, "balanced")  # the library's strategies, then the oracle


def first_classes(ds: Dataset, count: int) -> Dataset:
    """``ds`` with the images of its first ``count`` classes only (labels unchanged)."""
    keep, test = ds.train_labels < count, ds.test_labels < count
    return dataclasses.replace(ds, name=f"{ds.name}-{count}-classes",
                               train_images=ds.train_images[keep],
                               train_labels=ds.train_labels[keep],
                               test_images=ds.test_images[test], test_labels=ds.test_labels[test],
                               classes=ds.classes[:count])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder")
    p.add_argument("--merge", nargs="+", type=Path, metavar="LOG",
                   help="write the result of the rows these logs hold (those of --budgets, "
                        "--seeds and --strategies), running nothing")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--arm", default="probe", choices=sorted(a for a in ARMS
                                                            if ARMS[a].pretrained))
    p.add_argument("--budgets", nargs="+", type=int, default=[10, 20, 40, 100])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--pool", type=int, help="the first N training images only (a quick check)")
    p.add_argument("--development", action="store_true",
                   help="choose, not report: the development split and development draws")
    p.add_argument("--restarts", type=int, default=KMEANS_RESTARTS,
                   help="k-means runs, the tightest kept (typical's clusters, "
                        "coverage's for its radius)")
    p.add_argument("--classes-kept", type=int, metavar="C",
                   help="the images of the first C classes only (data with another class "
                        "count than the encoder's)")
    p.add_argument("--assumed-classes", type=int, metavar="K",
                   help="the class count the strategies are told (coverage's radius), as "
                        "`suggest` guesses 10 when nothing is labeled (default: the data's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override, as `compare --set` (a variant measured with "
                        "--development)")
    p.add_argument("--out", type=Path)
    p.add_argument("--note", help="a line on how the rows were run, kept in the result")
    args = p.parse_args(argv)
    if args.merge:  # the rows of the budgets, draws and strategies asked for
        rows = [r for r in read_rows(args.merge) if r["labels"] in args.budgets
                and r["seed"] in args.seeds and r["arm"] in args.strategies]
        if not rows:
            p.error(f"no rows of those --budgets, --seeds and --strategies in "
                    f"{', '.join(map(str, args.merge))}: pass the logs that selection.py's "
                    "runs printed")
        return write_result(rows, args.out, note=args.note)
    if not args.encoder:
        p.error("--encoder is required (or --merge)")
    set_threads()  # as the CLI does: FEWLABELS_THREADS, else the CPUs allowed
    (check_development_draws if args.development else check_reported_draws)(args.seeds)
    cfg = load_preset("default", parse_set(args.set))
    rt = resolve(cfg.device, cfg.precision)
    ds = load_dataset(args.dataset)
    if args.pool:
        ds = ds.subset(train=args.pool, test=len(ds.test_labels))
    if args.classes_kept:
        ds = first_classes(ds, args.classes_kept)
    classes = args.assumed_classes or ds.num_classes
    dev = development_data(ds) if args.development else None
    if dev is not None:
        ds = dev.train  # its test split withheld: the score is the development split's
    encoder, _ = load_encoder(args.encoder)
    encoder.to(rt.device).eval()
    t = time.perf_counter()
    feats = features(encoder, ds.train_images, rt).cpu()  # labels unread
    embed_seconds = time.perf_counter() - t
    runs = []
    total = len(args.budgets) * len(args.seeds) * len(args.strategies)
    for budget in args.budgets:
        for seed in args.seeds:
            for strategy in args.strategies:
                # a row of a slow arm runs for minutes: say which one (stdout keeps the rows)
                print(f"row {len(runs) + 1} of {total}: {strategy}, {budget} labels, draw "
                      f"{seed}, {args.arm}", file=sys.stderr, flush=True)
                t = time.perf_counter()
                if strategy == "balanced":
                    labeled = draw_labels(ds.train_labels, budget, seed, "balanced")
                else:
                    labeled = select(feats, budget, strategy, seed, classes=classes,
                                     restarts=args.restarts).sort().values
                chosen_seconds = time.perf_counter() - t
                outcome = ARMS[args.arm].run(cfg.context(ds, labeled, seed, encoder, rt),
                                             cfg.settings(args.arm))
                accuracy = (dev.score(outcome.predict)["dev_accuracy"] if dev is not None
                            else float((outcome.predict(ds.test_images) == ds.test_labels)
                                       .float().mean()))
                row = {"arm": strategy, "model": args.arm, "dataset": args.dataset,
                       "labels": budget, "seed": seed, "test_accuracy": accuracy,
                       "split": "development" if dev is not None else "test",
                       "classes_hit": len(set(ds.train_labels[labeled].tolist())),
                       "selection_seconds": round(chosen_seconds, 1),
                       "encoder": Path(args.encoder).name, "set": args.set,
                       "kmeans_restarts": args.restarts, "classes": ds.num_classes,
                       "assumed_classes": classes, "embedding_seconds": round(embed_seconds, 1),
                       "precision": rt.precision, "threads": torch.get_num_threads()}
                runs.append(row)
                print(json.dumps(row), flush=True)
    return write_result(runs, args.out, note=args.note)


RUN_FIELDS = ("arm", "model", "dataset", "labels", "seed", "test_accuracy", "split",
              "classes_hit", "selection_seconds")


def read_rows(logs: list[Path]) -> list[dict]:
    """The rows that earlier runs printed, in these logs (other lines skipped), in the
    order one process prints them."""
    rows = []
    for log in logs:
        for line in log.read_text().splitlines():
            if line.startswith("{") and '"test_accuracy"' in line:
                rows.append(json.loads(line))
    return sorted(rows, key=lambda r: (r["labels"], r["seed"], STRATEGIES.index(r["arm"])))


def write_result(rows: list[dict], out: Path | None, *, note: str | None = None) -> int:
    """Summary and paired differences against ``random`` of ``rows``; printed, and written
    to ``out`` where given. Fields the runs share are kept once (a list where they differ)."""
    def shared(field):
        values = sorted({json.dumps(r.get(field)) for r in rows})
        values = [json.loads(v) for v in values]
        return values[0] if len(values) == 1 else values
    runs = [{k: r[k] for k in RUN_FIELDS} for r in rows]
    paired = [d for d in paired_differences(runs, first=list(STRATEGIES)[::-1])
              if d["b"] == "random"]
    result = {field: shared(field) for field in
              ("encoder", "dataset", "model", "split", "set", "kmeans_restarts", "classes",
               "assumed_classes", "embedding_seconds", "precision", "threads")}
    result["arm"] = result.pop("model")
    result.update(runs=runs, summary=summarize(runs), paired_against_random=paired,
                  cpu=cpu_name(), cpu_bf16=cpu_bf16_units())
    if note:
        result["note"] = note
    for d in paired:
        interval = (f"95% [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]" if d["ci95"]
                    else "no interval from one draw")
        print(f"{d['labels']:>4} labels  {d['a']:<9} − random  {d['mean']:+.4f}  "
              f"{interval}  n={d['n']}")
    if out:
        out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
