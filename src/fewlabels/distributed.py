"""Data-parallel pretraining under ``torchrun`` (``torch.distributed``: gloo on CPUs, NCCL
on GPUs), giving the answers one process gives.

Every rank draws the same global batch and the same augmentations from the same seeded
generators, and keeps its own contiguous share (``local``). Inside ``sharded()``:
losses that need the whole batch see it (``gather``: contrastive negatives, SCAN's cluster
balance, VICReg's batch statistics, self-labelling's class weights — gathered with their
gradients), BatchNorm normalises with the whole batch's statistics (``SyncedBatchNorm``,
which also runs on CPUs, where ``torch.nn.SyncBatchNorm`` does not), and after each
backward the gradients are averaged over the ranks (``average_gradients``: what
DistributedDataParallel's all-reduce computes). Only rank 0 writes files; a saved encoder
or training state is the plain model's and loads with any number of ranks.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist
from torch import nn

_sharded = False


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def setup() -> int:
    """Join the process group when launched by torchrun with more than one process
    (gloo, or NCCL when there is a GPU: each rank on its own); return the world size."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return world()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def sharded():
    """Inside: each rank holds its share of the batch, and ``gather`` / BatchNorm see the
    whole of it."""
    global _sharded
    before, _sharded = _sharded, world() > 1
    try:
        yield
    finally:
        _sharded = before


def is_sharded() -> bool:
    return _sharded


def local(x: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of a global batch (the whole batch in one process)."""
    return x.chunk(world())[rank()] if world() > 1 else x


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's share of ``x`` in rank order — the global batch — with gradients
    flowing back to each share; ``x`` itself outside ``sharded()``."""
    if not _sharded:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()))


def average_gradients(params) -> None:
    """Average each parameter's gradient over the ranks (after backward)."""
    if world() == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world())


class SyncedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm1d/2d whose training statistics are the whole global batch's (summed over
    the ranks with their gradients) inside ``sharded()``; a plain BatchNorm elsewhere.
    Same parameters and buffers as ``nn.BatchNorm*d``: its state loads into either."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 3, 4):
            raise ValueError(f"expected a 2-D, 3-D or 4-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (_sharded and self.training):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, x.dim())]
        xf = x.float()
        count = torch.tensor([xf.numel() / xf.shape[1]], device=x.device)
        total = all_reduce(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
        c = x.shape[1]
        n = total[-1]
        mean = total[:c] / n
        var = (total[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
                self.num_batches_tracked.add_(1)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm1d/2d replaced, in place, by a ``SyncedBatchNorm``
    holding the same parameters and buffers."""
    for name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            synced = SyncedBatchNorm(child.num_features, child.eps, child.momentum,
                                     child.affine, child.track_running_stats)
            synced.load_state_dict(child.state_dict())
            synced.to(next(child.buffers(), torch.empty(0)).device)
            setattr(module, name, synced)
        else:
            convert_batchnorm(child)
    return module
