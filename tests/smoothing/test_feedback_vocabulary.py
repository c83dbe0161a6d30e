"""FeedbackSmoothing at vocabulary scale (V = 32000): its per-class state, the validation
figures it reads (from the real metric suite on token predictions), and its loss through
the fused linear path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptls.metrics.suite import CalibrationSuite
from adaptls.smoothing import FeedbackSmoothing
from adaptls.smoothing.driver import StrategyDriver
from adaptls.smoothing.validation_pass import ValidationPass

V, D, N = 32000, 8, 64


def tokens(seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, D, generator=g, dtype=torch.float64)
    weight = torch.randn(V, D, generator=g, dtype=torch.float64)
    targets = F.linear(hidden, weight).argmax(1)  # confident and right...
    targets[::2] = torch.randint(0, V, (N // 2,), generator=g)  # ...or wrong
    targets[::7] = -100
    return hidden, weight, targets


def validation_figures(hidden, weight, targets):
    suite = CalibrationSuite(num_classes=V)
    suite.update(F.linear(hidden, weight).float(), targets)
    return ValidationPass.from_suite(suite.compute(), suite.per_class())


@pytest.mark.parametrize("per_class", [False, True])
def test_feedback_at_vocabulary_scale(per_class):
    s = FeedbackSmoothing(epsilon_init=0.1, gain=0.3, per_class=per_class)
    s.setup(num_classes=V)
    state = sum(t.numel() * t.element_size() for t in s.get_extra_state().values())
    assert state <= 2 * V * 4 + 64  # epsilon and gap per class: 256 KB, O(V)
    hidden, weight, targets = tokens()
    metrics = validation_figures(hidden, weight, targets)
    s.on_validation_end(metrics)
    if per_class:
        seen = torch.zeros(V, dtype=torch.bool)
        seen[targets[targets != -100]] = True
        gap = metrics.classes.confidence - metrics.classes.acc
        want = (0.1 + 0.3 * gap[seen].double()).clamp(0.0, 0.5)
        torch.testing.assert_close(s.epsilon[seen].double(), want, atol=1e-7, rtol=0)
        assert (s.epsilon[~seen] == 0.1).all()  # tokens absent from validation keep theirs
        summary = s.summary()
        assert "epsilon_per_class" not in summary
        assert summary["epsilon_per_class_quantiles"]["p50"] == pytest.approx(0.1)
    else:
        gap = metrics.confidence - metrics.acc
        torch.testing.assert_close(s.epsilon[0].double(), (0.1 + 0.3 * gap.double()).clamp(0, 0.5))
    # the loss through the linear path equals the loss of the logits
    h2, w2, y2 = tokens(seed=1)
    w = w2.clone().requires_grad_()
    loss = StrategyDriver(s).linear_loss(h2, w, y2)
    (grad,) = torch.autograd.grad(loss, w)
    ref_w = w2.clone().requires_grad_()
    ref = s(F.linear(h2, ref_w), y2)
    ref.backward()
    torch.testing.assert_close(loss, ref, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(grad, ref_w.grad, atol=1e-12, rtol=1e-10)
