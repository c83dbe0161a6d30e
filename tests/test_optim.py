"""The optimizer factory: decoupled vs L2 weight decay, norms and biases excluded on request."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adaptls.optim import build_optimizer


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(8, 3))


def step_without_gradient(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """One step with every gradient zero: only weight decay moves the weights."""
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_norms_and_biases_are_excluded_on_request(name):
    model = net()
    optimizer = build_optimizer(
        model.parameters(), name, lr=0.1, weight_decay=0.5, exclude_norm_and_bias=True
    )
    decayed, kept = optimizer.param_groups
    assert decayed["weight_decay"] == 0.5 and kept["weight_decay"] == 0.0
    assert all(p.dim() > 1 for p in decayed["params"])
    # conv and linear biases, batch-norm scale and shift
    assert sorted(p.numel() for p in kept["params"]) == [3, 4, 4, 4]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    step_without_gradient(optimizer, model)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) == (p.dim() <= 1), n


def test_by_default_every_parameter_is_decayed():
    model = net()
    optimizer = build_optimizer(model.parameters(), "sgd", lr=0.1, weight_decay=0.5)
    (group,) = optimizer.param_groups
    assert len(group["params"]) == len(list(model.parameters()))
    before = [p.detach().clone() for p in model.parameters()]
    step_without_gradient(optimizer, model)
    # L2 on SGD: w <- w - lr * wd * w
    for p, w in zip(model.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), w * (1 - 0.1 * 0.5))


def test_adamw_decay_is_decoupled_and_adam_decay_is_l2():
    model, lr, wd = net(), 0.01, 0.5
    w = model[3].weight.detach().clone()
    adamw = build_optimizer(model.parameters(), "adamw", lr=lr, weight_decay=wd)
    step_without_gradient(adamw, model)
    # decoupled: shrunk by lr * wd, the (zero) gradient step adds nothing
    torch.testing.assert_close(model[3].weight.detach(), w * (1 - lr * wd))
    model = net()
    adam = build_optimizer(model.parameters(), "adam", lr=lr, weight_decay=wd)
    step_without_gradient(adam, model)
    # L2: the gradient is wd * w, and Adam's first step moves each weight by lr * sign
    torch.testing.assert_close(model[3].weight.detach(), w - lr * torch.sign(w), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "lamb"}, "name must be one of 'adamw', 'adam', 'sgd'; got 'lamb'"),
        ({"weight_decay": -1e-4}, "weight_decay must be a number >= 0, got -0.0001"),
        ({"exclude_norm_and_bias": "yes"}, "exclude_norm_and_bias must be true or false"),
    ],
)
def test_bad_options_are_named(kwargs, message):
    args = {"name": "adamw", "lr": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_optimizer(net().parameters(), **args)
