"""How PyTorch's OpenMP threads wait, chosen before torch is loaded.

At a barrier, OpenMP threads spin for a while before they sleep (libgomp: 300,000 spins).
Alone on its CPUs that is the fastest; beside another busy process it is a disaster: a
thread spins on a core the other process needs while the thread it waits for is parked
(measured here: 3–8× slower beside one or two busy processes, against 1.0–1.5× with
sleeping threads, which cost 7–19% when alone). So when the CPUs this process may use are
already busy as it starts, fewlabels sets ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at
once); when they are idle it leaves OpenMP's default. OpenMP reads the variable when torch
loads it, so this runs when ``fewlabels`` is imported (a 0.2 s look at the CPUs), and
does nothing if torch was imported first, if ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is
set (the user's choice), or if one thread is asked for.
This module must not import torch.
"""

from __future__ import annotations

import os
import sys
import time

BUSY_CPUS = 0.5  # CPUs' worth of other work at start that makes threads sleep (a busy
# process is 1; the kernel's 10 ms ticks make a few hundredths noise at this window)
SAMPLE_SECONDS = 0.2


def cpu_times(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over ``cpus`` from /proc/stat; None where unreadable."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]]
        idle = values[3] + values[4]  # idle + iowait
        total += sum(values)
        busy += sum(values) - idle
    return (busy, total) if total else None


def busy_cpus(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many of this process's CPUs other processes kept busy over ``seconds`` (this
    process sleeps meanwhile); None where /proc/stat is not available."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = os.sched_getaffinity(0)
    first = cpu_times(cpus)
    if first is None:
        return None
    time.sleep(seconds)
    return cpus_busy(first, cpu_times(cpus), len(cpus))


def cpus_busy(first: tuple[int, int] | None, second: tuple[int, int] | None,
              cpus: int) -> float | None:
    """CPUs' worth of work (all processes) between two ``cpu_times`` readings of ``cpus``
    CPUs; None when either is missing or no time passed."""
    if first is None or second is None or second[1] <= first[1]:
        return None
    return cpus * (second[0] - first[0]) / (second[1] - first[1])


def choose_wait_policy() -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` when the CPUs are busy and the choice is still open;
    return the policy set (None: left to OpenMP or to the user)."""
    if "torch" in sys.modules or os.environ.get("OMP_WAIT_POLICY") \
            or os.environ.get("GOMP_SPINCOUNT"):
        return None
    if "1" in (os.environ.get("OMP_NUM_THREADS"), os.environ.get("FEWLABELS_THREADS")):
        return None  # one thread never waits at a barrier: nothing to choose
    busy = busy_cpus()
    if busy is not None and busy >= BUSY_CPUS:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return "PASSIVE"
    return None
