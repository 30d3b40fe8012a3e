"""The run folder's curves: ``metrics.jsonl`` (one JSON object per logged point) and, on
request, the same scalars, feature embeddings and reconstructions in TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import UsageError


class Metrics:
    """Appends curves to ``path``; with ``tensorboard`` (a folder), writes them there too."""

    def __init__(self, path: Path, tensorboard: Path | None = None):
        self.path = path
        self.writer = None
        if tensorboard is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UsageError("--tensorboard needs the tensorboard package: "
                                 "pip install tensorboard") from None
            self.writer = SummaryWriter(str(tensorboard))

    def write(self, records: list[dict] | None, **tags) -> None:
        if not records:
            return
        with self.path.open("a") as f:
            for r in records:
                f.write(json.dumps({**tags, **r}) + "\n")
        if self.writer is not None:
            prefix = "/".join(str(v) for v in tags.values())
            for r in records:
                for key, value in r.items():
                    if key not in ("step", "epoch") and isinstance(value, (int, float)):
                        self.writer.add_scalar(f"{prefix}/{key}", value, r["step"])

    def embedding(self, feats: torch.Tensor, labels: torch.Tensor, tag: str) -> None:
        if self.writer is not None:
            self.writer.add_embedding(feats, metadata=labels.tolist(), tag=tag)

    def images(self, images: torch.Tensor, tag: str) -> None:
        if self.writer is not None:
            self.writer.add_images(tag, images.clamp(0, 1))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
