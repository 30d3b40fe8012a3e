"""Where and how tensors are computed: device, autocast precision, threads."""

from __future__ import annotations

import contextlib
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UsageError, check_choice

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@functools.cache
def cpu_bf16_units() -> dict[str, bool]:
    """Which native bf16 matrix instructions the CPU has, as torch sees them: AMX tiles
    (several times faster than fp32) and AVX-512 BF16 (about twice). Asked once."""
    cpu = getattr(torch, "cpu", None)
    found = {}
    for name, probe in (("amx", "_is_amx_tile_supported"),
                        ("avx512_bf16", "_is_avx512_bf16_supported")):
        fn = getattr(cpu, probe, None)
        try:
            found[name] = bool(fn()) if fn is not None else False
        except RuntimeError:
            found[name] = False
    return found


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 matmul (AVX-512 BF16 or AMX)."""
    return any(cpu_bf16_units().values())


@dataclass(frozen=True)
class Runtime:
    """A resolved device and autocast dtype (None = plain fp32)."""

    device: torch.device
    autocast_dtype: torch.dtype | None

    def autocast(self):
        """A context that runs matmuls in the chosen low precision, or does nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]


def resolve(device: str = "auto", precision: str = "auto") -> Runtime:
    """Pick the device and precision; fail clearly when the request cannot be met.

    ``auto`` device: CUDA if available, else CPU. ``auto`` precision: bf16 where the
    hardware runs it fast (recent CUDA GPUs; CPUs with AVX-512 BF16 / AMX), else fp32.
    """
    check_choice("device", str(device), DEVICES)
    check_choice("precision", precision, PRECISIONS)
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' was asked for, but no CUDA GPU is available: "
                         "use --device cpu or --device auto")
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and
                                                     torch.cuda.is_available()) else "cpu")
    if precision == "auto":
        fast = torch.cuda.is_bf16_supported() if dev.type == "cuda" else cpu_has_fast_bf16()
        precision = "bf16" if fast else "fp32"
    if precision == "fp16" and dev.type != "cuda":
        raise UsageError("precision 'fp16' needs a CUDA device: use bf16 or fp32 on the CPU")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    return Runtime(dev, dtype)


def _cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), or None when there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota
    (a container's share) — not the machine's total, which torch would otherwise assume."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = _cgroup_cpus()
    if quota is not None:
        n = min(n or 1, max(1, math.floor(quota)))
    return max(1, n or 1)


def set_threads(threads: int | None = None, where: str = "threads") -> int:
    """Set torch's threads, and NumPy's and scikit-learn's: ``threads``, else
    ``$FEWLABELS_THREADS``, else — unless ``$OMP_NUM_THREADS`` already chose — the CPUs
    this process may use (``available_cpus``, also the most ``threads`` may ask for).
    Returns the number in use. ``where``: the name a refused ``threads`` is given by (the
    CLI's ``--threads``)."""
    from .errors import check_positive

    name = where
    if threads is None and os.environ.get("FEWLABELS_THREADS"):
        name = "FEWLABELS_THREADS"
        try:
            threads = int(os.environ["FEWLABELS_THREADS"])
        except ValueError:
            raise UsageError(f"FEWLABELS_THREADS={os.environ['FEWLABELS_THREADS']!r} is not "
                             "a whole number: set it to a thread count >= 1, or unset it") from None
    if threads is not None:
        check_positive(name, threads, integer=True)
        cpus = available_cpus()
        if threads > cpus:  # more threads than CPUs wait for each other at every barrier
            raise UsageError(f"{name}={threads} is out of range: 1..{cpus} (the CPUs this "
                             "process may use); give fewer")
    elif os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    n = int(threads) if threads is not None else available_cpus()
    torch.set_num_threads(n)
    # NumPy's BLAS and scikit-learn's OpenMP keep their own thread pools, sized to the
    # machine: a one-thread worker of --workers ran its PCA and neighbour searches on two
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    return n


def cpu_name() -> str:
    """The CPU's model name where the system tells it, else its architecture."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


PACKAGES = ("numpy", "scipy", "scikit-learn", "matplotlib", "safetensors", "optuna")


def environment(rt: Runtime, lowered_before: int = 0) -> dict:
    """What a result depends on: versions, device, threads. ``lowered_before``: how often
    this process had given way to other processes before the work described began (its
    count is the process's; an earlier run in it is not this one's)."""
    import platform
    from importlib import metadata

    from .sharing import times_lowered

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    env = {"torch": torch.__version__, "device": rt.device.type, "precision": rt.precision,
           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "cpus_available": available_cpus(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
           "threads_lowered": times_lowered() - lowered_before,
           "python": platform.python_version(), "platform": platform.platform(),
           "cpu": cpu_name(), "cpu_bf16": dict(cpu_bf16_units()), "packages": versions}
    if rt.device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(rt.device)
    return env
