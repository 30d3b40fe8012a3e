"""One test over the whole registry: every method gives a finite loss, its gradients reach
the encoder, and a few steps on a fixed batch lower the loss."""

import pytest
import torch

from fewlabels import optimizers
from fewlabels.augment import AugmentConfig, augment
from fewlabels.encoders import ConvEncoder, MLPEncoder
from fewlabels.methods import METHODS


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("make_encoder", [lambda: ConvEncoder(width=8),
                                          lambda: MLPEncoder(hidden=(64,), latent_size=16)],
                         ids=["conv", "mlp"])
def test_method_trains(name, make_encoder, mnist):
    torch.manual_seed(0)
    method = METHODS[name](make_encoder())
    x = mnist.train_images[:64].float() / 255
    g = torch.Generator().manual_seed(0)
    light = AugmentConfig(rotate=5, scale=0.05, shear=0, translate=0.03)
    views = [augment(x, light, g) for _ in range(method.views)]
    opt = optimizers.AdamW(method.parameters(), lr=1e-3, weight_decay=0)
    losses = []
    for step in range(15):
        loss = method(views, x)
        assert loss.dim() == 0 and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            grads = [p.grad for p in method.encoder.parameters()]
            assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
            assert any(gr.abs().sum() > 0 for gr in grads)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
