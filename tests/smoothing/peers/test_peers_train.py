"""Every calibration loss trains: a few SGD steps of a linear model lower it."""

from __future__ import annotations

import pytest
import torch

from adaptls.smoothing import MDCA, STRATEGIES

PEERS = ["focal", "flsd", "mbls", "acls", "dual_focal", "mdca"]


def data(k=5, n=200, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 2
    y = torch.randint(0, k, (n,), generator=g)
    x = centres[y] + torch.randn(n, d, generator=g)
    y[:10] = -100  # a few padded rows
    return x, y


def train(strategy, steps=40, k=5):
    torch.manual_seed(0)
    x, y = data(k)
    model = torch.nn.Linear(x.shape[1], k)
    with torch.no_grad():
        model.weight.mul_(8)  # confident from the start: the margin penalties are active
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    strategy.setup(num_classes=k)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = strategy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", PEERS)
def test_sgd_lowers_the_loss(name):
    losses = train(STRATEGIES[name]())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0], losses[:: len(losses) // 4]


@pytest.mark.parametrize("base", ["focal", "uniform", "mbls"])
def test_mdca_on_a_base_trains(base):
    losses = train(MDCA(base=base))
    assert losses[-1] < 0.7 * losses[0]
