"""Where a comparison's seconds go, stage by stage, against this CPU's limit.

In one process, on real MNIST and the default preset's networks, this times a step of
each stage a comparison spends its time in — pretraining (SimCLR, a SCAN round and its
neighbour mining, self-labelling), the semi-supervised step split into its parts
(augmentation, teacher forward, student forward and backward, optimizer), a supervised /
finetune step, evaluation, data movement — and counts each step's floating-point
operations (torch's FlopCounterMode). Beside them it measures the matrix-multiply peak of
this CPU in fp32 and bf16, in the same run, so each stage's GFLOP/s reads as a fraction of
what the hardware can do; for the pretraining steps and the semi-supervised student, where
the step's time goes by kind of operator (torch's profiler) and the convolutions' own share
of the peak — what bounds a step below it. Prints JSON; the README's profile table is made
from it.
Usage: python benchmarks/stages.py [--steps 6] [--quick] [--out FILE] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from emit import emit
from torch.utils.flop_counter import FlopCounterMode

from fewlabels import optimizers
from fewlabels.augment import augment, strong_augment
from fewlabels.classifiers import features, new_classifier, param_groups, predict
from fewlabels.config import load_preset, parse_set
from fewlabels.data import as_float, load_dataset
from fewlabels.encoders import build_encoder
from fewlabels.errors import UsageError
from fewlabels.pretrain import build_method, nearest_neighbors, stages
from fewlabels.runtime import (
    cpu_bf16_units,
    cpu_name,
    environment,
    resolve,
    set_threads,
)
from fewlabels.semisupervised import resized
from fewlabels.train import batch_size, steps_per_epoch


def matmul_peak(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0) -> float:
    """GFLOP/s of square ``n`` × ``n`` matrix products in ``dtype`` over ``seconds``."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        done += 1
    return 2 * n ** 3 * done / (time.perf_counter() - start) / 1e9


# what each operator of a step is, by the name torch's profiler gives it (first match)
KINDS = (("convolution", ("conv",)), ("matrix multiply", ("mm", "linear", "matmul")),
         ("batch norm", ("batch_norm",)), ("ReLU", ("relu", "threshold")),
         ("optimizer", ("_foreach", "adam", "lerp", "addcdiv")),
         ("copies and layout", ("copy", "_to", "contiguous", "clone", "empty", "cat",
                                "view", "reshape", "permute", "transpose", "as_strided")))


def kind_of(op: str) -> str:
    name = op.split("::")[-1]
    return next((kind for kind, keys in KINDS if any(k in name for k in keys)),
                "other (augmentation, losses, elementwise)")


