"""OnlineSmoothing (Zhang et al.): S from the softmax of correctly classified samples."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import OnlineSmoothing, soft_targets
from adaptls.smoothing.driver import StrategyDriver

K = 4


def make(alpha=0.5) -> OnlineSmoothing:
    s = OnlineSmoothing(alpha=alpha)
    s.setup(num_classes=K)
    return s


# Training batch 1: rows 0 and 1 are correct class-0 samples (a repeated label in one
# batch), row 2 is a class-1 sample predicted as 3 (wrong), row 3 is ignored (its arg-max
# would match class 2 if it counted), row 4 is a correct class-1 sample.
BATCH_1 = (
    torch.tensor(
        [
            [3.0, 1.0, 0.0, -1.0],
            [2.0, 0.0, 1.5, 0.5],
            [0.0, 1.0, 0.0, 2.0],
            [0.0, 0.0, 5.0, 0.0],
            [-1.0, 4.0, 0.0, 1.0],
        ]
    ),
    torch.tensor([0, 0, 1, -100, 1]),
)
# Training batch 2: one more correct class-0 sample, a wrong class-2 sample.
BATCH_2 = (torch.tensor([[1.0, 0.5, 0.5, 0.0], [0.0, 0.0, 1.0, 2.0]]), torch.tensor([0, 2]))
# A validation batch, full of correct class-2 and class-3 samples: must not count.
VALIDATION = (torch.tensor([[0.0, 0.0, 9.0, 0.0], [0.0, 0.0, 0.0, 9.0]]), torch.tensor([2, 3]))


def expected_s() -> torch.Tensor:
    p1, p2 = torch.softmax(BATCH_1[0], -1), torch.softmax(BATCH_2[0], -1)
    s = torch.full((K, K), 1.0 / K)
    s[0] = (p1[0] + p1[1] + p2[0]) / 3
    s[1] = p1[4]
    return s  # classes 2 and 3: no correct training sample, uniform


def run_epoch(s: OnlineSmoothing) -> None:
    s.train()
    s.observe(*BATCH_1)
    s.eval()
    s.observe(*VALIDATION)
    s.train()
    s.observe(*BATCH_2)
    StrategyDriver(s).on_epoch_end()


def test_starts_at_zeros_so_the_first_epoch_trains_alpha_ce():
    # The official script's S starts at zeros: its soft term vanishes in epoch 0.
    s = make(alpha=0.3)
    torch.testing.assert_close(s.S, torch.zeros(K, K))
    logits, targets = torch.randn(6, K), torch.tensor([0, 1, 2, 3, -100, 1])
    x = logits.clone().requires_grad_()
    r = logits.clone().requires_grad_()
    loss, expected = s(x, targets), 0.3 * F.cross_entropy(r, targets)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(x.grad, r.grad)
    assert s.log_values()["smoothing/epsilon"] == 0.0


def test_uniform_init_option_starts_with_uniform_smoothing():
    s = OnlineSmoothing(alpha=0.3, init="uniform")
    s.setup(num_classes=K)
    torch.testing.assert_close(s.S, torch.full((K, K), 1.0 / K))
    logits, targets = torch.randn(6, K), torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(
        s(logits, targets), F.cross_entropy(logits, targets, label_smoothing=0.7)
    )
    with pytest.raises(ValueError, match="init must be one of"):
        OnlineSmoothing(init="ones")


def test_an_epoch_by_hand():
    s = make()
    run_epoch(s)
    torch.testing.assert_close(s.S, expected_s())
    torch.testing.assert_close(s.S.sum(-1), torch.ones(K))


def test_accumulators_restart_each_epoch():
    s = make()
    run_epoch(s)
    s.observe(*BATCH_2)  # epoch 2: only batch 2's class-0 sample
    StrategyDriver(s).on_epoch_end()
    expected = torch.full((K, K), 1.0 / K)
    expected[0] = torch.softmax(BATCH_2[0][0], -1)
    torch.testing.assert_close(s.S, expected)


def test_observes_sequence_shaped_batches():
    s = make()
    logits, targets = BATCH_1
    s.observe(logits.reshape(1, 5, K), targets.reshape(1, 5))
    s.observe(*BATCH_2)
    StrategyDriver(s).on_epoch_end()
    torch.testing.assert_close(s.S, expected_s())


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_loss_is_alpha_ce_plus_rest_ce_against_s_rows(alpha):
    s = make(alpha)
    run_epoch(s)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, K, generator=g)
    targets = torch.randint(0, K, (8,), generator=g)
    x = logits.clone().requires_grad_()
    loss = s(x, targets)
    r = logits.clone().requires_grad_()
    expected = alpha * F.cross_entropy(r, targets) + (1 - alpha) * F.cross_entropy(r, s.S[targets])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(x.grad, r.grad)
    with torch.no_grad():
        t = soft_targets(s, logits, targets)
    torch.testing.assert_close(t, alpha * F.one_hot(targets, K) + (1 - alpha) * s.S[targets])


def test_ignored_rows_do_not_count_in_the_loss():
    s = make()
    run_epoch(s)
    logits, targets = torch.randn(5, K), torch.tensor([0, 1, -100, 3, -100])
    kept = targets != -100
    torch.testing.assert_close(s(logits, targets), s(logits[kept], targets[kept]))


def test_state_dict_round_trip_restores_s_and_the_accumulators():
    s = make()
    run_epoch(s)
    s.observe(*BATCH_1)  # mid-epoch: accumulators hold batch 1
    buffer = io.BytesIO()
    torch.save(s.state_dict(), buffer)
    fresh = make()
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(fresh.S, s.S)
    StrategyDriver(fresh).on_epoch_end()
    expected = torch.full((K, K), 1.0 / K)
    p1 = torch.softmax(BATCH_1[0], -1)
    expected[0], expected[1] = (p1[0] + p1[1]) / 2, p1[4]
    torch.testing.assert_close(fresh.S, expected)
    other = OnlineSmoothing()
    other.setup(num_classes=K + 1)
    buffer.seek(0)
    with pytest.raises(ValueError, match="S has shape"):
        other.load_state_dict(torch.load(buffer))


def test_state_is_declared_not_buffers():
    # DDP broadcasts registered buffers from rank 0 before each forward: the per-rank
    # statistics must not be buffers. S is declared state too (identical on every rank).
    s = make()
    assert list(s.named_buffers()) == []
    assert {"S", "learned", "sum", "count"} <= set(s.get_extra_state())


def test_log_values_and_summary():
    s = make(alpha=0.7)
    run_epoch(s)
    values = s.log_values()
    assert values["smoothing/epsilon"] == pytest.approx(0.3)
    assert values["smoothing/S_diag_mean"] == pytest.approx(s.S.diagonal().mean().item())
    torch.testing.assert_close(torch.tensor(s.summary()["S"]), s.S)
