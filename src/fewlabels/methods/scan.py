"""SCAN: semantic clustering by adopting nearest neighbours (Van Gansbeke et al., ECCV
2020). An image and one of its nearest neighbours in a pretrained feature space should
fall in the same cluster; an entropy term keeps every cluster in use. Run after another
method: the pretraining driver mines the neighbours and feeds (image, neighbour) views."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather
from ..errors import UsageError, check_non_negative

MAX_CLUSTERS = 1000  # as many as ImageNet's classes: far past a few-label task's


def consistency(logits_anchor: torch.Tensor, logits_neighbor: torch.Tensor) -> torch.Tensor:
    """−mean log ⟨p(a), p(n)⟩ from the two cluster heads' logits (N, K): low when both put
    their mass on the same cluster. Computed as a logsumexp of log-probabilities, so a pair
    that disagrees by a wide margin still has a gradient (a clamped dot product has none)."""
    log_p = F.log_softmax(logits_anchor.float(), 1) + F.log_softmax(logits_neighbor.float(), 1)
    return -torch.logsumexp(log_p, 1).mean()


def neg_entropy(p: torch.Tensor) -> torch.Tensor:
    """Σ p̄ log p̄ of the mean assignment p̄: −log K when all K clusters are used evenly."""
    mean = p.mean(0).clamp_min(1e-8)
    return (mean * mean.log()).sum()


class SCANLoss(nn.Module):
    """Encoder → standardisation → linear cluster head (softmax over ``clusters``) → SCAN."""

    views = 2

    def __init__(self, encoder: nn.Module, clusters: int = 50, entropy_weight: float = 5.0):
        super().__init__()
        if isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 2:
            raise UsageError(f"clusters={clusters!r} is not allowed: it must be an integer "
                             ">= 2, e.g. the number of classes")
        if clusters > MAX_CLUSTERS:  # 100,000 were trained at 4 s a step, on 60,000 images
            raise UsageError(f"clusters={clusters} is out of range: use 2..{MAX_CLUSTERS} "
                             "(about the number of classes)")
        check_non_negative("entropy_weight", entropy_weight)
        self.encoder = encoder
        # standardised features let the new head learn as fast as the encoder moves
        self.head = nn.Sequential(nn.BatchNorm1d(encoder.num_features, affine=False),
                                  nn.Linear(encoder.num_features, clusters))
        self.entropy_weight = entropy_weight

    def forward(self, views: list[torch.Tensor], clean: torch.Tensor) -> torch.Tensor:
        logits_a, logits_n = self.head(self.encoder.forward_features(torch.cat(views))
                                       ).float().chunk(2)
        logits_a, logits_n = gather(logits_a), gather(logits_n)  # the whole batch's
        return (consistency(logits_a, logits_n)
                + self.entropy_weight * neg_entropy(F.softmax(logits_a, 1)))


class SelfLabelLoss(nn.Module):
    """SCAN's self-labelling step: the cluster head's confident predictions on clean images
    become targets for augmented views (cross entropy, weighted so that every cluster
    counts alike). Not a method on its own: it continues a trained ``SCANLoss``'s head."""

    views = 1

    def __init__(self, encoder: nn.Module, head: nn.Module, threshold: float = 0.99):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.threshold = threshold

    def forward(self, views: list[torch.Tensor], clean: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            p = gather(F.softmax(self.head(self.encoder.forward_features(clean)).float(), 1))
        confidence, target = p.max(1)
        keep = confidence > self.threshold
        # the whole batch goes through the network (BatchNorm sees every image, not only
        # the confident ones); the loss counts the confident ones
        logits = gather(self.head(self.encoder.forward_features(views[0])).float())[keep]
        if not keep.any():  # nothing confident: a zero loss that still reaches every parameter
            return logits.sum() * 0.0
        counts = torch.bincount(target[keep], minlength=p.shape[1]).float()
        weight = torch.where(counts > 0, counts.sum() / counts.clamp_min(1), 0.0)
        return F.cross_entropy(logits, target[keep], weight=weight / weight.sum())
