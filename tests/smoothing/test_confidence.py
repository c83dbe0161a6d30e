"""ConfidenceSmoothing: eps_i = e_min + (e_max - e_min) * c_i^p from the detached softmax."""

from __future__ import annotations

import math

import pytest
import torch

from adaptls.smoothing import ConfidenceSmoothing, soft_target_cross_entropy, soft_targets

K = 4
# softmax rows written out: a confident row, an unsure one, a uniform one
PROBS = [[0.7, 0.1, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]]
LOGITS = torch.tensor(PROBS).log()
TARGETS = torch.tensor([0, 2, 3])


def entropy_confidence(p):
    return 1 - (-sum(q * math.log(q) for q in p)) / math.log(len(p))


CONFIDENCE = {
    "max_prob": [max(p) for p in PROBS],
    "target_prob": [p[y] for p, y in zip(PROBS, TARGETS.tolist(), strict=True)],
    "entropy": [entropy_confidence(p) for p in PROBS],
}


def make(**hparams) -> ConfidenceSmoothing:
    s = ConfidenceSmoothing(**hparams)
    s.setup(num_classes=K)
    return s


@pytest.mark.parametrize("signal", CONFIDENCE)
@pytest.mark.parametrize(("e_min", "e_max", "power"), [(0.0, 0.2, 1.0), (0.05, 0.5, 2.0)])
def test_epsilon_of_each_signal_by_hand(signal, e_min, e_max, power):
    s = make(epsilon_min=e_min, epsilon_max=e_max, signal=signal, power=power)
    eps = s.smoothing(LOGITS, TARGETS).epsilon
    expected = [e_min + (e_max - e_min) * c**power for c in CONFIDENCE[signal]]
    torch.testing.assert_close(eps, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    t = soft_targets(s, LOGITS, TARGETS)
    for row, (e, y) in enumerate(zip(expected, TARGETS.tolist(), strict=True)):
        assert t[row, y].item() == pytest.approx(1 - e + e / K, abs=1e-6)


@pytest.mark.parametrize("signal", CONFIDENCE)
def test_more_confident_means_more_smoothing(signal):
    s = make(signal=signal, epsilon_max=0.3)
    base = torch.tensor([[2.0, 0.5, 0.0, -1.0]])
    temperatures = torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0])
    logits = base * temperatures[:, None]  # sharper and sharper, same arg-max
    eps = s.smoothing(logits, torch.zeros(5, dtype=torch.long)).epsilon
    assert (eps[1:] > eps[:-1]).all()
    assert eps[0].item() == pytest.approx(0.3 * CONFIDENCE[signal][2])  # the uniform row


@pytest.mark.parametrize("signal", CONFIDENCE)
def test_no_gradient_flows_through_the_confidence(signal):
    s = make(signal=signal, epsilon_max=0.5)
    x = torch.randn(6, K).mul(2).requires_grad_()
    targets = torch.randint(0, K, (6,))
    s(x, targets).backward()
    eps = s.smoothing(x, targets).epsilon
    assert not eps.requires_grad
    frozen = x.detach().clone().requires_grad_()
    soft_target_cross_entropy(frozen, targets, eps).backward()
    torch.testing.assert_close(x.grad, frozen.grad, rtol=0, atol=0)


def test_log_values_report_the_last_batch_epsilon():
    s = make(signal="max_prob", epsilon_max=0.2)
    assert s.log_values() == {}
    targets = torch.tensor([0, 2, -100])  # the ignored row does not count
    s(LOGITS, targets)
    eps = [0.2 * c for c in CONFIDENCE["max_prob"][:2]]
    values = s.log_values()
    assert values == pytest.approx(
        {
            "smoothing/epsilon_mean": sum(eps) / 2,
            "smoothing/epsilon_min": min(eps),
            "smoothing/epsilon_max": max(eps),
        }
    )