def operations(call: Callable[[], object], steps: int, flop_counts: dict, peaks: dict) -> dict:
    """Where a step's time goes, by kind of operator (each operator's own time, from
    torch's profiler over ``steps`` calls), and the convolutions' own GFLOP/s: what
    bounds a step that runs below the matrix-multiply peak."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            call()
    spent: dict[str, float] = {}
    for event in prof.key_averages():
        kind = kind_of(event.key)
        spent[kind] = spent.get(kind, 0.0) + event.self_cpu_time_total
    total = sum(spent.values()) or 1.0
    conv_flops = sum(n for op, n in flop_counts.items() if "conv" in str(op))
    conv_seconds = spent.get("convolution", 0.0) / 1e6 / steps
    rate = conv_flops / conv_seconds / 1e9 if conv_seconds else 0.0
    return {"time_by_operator": {k: round(v / total, 3) for k, v in
                                 sorted(spent.items(), key=lambda kv: -kv[1])},
            "convolution_gflop_per_s": round(rate, 1),
            **{f"convolution_of_{k}_peak": round(rate / v, 3) for k, v in peaks.items()}}


def measure(name: str, call: Callable[[], object], images: int, steps: int,
            peaks: dict, by_operator: bool = False) -> dict:
    """Seconds a call takes (mean of ``steps`` after one warm-up), its images a second,
    its GFLOP/s and that as a share of each matrix-multiply peak; with ``by_operator``,
    where its time goes by kind of operator (``operations``)."""
    with FlopCounterMode(display=False) as counter:
        call()
    flops = counter.get_total_flops()
    start = time.perf_counter()
    for _ in range(steps):
        call()
    seconds = (time.perf_counter() - start) / steps
    rate = flops / seconds / 1e9
    row = {"stage": name, "seconds": round(seconds, 4), "images_per_s": round(images / seconds),
           "gflop": round(flops / 1e9, 3), "gflop_per_s": round(rate, 1),
           **{f"of_{k}_peak": round(rate / v, 3) for k, v in peaks.items()}}
    if by_operator:
        row.update(operations(call, steps, counter.get_flop_counts().get("Global", {}), peaks))
    return row


def trainer(module: torch.nn.Module, loss: Callable[[], torch.Tensor], rt):
    """A training step of ``module``: ``loss()`` under autocast, backward, AdamW."""
    opt = optimizers.AdamW(module.parameters(), lr=1e-4)

    def step():
        with rt.autocast():
            value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()
    return step


def pretraining_stages(cfg, rt, pool, steps, peaks) -> list[dict]:
    p = cfg.pretrain
    g = torch.Generator(device=rt.device).manual_seed(0)
    idx = torch.randperm(len(pool))[:p.batch]
    x = pool[idx]
    first, *rest = stages(p)
    method = build_method(p, (1, 28, 28), rt.device)[1]
    rows = [measure(f"pretrain {first.name} step", trainer(method, lambda: method(
        [augment(x, p.augment, g) for _ in range(method.views)], x), rt), p.batch, steps,
        peaks, by_operator=True)]
    t = time.perf_counter()
    feats = features(method.encoder, pool, rt)
    rows.append({"stage": "pretrain neighbour mining: features of the pool",
                 "seconds": round(time.perf_counter() - t, 2),
                 "images_per_s": round(len(pool) / (time.perf_counter() - t))})
    t = time.perf_counter()
    neighbors = nearest_neighbors(feats, p.neighbors)
    rows.append({"stage": "pretrain neighbour mining: kNN of the pool",
                 "seconds": round(time.perf_counter() - t, 2)})
    measured = set()
    for stage in rest:
        method = build_method(p, (1, 28, 28), rt.device, stage=stage, previous=method)[1]
        if stage.kind in measured:
            continue  # the refine rounds are alike: one stands for all
        measured.add(stage.kind)
        near = pool[neighbors[idx, 0]] if stage.kind == "refine" else None

        def loss(m=method, near=near):
            return m([augment(x, p.augment, g)]
                     + ([augment(near, p.augment, g)] if near is not None else []), x)
        rows.append(measure(f"pretrain {stage.kind} step", trainer(method, loss, rt), p.batch,
                            steps, peaks, by_operator=True))
    return rows


SEMI_PARTS = ("semisupervised: weak views of the pool", "semisupervised: strong views of the pool",
              "semisupervised: views of the labeled batch",
              "semisupervised: teacher forward (eval, no grad)",
              "semisupervised: student forward + backward", "semisupervised: optimizer step")


def semisupervised_parts(cfg, rt, pool, labeled, steps, peaks) -> list[dict]:
    """The semi-supervised step's parts; with ``semisupervised.reduced_side`` under 1, the
    teacher's and the student's again on images resized to it (the arm's first steps), in
    the same process."""
    s, p = cfg.semisupervised, cfg.pretrain
    net = new_classifier(lambda: build_encoder(p.encoder, (1, 28, 28), **p.encoder_options),
                         10, 0).to(rt.device)
    g = torch.Generator(device=rt.device).manual_seed(0)
    xu = pool[torch.randperm(len(pool))[:s.batch * s.ratio]]
    xl = labeled[:s.batch]
    y = torch.arange(len(xl)) % 10
    opt = optimizers.AdamW(param_groups(net, s.encoder_lr_scale), lr=1e-4)
    weak, strong, lab = augment(xu, p.augment, g), strong_augment(xu, s.strong, g), \
        augment(xl, p.augment, g)

    def teacher(side: float = 1.0):
        with torch.no_grad(), rt.autocast():
            net.eval()
            out = net(resized(weak, side))
            net.train()
        return out

    def student(side: float = 1.0):
        with rt.autocast():
            logits = net(resized(torch.cat([lab, strong]), side)).float()
        loss = torch.nn.functional.cross_entropy(logits[:len(xl)], y) + logits.mean() * 0
        opt.zero_grad()
        loss.backward()

    n = len(xu) + len(xl)
    parts = [(lambda: augment(xu, p.augment, g), len(xu)),
             (lambda: strong_augment(xu, s.strong, g), len(xu)),
             (lambda: augment(xl, p.augment, g), len(xl)), (teacher, len(xu)), (student, n),
             (opt.step, n)]
    rows = [measure(name, call, images, steps, peaks, by_operator=call is student)
            for name, (call, images) in zip(SEMI_PARTS, parts, strict=True)]
    if s.reduced_side < 1:
        rows += [measure(f"{name} at {s.reduced_side:g} of the side",
                         lambda c=call: c(s.reduced_side), images, steps, peaks)
                 for name, call, images in ((SEMI_PARTS[3], teacher, len(xu)),
                                            (SEMI_PARTS[4], student, n))]
    return rows


def per_comparison(cfg, pool: int = 60_000, labels: int = 600, draws: int = 3) -> dict:
    """How many times the default comparison (MNIST, ``labels`` labels, ``draws`` draws,
    every arm) runs each measured stage, from the preset: a stage's seconds times this is
    its share of the wall. The supervised and finetune arms, given more than one rate,
    train each on the validation split's complement, then the chosen one on every label."""
    p, s, sup, fin = cfg.pretrain, cfg.semisupervised, cfg.supervised, cfg.finetune
    per_epoch = steps_per_epoch(pool, p.batch)
    rounds = p.refine_rounds if p.refine and p.refine_epochs > 0 else 0
    semi = s.steps(pool, s.epochs) * draws

    def trained(c) -> int:  # optimizer steps of an arm that chooses its rate on validation
        fit = round(labels * (1 - c.val_fraction))
        size = lambda n: batch_size(c.batch, n)  # noqa: E731
        choose = len(c.lrs) * c.epochs * steps_per_epoch(fit, size(fit)) if len(c.lrs) > 1 else 0
        return (choose + c.epochs * steps_per_epoch(labels, size(labels))) * draws
    return {"pretrain simclr step": round(p.epochs * per_epoch),
            "pretrain neighbour mining: features of the pool": rounds,
            "pretrain neighbour mining: kNN of the pool": rounds,
            "pretrain refine step": rounds * p.refine_epochs * per_epoch,
            "pretrain self-label step": p.self_label_epochs * per_epoch,
            **{part: semi for part in SEMI_PARTS},
            "supervised / finetune step": trained(sup) + trained(fin),
            "evaluation: predict 10,000 test images": 5 * draws}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--quick", action="store_true",
                    help="2,000 pool and 500 test images (a check that it runs)")
    ap.add_argument("--out")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a preset setting changed, as the CLI's --set (e.g. "
                         "pretrain.encoder_options.depth=3; semisupervised.reduced_side=S "
                         "also times the teacher and the student on images resized to S of "
                         "the side)")
    args = ap.parse_args()
    try:  # the preset's own check of the settings
        cfg = load_preset("default", parse_set(args.set))
    except UsageError as e:
        ap.error(str(e))
    set_threads()  # as the CLI does: FEWLABELS_THREADS, else the CPUs allowed
    rt = resolve("auto", "auto")
    ds = load_dataset("mnist")
    # the best of a few sizes: a small product does not fill the cores
    peaks = {"fp32": max(matmul_peak(torch.float32, n) for n in (1024, 2048))}
    if any(cpu_bf16_units().values()):  # without bf16 units it is emulated: no peak to read
        peaks["bf16"] = max(matmul_peak(torch.bfloat16, n) for n in (1024, 2048))
    t = time.perf_counter()
    pool = as_float(ds.train_images[:2000 if args.quick else None].to(rt.device))
    moved = time.perf_counter() - t
    labeled = pool[:600]
    rows = [{"stage": "data: the pool to float (once a run)", "seconds": round(moved, 3)}]
    rows += pretraining_stages(cfg, rt, pool, args.steps, peaks)
    rows += semisupervised_parts(cfg, rt, pool, labeled, args.steps, peaks)
    sup = cfg.supervised
    net = new_classifier(lambda: build_encoder(cfg.pretrain.encoder, (1, 28, 28),
                                               **cfg.pretrain.encoder_options), 10, 0)
    g = torch.Generator().manual_seed(0)
    xb, yb = labeled[:int(sup.batch)], torch.arange(int(sup.batch)) % 10
    rows.append(measure("supervised / finetune step", trainer(
        net, lambda: torch.nn.functional.cross_entropy(
            net(augment(xb, cfg.pretrain.augment, g)).float(), yb), rt), len(xb), args.steps,
        peaks))
    test = ds.test_images[:500 if args.quick else None]
    rows.append(measure(f"evaluation: predict {len(test):,} test images",
                        lambda: predict(net.encoder, net.head, test, rt), len(test), 1, peaks))
    counts = {} if args.quick else per_comparison(cfg)  # a small pool: no comparison's count
    for row in rows:
        if row["stage"] in counts:
            row["per_comparison"] = counts[row["stage"]]
            row["per_comparison_s"] = round(row["seconds"] * counts[row["stage"]], 1)
    emit({"set": args.set, "cpu": cpu_name(), "cpu_bf16": cpu_bf16_units(),
          "precision": rt.precision, "threads": torch.get_num_threads(),
          "matmul_peak_gflop_per_s": {k: round(v, 1) for k, v in peaks.items()},
          "stages": rows, "environment": environment(rt)}, args.out)


if __name__ == "__main__":
    main()
