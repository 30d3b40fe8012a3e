"""Pretraining methods: each is a loss over views (it owns its heads — projector or
decoder — but no optimizer, device calls or data loading). ``METHODS`` maps a name to
its class; every class takes ``(encoder, **options)`` and has ``views``: how many
augmented views of each image its ``forward(views, clean)`` needs."""

from torch import nn

from ..errors import construct
from .autoencoder import AutoEncoderLoss, MaskedAutoEncoderLoss
from .scan import SCANLoss
from .simclr import SimCLRLoss
from .vicreg import VICRegLoss

METHODS = {
    "autoencoder": AutoEncoderLoss,
    "masked-autoencoder": MaskedAutoEncoderLoss,
    "scan": SCANLoss,
    "simclr": SimCLRLoss,
    "vicreg": VICRegLoss,
}


def check_method(where: str, name: str, encoder: nn.Module, options: dict) -> None:
    """Build method ``name`` with ``options`` on ``encoder`` to check them (each method's
    constructor checks its values); raise UsageError naming the key under ``where``."""
    construct(METHODS[name], where, name, encoder, **options)


__all__ = ["METHODS", "AutoEncoderLoss", "MaskedAutoEncoderLoss", "SCANLoss", "SimCLRLoss",
           "VICRegLoss", "check_method"]
