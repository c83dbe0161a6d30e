"""torch.compile(fullgraph=True) of a small model plus a strategy's loss: no graph break.

``fullgraph=True`` fails on the first graph break (a host read such as ``.item()``, a
branch on tensor values, an untraceable call), so compiling at all is the check; the
compiled loss and gradients must also equal eager ones. CPU, the default (Inductor)
backend; several seconds per compilation, hence ``slow``.
"""

from __future__ import annotations

import pytest
import torch

from adaptls.smoothing import (
    ClassFrequencySmoothing,
    ConfidenceSmoothing,
    NoSmoothing,
    UniformSmoothing,
    soft_target_cross_entropy,
)

pytestmark = pytest.mark.slow

K, D, N = 10, 16, 48
STRATEGIES = {
    "none": NoSmoothing,
    "uniform": lambda: UniformSmoothing(0.1),
    "confidence": lambda: ConfidenceSmoothing(signal="target_prob"),
    "class_frequency": ClassFrequencySmoothing,
}


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, D, generator=g)
    targets = torch.randint(0, K, (N,), generator=g)
    targets[::7] = -100  # ignored rows take part too
    return hidden, targets


def gradients(step, model, hidden, targets):
    model.zero_grad()
    loss = step(hidden, targets)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_model_plus_strategy_loss_compiles_as_one_graph(name):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Linear(D, K)
    strategy = STRATEGIES[name]()
    strategy.setup(num_classes=K, class_counts=[100 // (c + 1) for c in range(K)])

    def step(hidden, targets):
        return strategy(model(hidden), targets)

    compiled = torch.compile(step, fullgraph=True)
    hidden, targets = data()
    loss, grads = gradients(compiled, model, hidden, targets)
    ref_loss, ref_grads = gradients(step, model, hidden, targets)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for grad, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_function_with_per_row_priors_compiles_as_one_graph(reduction):
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(N, K, generator=g)
    _, targets = data()
    table = torch.softmax(torch.randn(4, K, generator=g), -1)
    index = targets.clamp(min=0) % 4
    eps = torch.rand(N, generator=g) * 0.3

    def loss(x):
        return soft_target_cross_entropy(
            x, targets, eps, table, prior_index=index, reduction=reduction
        ).sum()

    compiled = torch.compile(loss, fullgraph=True)
    results = []
    for fn in (compiled, loss):
        x = logits.clone().requires_grad_()
        value = fn(x)
        value.backward()
        results.append((value.detach(), x.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)
