"""``compare --workers N``: independent runs in N processes, one results.json.

The parent pretrains (or reuses) every encoder, then starts N workers — the same command
with ``--shard i/N`` — each with its share of the run's threads (at least one). Each worker
claims the next run no worker has claimed (a file created exclusively in ``claims/``), the
longest first, so that the workers finish together; it appends each run to its own
``runs-<i>-of-<N>.jsonl`` and its curves to its own metrics file; the parent then merges
them and writes results.json and the report exactly as one process would (it finds every
run done). A worker that fails fails the comparison, and what the others finished is kept:
the same command resumes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from .errors import UsageError

CLAIMS = "claims"  # the run folder's claims of the workers: one empty file a run


def worker_command(argv: list[str], out: Path, shard: int, workers: int,
                   threads: int) -> list[str]:
    """The command of worker ``shard``: the parent's compare arguments without
    ``--workers``, with ``--out`` and ``--shard``."""
    rest, skip = [], False
    for a in argv[argv.index("compare") + 1:]:  # global options before it are not passed
        if skip:
            skip = False
        elif a in ("--workers", "--out"):
            skip = True
        elif not a.startswith(("--workers=", "--out=")):
            rest.append(a)
    return [sys.executable, "-m", "fewlabels", "--threads", str(threads), "compare", *rest,
            "--out", str(out), "--shard", f"{shard}/{workers}"]


def claim(out: Path, key: tuple) -> bool:
    """True for the one worker that claims the run ``key`` first; False for any other.
    The claim is a file created exclusively, which the file system grants to one caller."""
    folder = out / CLAIMS
    folder.mkdir(exist_ok=True)
    name = "-".join(str(k) for k in key).replace(os.sep, "_")
    try:
        os.close(os.open(folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def run_workers(argv: list[str], out: Path, workers: int, log=print) -> None:
    """Start the workers, wait for all, fail with one line if any failed. Claims left by
    an interrupted comparison are cleared first (the caller holds the folder's lock, so no
    worker of another comparison runs in it): its unfinished runs are claimed again."""
    shutil.rmtree(out / CLAIMS, ignore_errors=True)
    threads = max(1, torch.get_num_threads() // workers)  # the run's threads, shared
    log(f"{workers} workers, {threads} thread(s) each")
    procs = [subprocess.Popen(worker_command(argv, out, i, workers, threads))
             for i in range(workers)]
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        raise
    failed = [i for i, c in enumerate(codes) if c != 0]
    if failed:
        raise UsageError(f"worker(s) {failed} of the parallel comparison failed (exit codes "
                         f"{[codes[i] for i in failed]}; their messages are above); the runs "
                         "that finished are kept: run the same command to resume")
    merge_metrics(out)


def merge_metrics(out: Path) -> None:
    """Append each worker's curves to metrics.jsonl, then remove the worker's file."""
    from .checkpoint import atomic_write_text

    parts = sorted(out.glob("metrics-*-of-*.jsonl"))
    if not parts:
        return
    main = out / "metrics.jsonl"
    text = (main.read_text() if main.exists() else "") + "".join(p.read_text() for p in parts)
    atomic_write_text(main, text)
    for p in parts:
        p.unlink()


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r} is not I/N: it is set by --workers, not by "
                         "hand") from None
    if not 0 <= i < n:
        raise UsageError(f"--shard {text!r} is out of range: I in 0..N-1")
    return i, n
