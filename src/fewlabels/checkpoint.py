"""Checkpoints are data, not code: one safetensors file whose header carries JSON metadata
(kind, config, versions, data hashes) and a SHA-256 of every tensor's name, dtype, shape
and bytes and of the metadata, checked on every load (safetensors has no checksum of its
own: a flipped byte would load silently). Loading never unpickles; writes are atomic."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_bytes

from .errors import UsageError, parse_json
from .outputs import check_not_special, temporary_path

FORMAT = "fewlabels-checkpoint-v2"  # v2: with the SHA-256 (v1 files are refused)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename: never a half file. A
    device, pipe or socket at ``path`` is refused, never replaced by the rename."""
    path = Path(path)
    check_not_special(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:  # a failed write (a full disk) leaves the previous file and no temp file
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save_npy(path: Path, array) -> None:
    """``numpy.save`` made atomic."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def digest(tensors: dict[str, torch.Tensor], kind: str, meta_json: str) -> str:
    """SHA-256 of the kind, the metadata and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(f"{FORMAT}\0{kind}\0{meta_json}\0".encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save(path: str | Path, tensors: dict[str, torch.Tensor], kind: str, meta: dict) -> Path:
    """Save ``tensors`` and JSON-able ``meta`` as a ``kind`` checkpoint at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta_json = json.dumps(meta)
    header = {"format": FORMAT, "kind": kind, "meta": meta_json,
              "sha256": digest(tensors, kind, meta_json)}
    atomic_write_bytes(path, in_key_order(save_bytes(tensors, metadata=header)))
    return path


def in_key_order(data: bytes) -> bytes:
    """safetensors ``data`` with its JSON header's keys sorted. The writer orders the
    metadata as a hash map iterates, differently in every process; sorted, the same
    tensors and metadata are the same bytes (a resumed run's file equals an uninterrupted
    one's). The offsets are unchanged: only the header's order moves."""
    n = int.from_bytes(data[:8], "little")
    text = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()
    if len(text) > n:  # not expected (the same JSON, reordered): keep the writer's
        return data
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n:]


class WrongKind(UsageError):
    """A fewlabels checkpoint of another kind than the one asked for (``kind``: its own)."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


WRITTEN_BY = {"model": "`fewlabels fit` writes .model files",
              "encoder": "`fewlabels pretrain` and `compare` write .encoder files",
              "autoencoder": "the notebook's Autoencoder.save writes .autoencoder files"}
# kinds an older fewlabels wrote that this one no longer reads, with what to do instead
RETIRED = {"classifier": "classifiers are now saved as model files (kind 'model'); load it "
                         "with the fewlabels that wrote it, or train and save it again"}


def load(path: str | Path, kind: str | tuple[str, ...]) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a checkpoint of ``kind`` (or of any of several kinds); a missing, corrupt or
    foreign file is a UsageError."""
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    kind = kinds[0]
    if not path.is_file():
        what = ("is a folder" if path.is_dir() else "is not a regular file" if path.exists()
                else "does not exist")
        raise UsageError(f"checkpoint {str(path)!r} {what}: give the path of a file "
                         f"written by save() (e.g. model.{kind})")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UsageError(f"checkpoint {str(path)!r} is corrupt or not a safetensors file "
                         f"({str(e)[:120]}): save the model again") from None
    if header.get("format") != FORMAT:
        older = str(header.get("format", "")).startswith("fewlabels-checkpoint-")
        raise UsageError(f"{str(path)!r} is not a fewlabels checkpoint "
                         f"(format {header.get('format')!r}, expected {FORMAT!r})"
                         + (": it was written by an older fewlabels without a checksum; "
                            "train or pretrain it again" if older else ""))
    if header.get("kind") not in kinds:
        wanted = " or ".join(repr(k) for k in kinds)
        raise WrongKind(f"{str(path)!r} holds a checkpoint of kind {header.get('kind')!r}, "
                        f"not {wanted}: "
                        + (RETIRED[header["kind"]] if header.get("kind") in RETIRED else
                           "; ".join(WRITTEN_BY[k] for k in kinds if k in WRITTEN_BY)
                           + ": give one of those"), header.get("kind"))
    stored = header.get("sha256")
    actual = digest(tensors, header["kind"], header.get("meta", ""))
    if stored != actual:
        raise UsageError(f"checkpoint {str(path)!r} fails its checksum (stored sha256 "
                         f"{str(stored)[:16]}…, computed {actual[:16]}…): the file is damaged; "
                         "use a good copy or save it again")
    try:
        meta = parse_json(header["meta"])
    except (KeyError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise UsageError(f"checkpoint {str(path)!r} has no valid metadata: save it again")
    return tensors, meta


@contextlib.contextmanager
def rebuilding(path: str | Path):
    """Inside: rebuild a model from a loaded checkpoint. Metadata that lacks a key or holds
    a wrong type, or tensors that do not fit the network it describes, become one
    UsageError naming the file."""
    try:
        yield
    except UsageError:
        raise
    except KeyError as e:
        raise UsageError(f"checkpoint {str(path)!r}: its metadata lacks {e}; it was not "
                         "written by this version of fewlabels: save it again") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"checkpoint {str(path)!r}: invalid metadata ({str(e)[:120]}): "
                         "save it again") from None
    except RuntimeError as e:  # load_state_dict: missing, unexpected or mis-shaped tensors
        first = str(e).strip().splitlines()
        raise UsageError(f"checkpoint {str(path)!r}: its tensors do not fit the network its "
                         f"metadata describes ({' '.join(first[:2])[:200]}): save it "
                         "again") from None


def _split(tree, tensors: dict, prefix: str = ""):
    """``tree`` with every tensor moved into ``tensors`` and replaced by its key."""
    if isinstance(tree, torch.Tensor):
        tensors[prefix] = tree
        return {"__tensor__": prefix}
    if isinstance(tree, dict) and not all(isinstance(k, str) for k in tree):
        # keys JSON would turn into strings (an optimizer's parameter numbers)
        return {"__items__": [[k, _split(v, tensors, f"{prefix}/{k}")] for k, v in tree.items()]}
    if isinstance(tree, dict):
        return {k: _split(v, tensors, f"{prefix}/{k}") for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split(v, tensors, f"{prefix}/{i}") for i, v in enumerate(tree)]
    return tree


def _join(tree, tensors: dict):
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return tensors[tree["__tensor__"]]
        if set(tree) == {"__items__"}:
            return {k: _join(v, tensors) for k, v in tree["__items__"]}
        return {k: _join(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, tensors) for v in tree]
    return tree


def save_tree(path: str | Path, tree: dict, kind: str) -> Path:
    """Save a nested dict of tensors and JSON values (a training state) as one verified
    checkpoint."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(tree, tensors)
    return save(path, tensors, kind, {"tree": skeleton})


def load_tree(path: str | Path, kind: str) -> dict:
    tensors, meta = load(path, kind)
    with rebuilding(path):
        return _join(meta["tree"], tensors)
