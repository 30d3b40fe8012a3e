"""Work that several runs of one comparison would do identically, done once.

Label spreading builds the same graph over the pool for every label draw (its PCA and its
nearest neighbours read no label); the semi-supervised arm starts from the pretrained
encoder's features of the whole pool, the same for every draw. The first run that needs
such a result computes it and keeps it in the comparison's folder; every other run — in
this process or in another worker of ``--workers`` — waits for it and reads it. A result
is keyed by everything it depends on, the thread count included (the same threads give
the same numbers), so a run that reads it gets what it would have computed itself. The
comparison removes the folder once its results are written.
"""

from __future__ import annotations

import fcntl
import hashlib
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from .checkpoint import atomic_write_bytes

T = TypeVar("T")
FOLDER = "memo"  # the comparison folder's subfolder of such results


def clear(run_folder: Path) -> None:
    """Remove a comparison's kept results: when its command starts or resumes (the files
    are pickles: only those this command wrote are ever loaded) and once its results are
    written (every run that reads them is done)."""
    shutil.rmtree(run_folder / FOLDER, ignore_errors=True)


def computed_once(folder: Path | None, key: Callable[[], str], compute: Callable[[], T]) -> T:
    """``compute()``, or what an earlier call with the same ``folder`` and ``key()`` kept
    (``folder`` None: always computed, nothing kept, and the key — a digest of the inputs —
    not computed either). While one process computes it, the others that ask for it wait
    on a lock rather than compute it too."""
    if folder is None:
        return compute()
    folder.mkdir(parents=True, exist_ok=True)
    key = key()
    path = folder / f"{key}.pickle"
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # let go when the file closes, or the process ends
        if path.exists():
            return pickle.loads(path.read_bytes())
        value = compute()
        atomic_write_bytes(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        return value


def fingerprint(*tensors: torch.Tensor) -> str:
    """A short digest of the tensors' values, dtypes and shapes: part of a key."""
    h = hashlib.blake2b(digest_size=8)
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
