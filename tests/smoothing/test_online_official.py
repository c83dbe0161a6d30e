"""OnlineSmoothing against a port of the official OLS update logic, step by step.

The reference below follows zhangchbin/OnlineLabelSmoothing,
cifar/scripts/train_cifar_all_methods.py (method ``ols``): ``loss_lams`` (S) starts at
zeros; at every step ``update_loss_lams`` adds the softmax of each sample whose top-1
prediction (argsort, descending) equals its label to row y of the epoch accumulator and
counts it; the loss is ``0.5 * CE + 0.5 * sum(-S[y] * log_softmax) / batch``; at the end
of the epoch a class with count < 0.5 gets 1/K, the others the accumulated mean. Ported
with vectorised indexing instead of the per-sample loops, and alpha in place of the
hard-coded 0.5.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import OnlineSmoothing
from adaptls.smoothing.driver import StrategyDriver

K, D, N, BATCH, EPOCHS = 5, 8, 60, 12, 4


class OfficialOLS:
    def __init__(self, num_classes: int, alpha: float) -> None:
        self.k, self.alpha = num_classes, alpha
        self.loss_lams = torch.zeros(num_classes, num_classes)

    def start_epoch(self) -> None:
        self.cur_epoch_lams = torch.zeros(self.k, self.k)
        self.cur_epoch_cnt = torch.zeros(self.k)

    def update_loss_lams(self, output: torch.Tensor, target: torch.Tensor) -> None:
        with torch.no_grad():
            probs = torch.softmax(output, dim=1)
            top1 = torch.argsort(probs, dim=1, descending=True)[:, 0]
            for k in range(output.shape[0]):  # the official per-sample loop
                if target[k] != top1[k]:
                    continue
                self.cur_epoch_lams[target[k]] += probs[k]
                self.cur_epoch_cnt[target[k]] += 1

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target_prob = self.loss_lams[target]
        soft = torch.sum(-F.log_softmax(output, dim=1) * target_prob) / output.shape[0]
        return self.alpha * F.cross_entropy(output, target) + (1 - self.alpha) * soft

    def end_epoch(self) -> None:
        for cls in range(self.k):
            if self.cur_epoch_cnt[cls].max() < 0.5:
                self.loss_lams[cls] = 1.0 / self.k
            else:
                self.loss_lams[cls] = self.cur_epoch_lams[cls] / self.cur_epoch_cnt[cls]


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(K, D, generator=g) * 1.5
    y = torch.randint(0, K, (N,), generator=g)
    x = centers[y] + torch.randn(N, D, generator=g)
    return x, y


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_per_batch_losses_and_s_match_the_official_logic_over_epochs(alpha: float) -> None:
    x, y = data()
    torch.manual_seed(1)
    ours_net = torch.nn.Linear(D, K)
    ref_net = torch.nn.Linear(D, K)
    ref_net.load_state_dict(ours_net.state_dict())
    ours_opt = torch.optim.SGD(ours_net.parameters(), lr=0.5)
    ref_opt = torch.optim.SGD(ref_net.parameters(), lr=0.5)
    strategy = OnlineSmoothing(alpha=alpha)
    strategy.setup(num_classes=K)
    reference = OfficialOLS(K, alpha)
    order = torch.Generator().manual_seed(2)
    ours_losses, ref_losses = [], []
    for _ in range(EPOCHS):
        reference.start_epoch()
        for rows in torch.randperm(N, generator=order).split(BATCH):
            ref_out = ref_net(x[rows])
            reference.update_loss_lams(ref_out, y[rows])  # the official order: before the loss
            ref_loss = reference.loss(ref_out, y[rows])
            ref_opt.zero_grad()
            ref_loss.backward()
            ref_opt.step()

            out = ours_net(x[rows])
            loss = strategy(out, y[rows])
            strategy.observe(out.detach(), y[rows])
            ours_opt.zero_grad()
            loss.backward()
            ours_opt.step()
            ours_losses.append(loss.item())
            ref_losses.append(ref_loss.item())
        reference.end_epoch()
        StrategyDriver(strategy).on_epoch_end()
        torch.testing.assert_close(strategy.S, reference.loss_lams, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        torch.tensor(ours_losses), torch.tensor(ref_losses), rtol=1e-5, atol=1e-6
    )
    # the comparison exercised learned rows, not only the uniform fallback
    assert not torch.allclose(reference.loss_lams, torch.full((K, K), 1.0 / K))
