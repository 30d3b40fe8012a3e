"""Checkpoints are data, not code: one safetensors file whose header carries JSON metadata
(kind, config, versions, data hashes). Loading never unpickles; writes are atomic."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import UsageError

FORMAT = "fewlabels-checkpoint-v1"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename: never a half file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save(path: str | Path, tensors: dict[str, torch.Tensor], kind: str, meta: dict) -> Path:
    """Save ``tensors`` and JSON-able ``meta`` as a ``kind`` checkpoint at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "kind": kind, "meta": json.dumps(meta)}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata=header)
    os.replace(tmp, path)
    return path


def load(path: str | Path, kind: str | tuple[str, ...]) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a checkpoint of ``kind`` (or of any of several kinds); a missing, corrupt or
    foreign file is a UsageError."""
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    kind = kinds[0]
    if not path.is_file():
        raise UsageError(f"checkpoint {str(path)!r} does not exist: give the path of a file "
                         f"written by save() (e.g. model.{kind})")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UsageError(f"checkpoint {str(path)!r} is corrupt or not a safetensors file "
                         f"({str(e)[:120]}): save the model again") from None
    if header.get("format") != FORMAT:
        raise UsageError(f"{str(path)!r} is not a fewlabels checkpoint "
                         f"(format {header.get('format')!r}, expected {FORMAT!r})")
    if header.get("kind") not in kinds:
        wanted = " or ".join(repr(k) for k in kinds)
        raise UsageError(f"{str(path)!r} holds a {header.get('kind')!r}, not a {wanted}: "
                         f"load it with the matching class")
    return tensors, json.loads(header["meta"])
