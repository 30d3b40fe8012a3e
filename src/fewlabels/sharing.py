"""Sharing the CPU with processes that start later: while training, fewlabels looks every
few seconds at how much of its CPUs other processes took, and runs on one thread while they
take half a CPU or more (one thread never spins at an OpenMP barrier on a core another
process needs), then returns to its threads when they leave.

``openmp`` chooses the wait policy once, at start; this covers a competitor that starts
later (measured in ``benchmarks/contention.py``: 2 threads beside a busy process, spinning,
11.9 s; on one thread 5.1 s; alone 3.9 s). A run whose thread count changed computes the
same thing in another order, so it may differ in the last digits from one that ran alone:
``FEWLABELS_SHARE=0`` keeps the threads fixed (benchmarks and reproductions run alone).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch

from .errors import env_switch
from .openmp import cpu_times, cpus_busy

INTERVAL = 5.0  # seconds between looks
CROWDED = 0.5  # CPUs' worth of other processes' work that sends training to one thread
CLEAR = 0.25  # ... and below which it returns to its threads


def others_busy(cpus: set[int]) -> Callable[[], float | None]:
    """A sampler: CPUs' worth of this process's CPUs other processes kept busy since the
    last call (None at the first call, or where /proc/stat is unreadable)."""
    last: list = [None]

    def sample() -> float | None:
        mine = os.times()
        now = (cpu_times(cpus), mine.user + mine.system, time.monotonic())
        before, last[0] = last[0], now
        if before is None:
            return None
        busy = cpus_busy(before[0], now[0], len(cpus))  # all processes, this one too
        if busy is None or now[2] <= before[2]:
            return None
        return max(0.0, busy - (now[1] - before[1]) / (now[2] - before[2]))

    return sample


def sharing_enabled() -> bool:
    """``$FEWLABELS_SHARE``: 1 (or unset) adapts the threads to other processes, 0 keeps them
    fixed; any other value is a UsageError, not a guess."""
    return env_switch("FEWLABELS_SHARE", "keep the threads fixed",
                      "give way to other processes")


# what the last look of this process found, and how often it gave way so far
_last = {"crowded": False, "lowered": 0}


def times_lowered() -> int:
    """How often this process went down to one thread for other processes so far. Above 0,
    its numbers may differ from a run alone — a pretrained encoder by more than the last
    digits (MNIST's probe 0.9702 against 0.9859 from one recipe and seed; README) — so
    results.json records it (``environment.threads_lowered``)."""
    return _last["lowered"]


def shared_notice(lowered: int) -> str | None:
    """The line a command prints when the CPU was shared during its run (None when not)."""
    if not lowered:
        return None
    return (f"the CPU was shared: this run went down to one thread {lowered} time(s) for "
            "other processes, so its figures (a pretrained encoder most) may differ from a "
            "run alone; FEWLABELS_SHARE=0 keeps the threads fixed for a reproduction")


class ThreadShare:
    """Called once a step (or a chunk of work): every ``interval`` seconds it samples the
    others' load and sets torch's threads to 1 (crowded) or back to the threads it started
    with (clear). One phase of work hands the next what it found: a phase that starts while
    the last look found the CPUs crowded starts on one thread, not on its threads for a
    whole interval (a run's phases — pretraining's stages, neighbour mining, an arm's
    head fit, its pool predictions, its training — each spun for 5 s beside a competitor)."""

    def __init__(self, sample: Callable[[], float | None] | None = None,
                 interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic):
        self.threads = torch.get_num_threads()
        enabled = self.threads > 1 and sharing_enabled()
        if enabled and sample is None and hasattr(os, "sched_getaffinity"):
            sample = others_busy(os.sched_getaffinity(0))
        self.sample = sample if enabled else None
        self.interval, self.clock = interval, clock
        # the first decision waits a whole interval: a window of one short step holds a
        # jiffy or two, and one jiffy of another process would read as a crowded CPU
        self.next = clock() + interval
        self.changes: list[tuple[float, int]] = []  # (others' load, threads set)
        if self.sample is not None:
            self.sample()  # the first look starts the window
            if _last["crowded"]:
                torch.set_num_threads(1)
                _last["lowered"] += 1

    def __call__(self) -> None:
        if self.sample is None or self.clock() < self.next:
            return
        self.next = self.clock() + self.interval
        others = self.sample()
        if others is None:
            return
        now = torch.get_num_threads()
        want = 1 if others >= CROWDED else self.threads if others < CLEAR else now
        _last["crowded"] = want == 1
        if want != now:
            torch.set_num_threads(want)
            self.changes.append((round(others, 2), want))
            _last["lowered"] += want < now

    def restore(self) -> None:
        """Back to the threads it started with (training is over)."""
        if self.sample is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
