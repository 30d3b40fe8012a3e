"""VICReg: variance-invariance-covariance regularisation (Bardes, Ponce & LeCun, ICLR 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather
from ..errors import check_non_negative, check_positive


def invariance(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the two views' embeddings."""
    return F.mse_loss(z1, z2)


def variance(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Hinge on each dimension's standard deviation over the batch: mean(relu(γ − std))."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances, divided by the dimension."""
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = (z.t() @ z) / (n - 1)
    off = cov - torch.diag(torch.diag(cov))
    return off.pow(2).sum() / d


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim: float = 25.0, var: float = 25.0,
                cov: float = 1.0) -> torch.Tensor:
    """The weighted sum of the three terms; the variance term is the mean over the two
    views, as in the authors' implementation (the covariance term is their sum)."""
    z1, z2 = z1.float(), z2.float()
    return (sim * invariance(z1, z2) + var * (variance(z1) + variance(z2)) / 2
            + cov * (covariance(z1) + covariance(z2)))


class VICRegLoss(nn.Module):
    """Encoder → expander MLP → VICReg loss over two views."""

    views = 2

    def __init__(self, encoder: nn.Module, expander_dim: int = 512, sim: float = 25.0,
                 var: float = 25.0, cov: float = 1.0):
        super().__init__()
        check_positive("expander_dim", expander_dim, integer=True)
        for name, weight in (("sim", sim), ("var", var), ("cov", cov)):
            check_non_negative(name, weight)
        self.encoder = encoder
        d = encoder.num_features
        e = expander_dim
        self.expander = nn.Sequential(nn.Linear(d, e), nn.BatchNorm1d(e), nn.ReLU(),
                                      nn.Linear(e, e), nn.BatchNorm1d(e), nn.ReLU(),
                                      nn.Linear(e, e))
        self.weights = (sim, var, cov)

    def forward(self, views: list[torch.Tensor], clean: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.expander(self.encoder.forward_features(torch.cat(views))).chunk(2)
        return vicreg_loss(gather(z1), gather(z2), *self.weights)
