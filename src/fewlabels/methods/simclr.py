"""SimCLR: NT-Xent contrastive loss between two augmented views (Chen et al., ICML 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather
from ..errors import check_positive


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Normalised-temperature cross entropy. z1, z2: (N, D), row i of each = one image.

    Each of the 2N embeddings must pick its partner among the other 2N − 1. Symmetric in
    (z1, z2); equals log(2N − 1) when all embeddings are identical.
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


class SimCLRLoss(nn.Module):
    """Encoder → MLP projector → NT-Xent over two views."""

    views = 2

    def __init__(self, encoder: nn.Module, projection_dim: int = 128,
                 temperature: float = 0.2):
        super().__init__()
        check_positive("projection_dim", projection_dim, integer=True)
        check_positive("temperature", temperature)
        self.encoder = encoder
        d = encoder.num_features
        self.projector = nn.Sequential(nn.Linear(d, 2 * d), nn.BatchNorm1d(2 * d), nn.ReLU(),
                                       nn.Linear(2 * d, projection_dim))
        self.temperature = temperature

    def forward(self, views: list[torch.Tensor], clean: torch.Tensor) -> torch.Tensor:
        z = self.projector(self.encoder.forward_features(torch.cat(views)))
        z1, z2 = z.chunk(2)
        return nt_xent(gather(z1), gather(z2), self.temperature)
