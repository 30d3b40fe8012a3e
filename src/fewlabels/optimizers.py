"""AdamW and SGD with Nesterov momentum, step for step the arithmetic of ``torch.optim``'s
CPU implementation (bit-identical weights; the same ``state_dict``, so a run saved by
either resumes under the other), without its cost at start: the first ``torch.optim``
optimizer a process builds imports ``torch._dynamo`` (its methods are wrapped to keep
``torch.compile`` out of them), 2-3 s on a 2-core CPU — as long as importing torch, and
paid again by every command, worker and rank. Nothing here is compiled."""

from __future__ import annotations

import torch

OPTIMIZERS = ("adamw", "sgd")


class Optimizer:
    """Parameters, or parameter groups (``{"params": [...], "lr": ..., ...}``, the defaults
    filling the rest), a state a parameter, ``zero_grad`` and ``state_dict`` as
    ``torch.optim`` has them; ``step()`` is the subclass's."""

    def __init__(self, groups, defaults: dict):
        groups = list(groups)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = defaults
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[torch.Tensor, dict] = {}

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self) -> None:
        """The gradients dropped (``torch.optim``'s ``set_to_none=True``)."""
        for p in self._params():
            p.grad = None

    def state_dict(self) -> dict:
        """``torch.optim``'s layout: states by a parameter's number across the groups."""
        number = {p: i for i, p in enumerate(self._params())}
        groups, first = [], 0
        for g in self.param_groups:
            groups.append({**{k: v for k, v in g.items() if k != "params"},
                           "params": list(range(first, first + len(g["params"])))})
            first += len(g["params"])
        return {"state": {number[p]: s for p, s in self.state.items()},
                "param_groups": groups}

    def load_state_dict(self, saved: dict) -> None:
        params = self._params()
        sizes = [len(g["params"]) for g in saved["param_groups"]]
        if sizes != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(f"the saved optimizer has groups of {sizes} parameters, this one "
                             f"{[len(g['params']) for g in self.param_groups]}")
        for g, s in zip(self.param_groups, saved["param_groups"], strict=True):
            g.update({k: v for k, v in s.items() if k != "params"})
        self.state = {params[int(i)]: {k: v.to(params[int(i)].device)
                                       if isinstance(v, torch.Tensor) and k != "step" else v
                                       for k, v in s.items()}
                      for i, s in saved["state"].items()}


class AdamW(Optimizer):
    """AdamW (Loshchilov & Hutter, ICLR 2019): decay decoupled from the gradient."""

    def __init__(self, groups, lr: float, weight_decay: float = 0.01,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(groups, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self) -> None:
        for g in self.param_groups:
            lr, (beta1, beta2), eps, decay = g["lr"], g["betas"], g["eps"], g["weight_decay"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                s = self.state.get(p)
                if s is None:
                    s = self.state[p] = {
                        "step": torch.tensor(0.0),
                        "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
                s["step"] += 1
                if decay != 0:
                    p.mul_(1 - lr * decay)
                s["exp_avg"].lerp_(p.grad, 1 - beta1)
                s["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                step = s["step"].item()
                correction2_sqrt = (1 - beta2 ** step) ** 0.5
                denom = (s["exp_avg_sq"].sqrt() / correction2_sqrt).add_(eps)
                p.addcdiv_(s["exp_avg"], denom, value=-(lr / (1 - beta1 ** step)))


class NesterovSGD(Optimizer):
    """SGD with Nesterov momentum and weight decay added to the gradient (coupled)."""

    def __init__(self, groups, lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0):
        super().__init__(groups, {"lr": lr, "momentum": momentum, "dampening": 0,
                                  "weight_decay": weight_decay, "nesterov": True})

    @torch.no_grad()
    def step(self) -> None:
        for g in self.param_groups:
            lr, momentum, decay = g["lr"], g["momentum"], g["weight_decay"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if decay == 0 else p.grad.add(p, alpha=decay)
                s = self.state.setdefault(p, {})
                buf = s.get("momentum_buffer")
                if buf is None:
                    buf = s["momentum_buffer"] = grad.detach().clone()
                else:
                    buf.mul_(momentum).add_(grad)
                p.add_(grad.add(buf, alpha=momentum), alpha=-lr)


def without_decay_on_vectors(groups: list[dict], weight_decay: float) -> list[dict]:
    """Each group split in two: its matrices and kernels with ``weight_decay``, its vectors
    (BatchNorm weights, biases) without, the group's other settings kept."""
    split = []
    for g in groups:
        for decay, keep in ((weight_decay, lambda p: p.ndim > 1), (0.0, lambda p: p.ndim <= 1)):
            params = [p for p in g["params"] if keep(p)]
            if params:
                split.append({**g, "params": params, "weight_decay": decay})
    return split


def build(name: str, groups: list[dict], lr: float, weight_decay: float) -> Optimizer:
    """``adamw``: AdamW (Adam when ``weight_decay`` is 0); ``sgd``: FixMatch's SGD, Nesterov
    momentum 0.9 and coupled decay, not on BatchNorm weights or biases."""
    if name == "sgd":
        return NesterovSGD(without_decay_on_vectors(groups, weight_decay), lr, momentum=0.9,
                           weight_decay=weight_decay)
    return AdamW(groups, lr, weight_decay=weight_decay)
