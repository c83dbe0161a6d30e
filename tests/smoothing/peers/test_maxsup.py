"""MaxSup against a port of the authors' loss (ZhouYuxuanYX/Maximum-Suppression-Regularization
LT/loss/MAXsupLoss.py and Conv/common_resnet/train.py): values, gradients and the lambda
ramp over epochs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import STRATEGIES, MaxSup
from adaptls.smoothing.driver import StrategyDriver


class RefMaxSupLoss(torch.nn.Module):
    """MaxSupLoss, its lambda ramp 0.1 -> 0.2 made of begin/end (Conv/ffcv's names)."""

    def __init__(self, num_epochs=200, begin=0.1, end=0.2):
        super().__init__()
        self.epoch, self.total_epochs, self.begin, self.end = 0, num_epochs, begin, end
        self.ce = torch.nn.CrossEntropyLoss(label_smoothing=0.0)

    def forward(self, x, target):
        loss_ce = self.ce(x, target)
        z_top1 = x.topk(1, dim=-1)[0]
        reg = z_top1 - x.mean(dim=-1, keepdim=True)
        lam = self.begin + (self.end - self.begin) * self.epoch / max(1, self.total_epochs - 1)
        return loss_ce + lam * reg.mean()


def built(k, epoch, epochs, **hparams):
    strategy = MaxSup(**hparams)
    driver = StrategyDriver(strategy)
    driver.setup(num_classes=k)
    driver.set_epoch(epoch, epochs)
    return strategy


@pytest.mark.parametrize("k", [2, 10, 1000])
@pytest.mark.parametrize(("epoch", "epochs"), [(0, 5), (2, 5), (4, 5), (0, 1)])
def test_matches_the_reference_over_the_ramp(batch, check_against, kept, k, epoch, epochs):
    x, y = batch(k, scale=4.0, seed=epoch)
    ref = RefMaxSupLoss(num_epochs=epochs)
    ref.epoch = epoch
    check_against(
        built(k, epoch, epochs), lambda a, b: ref(*kept(a, b)), x, y, rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("k", [10, 1000])
def test_other_lambdas_and_float32(batch, check_against, kept, k):
    x, y = batch(k, scale=6.0, dtype=torch.float32, seed=1)
    ref = RefMaxSupLoss(num_epochs=7, begin=0.3, end=0.05)
    ref.epoch = 3
    strategy = built(k, 3, 7, begin_lambda=0.3, end_lambda=0.05)
    check_against(strategy, lambda a, b: ref(*kept(a, b)), x, y, rtol=1e-5, atol=1e-6)


def test_lambda_reaches_end_lambda_on_the_last_epoch(batch):
    x, y = batch(10)
    lambdas = []
    for epoch in range(4):
        strategy = built(10, epoch, 4)
        strategy(x, y)
        lambdas.append(strategy.log_values()["smoothing/lambda"])
    assert lambdas == pytest.approx([0.1, 0.1 + 0.1 / 3, 0.1 + 0.2 / 3, 0.2])


def test_penalty_figure_and_zero_lambda(batch, kept):
    x, y = batch(10, scale=5.0)
    strategy = built(10, 0, 3, begin_lambda=0.0, end_lambda=0.0)
    xk, yk = kept(x, y)
    torch.testing.assert_close(strategy(x, y), F.cross_entropy(xk, yk))
    lead = (xk.max(1).values - xk.mean(1)).mean()
    torch.testing.assert_close(strategy.log_values()["smoothing/penalty"], lead)


def test_registered_and_needs_the_run_length_only_when_it_ramps():
    assert STRATEGIES["maxsup"] is MaxSup
    assert MaxSup().limits.needs_run_length
    assert not MaxSup(begin_lambda=0.2, end_lambda=0.2).limits.needs_run_length
    with pytest.raises(ValueError, match=r"needs the run's length"):
        StrategyDriver(MaxSup()).set_epoch(0, None)
    with pytest.raises(ValueError, match="begin_lambda"):
        MaxSup(begin_lambda=-0.1)
