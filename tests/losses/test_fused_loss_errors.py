"""Bad input to the fused loss: a clear error naming the bad value and what is allowed.

Bad index values (targets, prior_index) are named on CPU with the default settings (the
error is explained where the index is used) and, with ``checks.DEBUG_CHECKS`` on,
before the loss runs (the last tests).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from adaptls.losses import checks, dense_soft_targets, soft_target, soft_target_cross_entropy

K = 4
LOGITS = torch.zeros(3, K)
TARGETS = torch.tensor([0, 3, -100])
TABLE = torch.full((2, K), 1.0 / K)


def call(**overrides):
    kwargs = {"logits": LOGITS, "targets": TARGETS, "epsilon": 0.1, **overrides}
    return soft_target_cross_entropy(**kwargs)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"targets": torch.tensor([0, 4, 1])}, ValueError, r"target 4 .* allowed are 0\.\.3"),
        ({"targets": torch.tensor([-1, 0, 1])}, ValueError, r"target -1 .*ignore_index=-100"),
        ({"logits": torch.zeros(3, K, dtype=torch.long)}, TypeError, r"floating-point.*int64"),
        ({"targets": torch.zeros(3)}, TypeError, r"integer tensor.*float32"),
        ({"logits": torch.zeros(2, K)}, ValueError, r"\(2, 4\).*\(3,\)"),
        ({"logits": torch.zeros(3, 0)}, ValueError, r"K >= 1"),
        ({"reduction": "avg"}, ValueError, r"'mean', 'sum', 'none'.*'avg'"),
        ({"epsilon": 1.5}, ValueError, r"\[0, 1\], got 1\.5"),
        ({"epsilon": -0.1}, ValueError, r"\[0, 1\], got -0\.1"),
        ({"epsilon": "0.1"}, TypeError, r"float or a tensor, got '0\.1'"),
        ({"epsilon": torch.zeros(2)}, ValueError, r"shaped like targets \(3,\), got \(2,\)"),
        ({"epsilon": torch.zeros(3, dtype=torch.long)}, TypeError, r"floating-point.*int64"),
        ({"prior": torch.ones(K + 1)}, ValueError, r"\(4,\) or \(3, 4\).*got \(5,\)"),
        ({"prior": torch.ones(K, dtype=torch.long)}, TypeError, r"prior.*floating-point"),
        ({"prior_index": torch.zeros(3, dtype=torch.long)}, ValueError, r"without a prior"),
        (
            {"prior": TABLE, "prior_index": torch.zeros(2, dtype=torch.long)},
            ValueError,
            r"shaped like targets \(3,\).*\(2,\)",
        ),
        (
            {"prior": TABLE, "prior_index": torch.zeros(3)},
            ValueError,
            r"integer tensor.*float32",
        ),
        (
            {"prior": TABLE, "prior_index": torch.tensor([0, 2, 1])},
            ValueError,
            r"prior_index 2 is out of range: allowed are 0\.\.1",
        ),
        (
            {"prior": TABLE[0], "prior_index": torch.zeros(3, dtype=torch.long)},
            ValueError,
            r"\(M, 4\) table, got \(4,\)",
        ),
    ],
)
def test_bad_input_is_named_with_what_is_allowed(overrides, error, message):
    with pytest.raises(error, match=message):
        call(**overrides)


def test_ignore_index_is_configurable():
    targets = torch.tensor([0, 3, 7])
    with pytest.raises(ValueError, match="target 7"):
        call(targets=targets)
    assert call(targets=targets, ignore_index=7).isfinite()


def test_prior_shaped_like_the_logits_is_accepted():
    logits, targets = torch.randn(2, 3, K), torch.randint(0, K, (2, 3))
    prior = torch.softmax(torch.randn(2, 3, K), -1)
    flat = soft_target_cross_entropy(logits, targets, 0.3, prior.reshape(6, K))
    assert soft_target_cross_entropy(logits, targets, 0.3, prior) == flat
    t = dense_soft_targets(targets, K, 0.3, prior)
    torch.testing.assert_close(t.sum(-1), torch.ones(6))


# Index values (targets, prior_index) are not read up front by default: that is a host
# sync per call. On CPU a bad one fails where it is used and is then explained (the tests
# above); checks.DEBUG_CHECKS checks them before the loss runs, on every device.
BAD_INDICES = [
    ({"targets": torch.tensor([0, 4, 1])}, r"target 4 .* allowed are 0\.\.3"),
    ({"targets": torch.tensor([-1, 0, 1])}, r"target -1 .*ignore_index=-100"),
    (
        {"prior": TABLE, "prior_index": torch.tensor([0, 2, 1])},
        r"prior_index 2 is out of range: allowed are 0\.\.1",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INDICES)
def test_debug_checks_name_bad_indices_before_the_loss_runs(overrides, message, monkeypatch):
    monkeypatch.setattr(checks, "DEBUG_CHECKS", True)

    def not_reached(*args, **kwargs):
        raise AssertionError("the loss ran before the indices were checked")

    monkeypatch.setattr(soft_target, "fused_soft_target_cross_entropy", not_reached)
    with pytest.raises(ValueError, match=message):
        call(**overrides)


def test_debug_checks_follow_the_environment_variable():
    code = "from adaptls.losses import checks; print(checks.DEBUG_CHECKS)"
    for value, expected in (("1", "True"), ("", "False")):
        env = dict(os.environ, ADAPTLS_DEBUG_CHECKS=value)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == expected
