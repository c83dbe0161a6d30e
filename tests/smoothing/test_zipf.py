"""ZipfSmoothing against a port of the authors' code (megvii-research/zipfls
pytorch_zipfls/losses.py: gen_pdf with rank_zipf and hard ranks, kl_loss, and train.py's
total loss CE + loss_lambda * kd_loss): the prior, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from adaptls.smoothing import STRATEGIES, ZipfSmoothing, zipf_prior
from adaptls.smoothing.driver import StrategyDriver

IGNORE = -100


def reference_pdf(logits, labels, power=1.0, with_target=False):
    """gen_pdf(distribution='rank_zipf', rank='hard', dense=False, friend=False)."""
    logits = logits.detach().cpu()
    n, c = logits.shape
    mask = torch.ones_like(logits).scatter_(1, labels.unsqueeze(1), 0.0).numpy()
    rank = rankdata(-logits.numpy(), axis=1, method="min")
    dist = (1 / rank) ** power
    dist = mask * dist if with_target else dist[mask.astype(bool)].reshape((n, c - 1))
    return torch.tensor(dist / dist.sum(axis=1, keepdims=True))


def reference_kl_loss(output, label, pdf):
    """kl_loss(do_mask=False)."""
    mask = torch.ones_like(output).scatter_(1, label.unsqueeze(1), 0.0)
    res = output[mask.bool()].view((output.shape[0], output.shape[1] - 1))
    res = F.log_softmax(res, dim=1)
    return F.kl_div(res, pdf, reduction="none").sum(axis=1).mean()


def reference_zipf(x, y, loss_lambda=1.0, power=1.0):
    """train.py: xent (nn.CrossEntropyLoss) + loss_lambda * zipf_loss, on the kept rows."""
    keep = y != IGNORE
    x, y = x[keep], y[keep]
    pdf = reference_pdf(x, y, power).to(x.dtype)
    return F.cross_entropy(x, y) + loss_lambda * reference_kl_loss(x, y, pdf)


def reference_soft_target(x, y, alpha, power=1.0):
    """ls_zipf_loss (with gen_pdf given the argument their call omits)."""
    keep = y != IGNORE
    x, y = x[keep], y[keep]
    zipf = reference_pdf(x, y, power, with_target=True).to(x.dtype)
    target = (1 - alpha) * F.one_hot(y, x.shape[1]) + alpha * zipf
    return (-torch.log_softmax(x, dim=1) * target).sum(dim=1).mean()


def batch(k, n=24, scale=3.0, seed=0, ties=False):
    g = torch.Generator().manual_seed(1000 * seed + k)
    if ties:
        x = torch.randint(0, 4, (n, k), generator=g).double() * scale
    else:
        x = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, k, (n,), generator=g)
    y[[1, 5]] = IGNORE
    return x, y


def built(k, **hparams):
    strategy = ZipfSmoothing(**hparams)
    StrategyDriver(strategy).setup(num_classes=k)
    return strategy


def value_and_grad(fn, x, y):
    leaf = x.detach().clone().requires_grad_()
    value = fn(leaf, y)
    (grad,) = torch.autograd.grad(value, leaf)
    return value.detach(), grad


@pytest.mark.parametrize("k", [2, 10, 200])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("power", [1.0, 1.7])
def test_prior_matches_the_reference(k, ties, power):
    x, y = batch(k, ties=ties)
    keep = y != IGNORE
    q = zipf_prior(x, y, power)
    expected = reference_pdf(x[keep], y[keep], power, with_target=True)
    torch.testing.assert_close(q[keep], expected, rtol=1e-12, atol=1e-15)
    assert (q[~keep] == 0).all()


@pytest.mark.parametrize("k", [2, 10, 200])
@pytest.mark.parametrize(("loss_lambda", "power", "ties"), [(1.0, 1.0, False), (0.1, 1.5, True)])
def test_kl_form_matches_the_reference(k, loss_lambda, power, ties):
    x, y = batch(k, ties=ties)
    strategy = built(k, loss_lambda=loss_lambda, power=power)
    value, grad = value_and_grad(strategy, x, y)
    ref_value, ref_grad = value_and_grad(
        lambda a, b: reference_zipf(a, b, loss_lambda, power), x, y
    )
    torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    assert (grad[y == IGNORE] == 0).all()


def test_kl_form_in_float32_matches_within_its_rounding():
    x, y = batch(10, scale=8.0, seed=3)
    value, grad = value_and_grad(built(10), x.float(), y)
    ref_value, ref_grad = value_and_grad(reference_zipf, x, y)
    torch.testing.assert_close(value.double(), ref_value, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [3, 10])
def test_soft_target_form_matches_the_authors_label_smooth_zipf(k):
    x, y = batch(k, seed=1)
    # 0.25: exact in float32 too (the fused loss holds a float epsilon in float32 even for
    # float64 logits, a 1e-8 relative difference this test is not about)
    strategy = built(k, form="soft_target", epsilon=0.25)
    value, grad = value_and_grad(strategy, x, y)
    ref_value, ref_grad = value_and_grad(lambda a, b: reference_soft_target(a, b, 0.25), x, y)
    torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


def test_kl_is_not_the_soft_target_loss():
    """The documented identity: CE + lam KL = (1 + lam) CE(t) + lam log(1 - p_y) + const,
    t = onehot/(1+lam) + lam/(1+lam) q, so the two forms differ by lam (log(1-p_y) + sum q log q)."""
    x, y = batch(10, seed=2)
    keep = y != IGNORE
    lam = 1.0 / 3.0  # epsilon lam / (1 + lam) = 0.25, exact in float32 (see above)
    kl = built(10, loss_lambda=lam)(x, y, reduction="none")[keep]
    soft = built(10, form="soft_target", epsilon=lam / (1 + lam))(x, y, reduction="none")[keep]
    q = zipf_prior(x, y, 1.0)[keep]
    p_y = torch.softmax(x[keep], 1).gather(1, y[keep, None]).squeeze(1)
    negentropy = torch.special.xlogy(q, q).sum(1)
    torch.testing.assert_close(
        kl, (1 + lam) * soft + lam * (torch.log1p(-p_y) + negentropy), rtol=1e-10, atol=1e-12
    )


def test_zero_lambda_and_the_schedule_give_cross_entropy():
    x, y = batch(10)
    keep = y != IGNORE
    ce = F.cross_entropy(x[keep], y[keep])
    torch.testing.assert_close(built(10, loss_lambda=0.0)(x, y), ce)
    scheduled = ZipfSmoothing(schedule={"name": "warmup", "epochs": 2})
    driver = StrategyDriver(scheduled)
    driver.setup(num_classes=10)
    driver.set_epoch(0, 4)
    torch.testing.assert_close(scheduled(x, y), ce)


def test_registered_with_its_figures_and_errors():
    assert STRATEGIES["zipf"] is ZipfSmoothing
    strategy = built(10)
    strategy(*batch(10))
    assert set(strategy.log_values()) == {"smoothing/kl", "smoothing/lambda"}
    assert strategy.hparams() == {"loss_lambda": 1.0, "power": 1.0, "form": "kl", "epsilon": 0.2}
    with pytest.raises(ValueError, match=r"form must be one of 'kl', 'soft_target'; got 'dense'"):
        ZipfSmoothing(form="dense")
    with pytest.raises(ValueError, match="loss_lambda"):
        ZipfSmoothing(loss_lambda=-1.0)
