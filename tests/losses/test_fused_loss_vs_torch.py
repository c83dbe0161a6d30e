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


def float32_rounding_bound(logits, targets, epsilon):
    """Per row, the most a float32 evaluation of the smoothed loss can be off from the
    exact one: loss = log s - (1 - e) z_y - (e / K) sum_j z_j, z = x - max x, s = sum e^z.

    To first order in u = 2^-24 (K u < 1e-5 here), for any summation order (a sum or dot
    product of n terms is off by at most n u times the sum of their magnitudes):
    - the linear part, a dot product of K + 1 terms with rounded z and rounded coefficients
      e - 1, e / K: (K + 4) u A, A = (1 - e)|z_y| + (e / K) sum_j |z_j|;
    - log s: each e^z within 1 ulp (2u) plus the rounding of z (u|z_j|), summed (K u):
      s is off by (K + 1 + sum_j p_j |z_j|) u relative, log s by that plus 2u log s;
    - the final addition: u |loss|.
    Two correct float32 evaluations in different orders (torch's, ours, any CPU
    capability's kernels) may each sit anywhere within it: which of them is nearer the
    exact loss is a coin flip, never a property to test.
    """
    x = logits.double()
    k = x.shape[-1]
    z = x - x.amax(-1, keepdim=True)
    p = z.softmax(-1)
    zy = z.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    a = (1 - epsilon) * zy.abs() + epsilon * z.abs().mean(-1)
    log_s = z.exp().sum(-1).log()
    loss = log_s - (1 - epsilon) * zy - epsilon * z.mean(-1)
    u = 2.0**-24
    return u * ((k + 4) * a + k + 1 + (p * z.abs()).sum(-1) + 2 * log_s + loss.abs())


# A common offset cancels in the loss but not in a formula written in x instead of z
# (lse(x) - (1 - e) x_y - e mean x is off by ~100x this bound at offset 1e4).
@pytest.mark.parametrize(("scale", "offset"), [(5.0, 0.0), (30.0, 0.0), (300.0, 0.0), (5.0, 1e4)])
def test_large_logits_stay_within_float32_rounding_of_the_exact_loss(scale, offset):
    logits, targets = batch((256,), 50, seed=2, scale=scale)
    logits += offset
    truth = F.cross_entropy(logits.double(), targets, label_smoothing=0.1, reduction="none")
    ours = soft_target_cross_entropy(logits, targets, 0.1, reduction="none").double()
    bound = float32_rounding_bound(logits, targets, 0.1)
    counted = targets != -100
    assert ((ours - truth).abs() <= bound)[counted].all()
    assert (ours[~counted] == 0).all()


def test_all_ignored_mean_is_zero_where_torch_gives_nan():
    logits, _ = batch((5,), 4)
    targets = torch.full((5,), -100)
    assert torch.isnan(F.cross_entropy(logits, targets, label_smoothing=0.1))
    assert soft_target_cross_entropy(logits, targets, 0.1).item() == 0.0
