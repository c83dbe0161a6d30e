"""SelfDistillSmoothing against a port of the official PS-KD update logic, step by step.

The reference follows lgcnsai/PS-KD-Pytorch, main.py and loss/pskd_loss.py:
``all_predictions`` is an (N_train, K) float32 table of zeros; each epoch uses
``alpha_t = alpha_T * ((epoch + 1) / end_epoch)``; in epoch 0 the batch's rows of the table
are set to the one-hot labels before the targets are formed; the soft target is
``(1 - alpha_t) * onehot + alpha_t * all_predictions[idx]``; the loss is
``(-targets * log_softmax(output)).mean(0).sum()``; after the step the batch's rows are
overwritten with the softmax of the outputs (used by the next epoch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adaptls.smoothing import SelfDistillSmoothing
from adaptls.smoothing.driver import StrategyDriver

K, D, N, BATCH, EPOCHS, ALPHA_T = 4, 6, 48, 8, 5, 0.8


class OfficialPSKD:
    def __init__(self, n: int, k: int, alpha_T: float, end_epoch: int) -> None:
        self.all_predictions = torch.zeros(n, k, dtype=torch.float32)
        self.k, self.alpha_T, self.end_epoch = k, alpha_T, end_epoch

    def alpha_t(self, epoch: int) -> float:
        return max(0.0, self.alpha_T * ((epoch + 1) / self.end_epoch))

    def loss(self, output, targets, idx, epoch):
        one_hot = torch.eye(self.k)[targets]
        if epoch == 0:
            self.all_predictions[idx] = one_hot
        a = self.alpha_t(epoch)
        soft_targets = (1 - a) * one_hot + a * self.all_predictions[idx]
        loss = (-soft_targets * F.log_softmax(output, dim=1)).mean(0).sum()
        self.all_predictions[idx] = F.softmax(output, dim=1).detach()
        return loss


def test_per_batch_losses_and_table_match_the_official_logic_over_epochs() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(K, D, generator=g)
    y = torch.randint(0, K, (N,), generator=g)
    x = centers[y] + torch.randn(N, D, generator=g)
    counts = torch.bincount(y, minlength=K)
    torch.manual_seed(3)
    ours_net, ref_net = torch.nn.Linear(D, K), torch.nn.Linear(D, K)
    ref_net.load_state_dict(ours_net.state_dict())
    ours_opt = torch.optim.SGD(ours_net.parameters(), lr=0.3)
    ref_opt = torch.optim.SGD(ref_net.parameters(), lr=0.3)
    strategy = SelfDistillSmoothing(alpha_T=ALPHA_T)
    strategy.setup(num_classes=K, class_counts=counts)
    reference = OfficialPSKD(N, K, ALPHA_T, EPOCHS)
    order = torch.Generator().manual_seed(4)
    ours_losses, ref_losses = [], []
    for epoch in range(EPOCHS):
        StrategyDriver(strategy).set_epoch(epoch, EPOCHS)
        assert strategy.alpha == reference.alpha_t(epoch)
        for idx in torch.randperm(N, generator=order).split(BATCH):
            ref_loss = reference.loss(ref_net(x[idx]), y[idx], idx, epoch)
            ref_opt.zero_grad()
            ref_loss.backward()
            ref_opt.step()

            out = ours_net(x[idx])
            loss = strategy(out, y[idx], indices=idx)
            strategy.observe(out.detach(), y[idx], idx)
            ours_opt.zero_grad()
            loss.backward()
            ours_opt.step()
            ours_losses.append(loss.item())
            ref_losses.append(ref_loss.item())
        StrategyDriver(strategy).on_epoch_end()
        torch.testing.assert_close(strategy.table, reference.all_predictions, rtol=1e-5, atol=1e-6)
    assert strategy.alpha == ALPHA_T  # the last epoch uses exactly alpha_T
    torch.testing.assert_close(
        torch.tensor(ours_losses), torch.tensor(ref_losses), rtol=1e-5, atol=1e-6
    )
