"""The fused loss with a uniform prior is PyTorch's label smoothing, and with epsilon 0 it
is plain cross-entropy; the same for NoSmoothing and UniformSmoothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import NoSmoothing, UniformSmoothing, soft_target_cross_entropy

REDUCTIONS = ("mean", "sum", "none")


def batch(shape, k, seed=0, ignored=0.25, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, k, generator=g) * scale
    targets = torch.randint(0, k, shape, generator=g)
    targets[torch.rand(shape, generator=g) < ignored] = -100
    return logits, targets


def loss_and_grad(fn, logits):
    x = logits.clone().requires_grad_()
    loss = fn(x).reshape(-1)
    loss.backward(torch.linspace(0.5, 2.0, loss.numel(), dtype=loss.dtype))
    return loss.detach(), x.grad


def assert_equal_in_float32(ours, theirs):
    """Losses equal to atol 1e-6 (rtol 1e-6 for sums, which grow with N), gradients to
    1e-6 of their largest entry: a few float32 roundings apart, as two computations of the
    same formula are."""
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-6, atol=1e-6)
    atol = 1e-6 * theirs[1].abs().max().item()
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-5, atol=atol)


def torch_ce(targets, k, **kwargs):
    return lambda x: F.cross_entropy(x.reshape(-1, k), targets.reshape(-1), **kwargs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.35, 0.9])
@pytest.mark.parametrize(("shape", "k"), [((64,), 10), ((4, 9), 100), ((3,), 1000)])
def test_uniform_equals_torch_label_smoothing(reduction, epsilon, shape, k):
    logits, targets = batch(shape, k)
    ours = loss_and_grad(
        lambda x: soft_target_cross_entropy(x, targets, epsilon, reduction=reduction), logits
    )
    theirs = loss_and_grad(
        torch_ce(targets, k, label_smoothing=epsilon, reduction=reduction), logits
    )
    assert_equal_in_float32(ours, theirs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_uniform_strategy_equals_torch_label_smoothing(reduction):
    logits, targets = batch((8, 5), 12, seed=3)
    strategy = UniformSmoothing(epsilon=0.2)
    strategy.setup(num_classes=12)
    ours = loss_and_grad(lambda x: strategy(x, targets, reduction), logits)
    theirs = loss_and_grad(torch_ce(targets, 12, label_smoothing=0.2, reduction=reduction), logits)
    assert_equal_in_float32(ours, theirs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("shape", "k"), [((64,), 10), ((6, 7), 300)])
def test_no_smoothing_equals_plain_cross_entropy(reduction, shape, k):
    logits, targets = batch(shape, k, seed=1)
    strategy = NoSmoothing()
    strategy.setup(num_classes=k)
    ours = loss_and_grad(lambda x: strategy(x, targets, reduction), logits)
    theirs = loss_and_grad(torch_ce(targets, k, reduction=reduction), logits)
    assert_equal_in_float32(ours, theirs)


@pytest.mark.parametrize("scale", [5.0, 30.0])
def test_at_least_as_accurate_as_torch_for_large_logits(scale):
    logits, targets = batch((256,), 50, seed=2, scale=scale)
    truth = F.cross_entropy(logits.double(), targets, label_smoothing=0.1, reduction="none")
    ours = soft_target_cross_entropy(logits, targets, 0.1, reduction="none").double()
    theirs = F.cross_entropy(logits, targets, label_smoothing=0.1, reduction="none").double()
    assert (ours - truth).abs().max() <= (theirs - truth).abs().max()


def test_all_ignored_mean_is_zero_where_torch_gives_nan():
    logits, _ = batch((5,), 4)
    targets = torch.full((5,), -100)
    assert torch.isnan(F.cross_entropy(logits, targets, label_smoothing=0.1))
    assert soft_target_cross_entropy(logits, targets, 0.1).item() == 0.0
