"""Pretraining throughput of the default preset's method and encoder, optimised (bf16
autocast where the CPU has it, channels-last) against the same model in fp32, default
memory layout, eager — measured side by side in one process, interleaved.

Prints JSON: images per second for each, their ratio, and the floating-point operations
per second each reached (counted by torch's FlopCounterMode over one training step), to
compare with what the hardware can do in each precision: the ratio cannot exceed the
hardware's bf16 / fp32 convolution speed (about 2 on a CPU with AVX-512 BF16 and no AMX).
"parts" splits both paths' time into convolutions and the rest (CPU). "heaviest_convolution"
times the encoder's costliest layer alone, forward and backward, in both paths: convolutions
are most of a step, so this ratio is about what precision and layout can give on this
hardware (about 2 with AVX-512 BF16 and no AMX; several times that with AMX). Real MNIST.
Usage: python benchmarks/throughput.py [--steps 16] [--batch N] [--device cpu]
(--batch: default the preset's batch)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from fewlabels import optimizers
from fewlabels.augment import augment
from fewlabels.config import load_preset
from fewlabels.data import as_float, load_dataset
from fewlabels.encoders import build_encoder
from fewlabels.methods import METHODS
from fewlabels.runtime import environment, resolve, set_threads


def make_step(cfg, rt, channels_last: bool, pool):
    torch.manual_seed(0)
    opts = dict(cfg.encoder_options)
    if cfg.encoder == "conv":
        opts["channels_last"] = channels_last
    method = METHODS[cfg.method](build_encoder(cfg.encoder, (1, 28, 28), **opts),
                                 **cfg.options).to(rt.device)
    opt = optimizers.AdamW(method.parameters(), lr=cfg.lr)
    g = torch.Generator(device=rt.device).manual_seed(0)

    def step(idx):
        x = pool[idx]
        with rt.autocast():
            loss = method([augment(x, cfg.augment, g) for _ in range(method.views)], x)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def time_interleaved(calls: dict[str, Callable[[], None]], rounds: int, repeats: int,
                     device: torch.device) -> dict[str, float]:
    """Seconds each call took over ``rounds`` × ``repeats`` runs, after one warm-up run
    each; the calls take turns round by round, so all see the same machine load."""
    for call in calls.values():
        call()
    seconds = dict.fromkeys(calls, 0.0)
    for _ in range(rounds):
        for name, call in calls.items():
            t = time.perf_counter()
            for _ in range(repeats):
                call()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name] += time.perf_counter() - t
    return seconds


def split_by_convolutions(step, batches) -> dict:
    """Seconds one path spends in convolutions (forward and backward) and in everything
    else, from torch's profiler (CPU only: on a GPU the kernels run asynchronously)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for idx in batches:
            step(idx)
    events = prof.key_averages()
    conv = sum(e.self_cpu_time_total for e in events if "convolution" in e.key) / 1e6
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    return {"convolutions": conv, "rest": total - conv}


