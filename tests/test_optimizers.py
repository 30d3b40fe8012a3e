import copy

import pytest
import torch
from torch import nn

from fewlabels import optimizers


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3))


def _groups(net):
    return [{"params": list(net[:2].parameters()), "lr_scale": 0.1},
            {"params": list(net[3].parameters()), "lr_scale": 1.0}]


def _reference(name, groups, lr, decay):
    """torch.optim's optimizer of the same name and settings."""
    if name == "sgd":
        return torch.optim.SGD(optimizers.without_decay_on_vectors(groups, decay), lr=lr,
                               momentum=0.9, nesterov=True, weight_decay=decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=decay)


def _steps(net, opt, first, last):
    for step in range(first, last):
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
        for group in opt.param_groups:
            group["lr"] = 0.01 * group["lr_scale"] * (1 - step / 20)  # a schedule
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()


@pytest.mark.parametrize("name, decay", [("adamw", 0.0), ("adamw", 5e-4), ("sgd", 5e-4)])
def test_the_weights_are_torch_optims_bit_for_bit_and_the_states_load_either_way(name, decay):
    ours_net, theirs_net = _net(), _net()
    ours = optimizers.build(name, _groups(ours_net), 0.01, decay)
    theirs = _reference(name, _groups(theirs_net), 0.01, decay)
    _steps(ours_net, ours, 0, 6)
    _steps(theirs_net, theirs, 0, 6)
    for a, b in zip(ours_net.state_dict().values(), theirs_net.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    # a run saved by one resumes under the other, still bit for bit
    swapped_nets = copy.deepcopy(theirs_net), copy.deepcopy(ours_net)
    into_ours = optimizers.build(name, _groups(swapped_nets[0]), 0.01, decay)
    into_ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    into_theirs = _reference(name, _groups(swapped_nets[1]), 0.01, decay)
    into_theirs.load_state_dict(copy.deepcopy(ours.state_dict()))
    for net, opt in ((ours_net, ours), (theirs_net, theirs), (swapped_nets[0], into_ours),
                     (swapped_nets[1], into_theirs)):
        _steps(net, opt, 6, 10)
    for net in (theirs_net, *swapped_nets):
        for a, b in zip(ours_net.state_dict().values(), net.state_dict().values(), strict=True):
            assert torch.equal(a, b)


def test_sgd_leaves_batchnorm_weights_and_biases_undecayed():
    net = _net()
    opt = optimizers.build("sgd", [{"params": list(net.parameters()), "lr_scale": 1.0}],
                           0.1, 0.5)
    decays = {p.ndim > 1: g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays == {True: 0.5, False: 0.0}


def test_a_state_of_other_groups_is_refused():
    net = _net()
    opt = optimizers.build("adamw", _groups(net), 0.01, 0.0)
    other = optimizers.build("adamw", [{"params": list(net.parameters())}], 0.01, 0.0)
    with pytest.raises(ValueError, match="groups of"):
        opt.load_state_dict(other.state_dict())
