"""How well ``fit``'s choice of arm works on small data, on development digit folders.

For each development seed (100 and up), scikit-learn's 1,797 digits are permuted by the
seed, the first 300 dropped (never read: the example's test split is elsewhere), and 10
images a class labeled, the rest unlabeled — the README's digits example, another draw.
Pretraining runs once a folder (``fit``'s recipe for the pool). Each candidate arm is then
trained as ``fit`` trains it — on the labels less a held-out fifth, in a pool without the
held-out images — and scored there (accuracy and loss); both the candidate (what ``fit``
keeps) and the arm trained again on every label (``fit --refit``) are scored on the
unlabeled images' true digits (the development accuracy). One JSON line a folder: each
arm's figures and the arm each rule would keep — ``fit``'s (``choose_arm``), the most
accurate on the held-out labels, and a fixed order (semisupervised first).

    python benchmarks/fit_choice.py --seeds 100 101 102 103 104 [--set KEY=VALUE] [--table FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from digits_folder import digits_arrays  # noqa: E402

from fewlabels.arms import ARMS, network_outcome  # noqa: E402
from fewlabels.classifiers import predict_and_plain  # noqa: E402
from fewlabels.config import load_preset, parse_set  # noqa: E402
from fewlabels.data import Dataset  # noqa: E402
from fewlabels.development import check_development_draws  # noqa: E402
from fewlabels.errors import UsageError  # noqa: E402
from fewlabels.fitting import (  # noqa: E402
    CANDIDATES,
    adapt,
    choose_arm,
    score_candidates,
    stratified_split,
)
from fewlabels.pretrain import pretrain  # noqa: E402
from fewlabels.runtime import cpu_name, resolve, set_threads  # noqa: E402
from fewlabels.stats import mcnemar_p  # noqa: E402

ORDER = ("semisupervised", "finetune", "probe", "supervised")


def folder(seed: int, per_class: int = 10, dropped: int = 300) -> tuple[Dataset, torch.Tensor]:
    """(the development folder as a Dataset, the true digits of its training images)."""
    images, target = digits_arrays()
    rest = np.random.default_rng(seed).permutation(len(images))[dropped:]
    y = np.full(len(rest), -1)
    for c in range(10):
        y[np.flatnonzero(target[rest] == c)[:per_class]] = c
    x = torch.from_numpy(images[rest]).unsqueeze(1)
    ds = Dataset(f"digits-development-{seed}", x, torch.from_numpy(y), x[:0],
                 torch.zeros(0, dtype=torch.long), tuple(str(c) for c in range(10)))
    return ds, torch.from_numpy(target[rest])


def measure(seed: int, overrides: list[str] = ()) -> dict:
    start = time.perf_counter()
    ds, truth = folder(seed)
    cfg = adapt(load_preset("default", parse_set(list(overrides))), ds)
    cfg.validate()
    rt = resolve(cfg.device, cfg.precision)
    encoder = pretrain(ds, cfg.pretrain, rt, progress=False)[0]
    labels = ds.train_labels
    labeled = (labels >= 0).nonzero().flatten()
    unlabeled = (labels < 0).nonzero().flatten()
    data = ds.without_test()
    train, val = stratified_split(labels, labeled, 0.2, 0)
    # the candidates exactly as fit trains and scores them
    nets, right, losses = score_candidates(CANDIDATES, cfg, data, train, val, 0, encoder, rt,
                                           log=lambda _line: None)
    development, plain, kept = {}, {}, {}
    pool = ds.train_images[unlabeled]

    def share_right(predicted):
        return (predicted.cpu() == truth[unlabeled]).float().mean().item()

    for arm in CANDIDATES:
        kept[arm] = share_right(network_outcome(nets[arm], rt, cfg.shifts).predict(pool))
        final = ARMS[arm].run(cfg.context(data, labeled, 0, encoder, rt), cfg.settings(arm))
        # the arm's prediction and the same network's plain one, from one set of passes
        averaged, alone = predict_and_plain(final.net.encoder, final.net.head, pool, rt,
                                            cfg.shifts)
        development[arm], plain[arm] = share_right(averaged), share_right(alone)
    accuracy = {a: r.float().mean().item() for a, r in right.items()}
    top = max(right, key=lambda a: accuracy[a])
    close = [a for a in right if a == top or mcnemar_p(right[top], right[a]) >= 0.05]
    pretrained = [a for a in CANDIDATES if ARMS[a].pretrained]
    return {"seed": seed, "split": "development", "set": list(overrides),
            "development_accuracy": development, "shifts": cfg.shifts,
            "development_accuracy_plain": plain,
            "candidate_development_accuracy": kept,
            "validation_accuracy": accuracy, "validation_loss": losses,
            "fit_choice": choose_arm(right, losses, unlabeled_arms=pretrained)[0],
            "loss_choice_any_arm": choose_arm(right, losses)[0],
            "most_accurate": top, "fixed_order": next(a for a in ORDER if a in close),
            "seconds": round(time.perf_counter() - start, 1), "cpu": cpu_name(),
            "precision": rt.precision, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    p.add_argument("--table", type=Path, help="append each JSON line to this file too")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config field, as the CLI's --set (repeatable)")
    args = p.parse_args(argv)
    set_threads()  # as the CLI does: FEWLABELS_THREADS, else the CPUs allowed
    try:
        check_development_draws(args.seeds)
        load_preset("default", parse_set(args.set))  # a bad --set stops here, not later
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for seed in args.seeds:
        row = json.dumps(measure(seed, args.set))
        print(row, flush=True)
        if args.table:
            with args.table.open("a") as f:
                f.write(row + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