def heaviest_convolution(encoder, fast_rt, base_rt, images: int, steps: int) -> dict:
    """The encoder's costliest convolution (most multiply-adds per image) alone, forward
    and backward on ``images`` inputs, optimised against baseline, interleaved."""
    shapes = {}  # convolution → (its input's shape, its output's shape)

    def record(conv, inputs, output):
        shapes[conv] = (inputs[0].shape[1:], output.shape[1:])

    hooks = [m.register_forward_hook(record) for m in encoder.modules()
             if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        encoder.eval()(torch.zeros(2, *encoder.in_shape, device=fast_rt.device))
    for h in hooks:
        h.remove()

    def cost(conv):  # multiply-adds per image
        return (conv.in_channels * math.prod(conv.kernel_size) // conv.groups
                * math.prod(shapes[conv][1]))

    conv = max(shapes, key=cost)
    x = torch.randn(images, *shapes[conv][0], device=fast_rt.device)

    def forward_backward(rt, layout):
        layer = copy.deepcopy(conv).to(memory_format=layout)
        inp = x.contiguous(memory_format=layout).requires_grad_(True)

        def call():
            with rt.autocast():
                out = layer(inp)
            out.float().sum().backward()

        return call

    rounds = 3
    seconds = time_interleaved({"optimised": forward_backward(fast_rt, torch.channels_last),
                                "baseline": forward_backward(base_rt, torch.contiguous_format)},
                               rounds, steps, fast_rt.device)
    # forward, then the backward's two products of the same size (input and weight grads)
    flops = 3 * 2 * cost(conv) * images * steps * rounds
    out = shapes[conv][1]
    return {"layer": f"{conv.in_channels}→{conv.out_channels}, {conv.kernel_size[0]}×"
                     f"{conv.kernel_size[1]}, stride {conv.stride[0]}, output "
                     f"{out[1]}×{out[2]}", "images": images,
            "gflops": {k: round(flops / v / 1e9, 1) for k, v in seconds.items()},
            "ratio": round(seconds["baseline"] / seconds["optimised"], 3)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--batch", type=int, default=0, help="images per step (0: the preset's)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    set_threads()  # as the CLI does: FEWLABELS_THREADS, else the CPUs allowed
    cfg = load_preset("default").pretrain
    args.batch = args.batch or cfg.batch
    fast_rt, base_rt = resolve(args.device, "auto"), resolve(args.device, "fp32")
    pool = as_float(load_dataset("mnist").train_images[:20000]).to(fast_rt.device)
    steps = {"optimised": make_step(cfg, fast_rt, True, pool),
             "baseline": make_step(cfg, base_rt, False, pool)}
    g = torch.Generator().manual_seed(0)

    def on_a_random_batch(step):
        return lambda: step(torch.randint(0, len(pool), (args.batch,), generator=g))

    seconds = time_interleaved({k: on_a_random_batch(step) for k, step in steps.items()},
                               args.rounds, args.steps, fast_rt.device)
    images = args.rounds * args.steps * args.batch
    rate = {k: images / v for k, v in seconds.items()}
    with FlopCounterMode(display=False) as counter:
        steps["baseline"](torch.randint(0, len(pool), (args.batch,), generator=g))
    gflops = {k: round(counter.get_total_flops() * args.rounds * args.steps / v / 1e9, 1)
              for k, v in seconds.items()}
    parts = None
    if fast_rt.device.type == "cpu":
        batches = [torch.randint(0, len(pool), (args.batch,), generator=g)
                   for _ in range(args.steps)]
        split = {k: split_by_convolutions(step, batches) for k, step in steps.items()}
        parts = {part: {"optimised_share": round(split["optimised"][part] / sum(
                            split["optimised"].values()), 3),
                        "ratio": round(split["baseline"][part] / split["optimised"][part], 3)}
                 for part in ("convolutions", "rest")}
    heaviest = heaviest_convolution(
        build_encoder(cfg.encoder, (1, 28, 28), **cfg.encoder_options).to(fast_rt.device),
        fast_rt, base_rt, 2 * args.batch, args.steps)
    print(json.dumps({
        "benchmark": "pretrain_throughput", "method": cfg.method, "encoder": cfg.encoder,
        "encoder_options": cfg.encoder_options, "batch": args.batch,
        "optimised": {"precision": fast_rt.precision, "channels_last": True,
                      "images_per_second": round(rate["optimised"], 1),
                      "gflops": gflops["optimised"]},
        "baseline": {"precision": "fp32", "channels_last": False,
                     "images_per_second": round(rate["baseline"], 1),
                     "gflops": gflops["baseline"]},
        "ratio": round(rate["optimised"] / rate["baseline"], 3),
        # where the time goes (profiled steps): each part's share of an optimised step,
        # and how much faster the optimised path runs it than the baseline
        "parts": parts,
        "heaviest_convolution": heaviest,
        "environment": environment(fast_rt)}, indent=2))


if __name__ == "__main__":
    main()
