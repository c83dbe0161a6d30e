"""SmoothingStrategy.linear_loss / observe_linear against the unfused strategy call.

For every registered strategy that declares it can run through the fused linear path:
``StrategyDriver(strategy).linear_loss(h, W, y, bias=b)`` equals ``strategy(F.linear(h, W, b), y)`` in
value and in the gradients of h, W and b, for every reduction, with ignored rows, sample
indices, a schedule factor, and the applied-epsilon record; ``observe_linear`` leaves the
same state as ``observe`` on the full logits. The others raise a clear error naming them.

Everything runs in float64 with chunks of 5 rows (so batches end mid-chunk), compared at
a float64 tolerance: the two paths sum the same terms in a different order. Learned
per-row priors (online's S, self-distillation's table) are float32 state whose rows sum to
1 only within ~K 2^-24; the two kernels shift the logits by different amounts, which that
rounding turns into differences up to ~eps * max|z| * K 2^-24 (~1e-6 here); and the
unfused confidence signal is a float32 softmax (the linear path's is float64 here), so its
epsilons agree to ~1e-7: both are compared at ``F32_TOL``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import STRATEGIES, SmoothingStrategy
from adaptls.smoothing.driver import StrategyDriver

K, D = 9, 4
COUNTS = [300, 120, 80, 40, 20, 9, 4, 2, 1]
LEAD = (3, 7)  # 21 rows
N_SAMPLES = sum(COUNTS)
SUPPORTED = sorted(n for n, cls in STRATEGIES.items() if cls().limits.linear is None)
UNSUPPORTED = sorted(n for n, cls in STRATEGIES.items() if cls().limits.linear is not None)
TOL = {"atol": 1e-12, "rtol": 1e-10}
F32_TOL = {"atol": 1e-6, "rtol": 1e-6}


def tolerance(name, stateful):
    if name == "confidence" or (stateful and name in ("online", "self_distill")):
        return F32_TOL
    return TOL


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*LEAD, D, generator=g, dtype=torch.float64)
    weight = torch.randn(K, D, generator=g, dtype=torch.float64)
    bias = torch.randn(K, generator=g, dtype=torch.float64)
    targets = torch.randint(0, K, LEAD, generator=g)
    targets[0, :3] = -100
    indices = torch.randperm(N_SAMPLES, generator=g)[: targets.numel()].reshape(LEAD)
    return hidden, weight, bias, targets, indices


def make(name, **overrides) -> SmoothingStrategy:
    strategy = STRATEGIES[name](**overrides)
    driver = StrategyDriver(strategy)
    driver.setup(num_classes=K, class_counts=COUNTS)
    driver.set_epoch(0, max_epochs=4)
    return strategy


def with_state(name, **overrides) -> SmoothingStrategy:
    """A strategy past one epoch of observations, so stateful ones smooth with state."""
    strategy = make(name, **overrides)
    hidden, weight, bias, targets, indices = batch(seed=9)
    strategy.observe(F.linear(hidden, weight, bias) * 3, targets, indices)
    StrategyDriver(strategy).on_epoch_end()
    StrategyDriver(strategy).set_epoch(1, max_epochs=4)
    return strategy


def both_ways(strategy, reduction, chunk_rows, seed=0):
    """(loss, grads) through linear_loss and through the unfused call, and the applied
    epsilon each recorded."""
    out = []
    for fused in (True, False):
        hidden, weight, bias, targets, indices = batch(seed)
        leaves = [t.requires_grad_() for t in (hidden, weight, bias)]
        before = strategy.applied_epsilon_epoch.clone(), strategy.applied_rows_epoch.clone()
        with chunk_rows(5):
            if fused:
                loss = StrategyDriver(strategy).linear_loss(
                    hidden, weight, targets, bias=bias, indices=indices, reduction=reduction
                )
            else:
                logits = F.linear(hidden, weight, bias)
                loss = strategy(logits, targets, reduction, indices=indices)
        g = torch.Generator().manual_seed(3)
        loss.backward(torch.rand(loss.shape, generator=g, dtype=loss.dtype))
        strategy._count_uncounted()  # float epsilons are counted lazily, many batches at once
        record = (
            strategy.applied_epsilon_epoch - before[0],
            strategy.applied_rows_epoch - before[1],
        )
        out.append((loss.detach(), [t.grad for t in leaves], record))
    return out


@pytest.mark.parametrize("name", SUPPORTED)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("stateful", [False, True])
def test_linear_loss_equals_the_unfused_strategy(name, reduction, stateful, chunk_rows):
    strategy = with_state(name) if stateful else make(name)
    (loss, grads, record), (ref, ref_grads, ref_record) = both_ways(strategy, reduction, chunk_rows)
    assert loss.shape == ref.shape
    tol = tolerance(name, stateful)
    torch.testing.assert_close(loss, ref, **tol)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, **tol)
    torch.testing.assert_close(record, ref_record, **tol)
    assert record[1] == (batch()[3] != -100).sum()  # the record counted the batch's rows


@pytest.mark.parametrize("name", SUPPORTED)
def test_the_schedule_factor_applies_through_the_linear_path(name, chunk_rows):
    strategy = with_state(name, schedule={"name": "cosine"})
    StrategyDriver(strategy).set_epoch(2, max_epochs=4)
    assert 0.0 < strategy.schedule_factor < 1.0
    (loss, grads, record), (ref, ref_grads, ref_record) = both_ways(strategy, "mean", chunk_rows)
    torch.testing.assert_close(loss, ref, **tolerance(name, True))
    torch.testing.assert_close(grads[1], ref_grads[1], **tolerance(name, True))
    torch.testing.assert_close(record, ref_record, **tolerance(name, True))


@pytest.mark.parametrize("name", SUPPORTED)
def test_evaluation_records_nothing(name):
    strategy = with_state(name).eval()
    hidden, weight, bias, targets, indices = batch()
    with torch.no_grad():
        loss = StrategyDriver(strategy).linear_loss(
            hidden, weight, targets, bias=bias, indices=indices
        )
        ref = strategy(F.linear(hidden, weight, bias), targets, indices=indices)
    torch.testing.assert_close(loss, ref, **tolerance(name, True))
    strategy._count_uncounted()
    assert strategy.applied_rows_epoch == 0


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_observe_linear_leaves_the_state_observe_leaves(name, chunk_rows):
    fused, unfused = make(name), make(name)
    for seed in range(2):
        hidden, weight, bias, targets, indices = batch(seed)
        with chunk_rows(5):
            StrategyDriver(fused).observe_linear(
                hidden, weight, targets, bias=bias, indices=indices
            )
        StrategyDriver(unfused).observe(F.linear(hidden, weight, bias), targets, indices)
    for state in fused._states:
        torch.testing.assert_close(
            getattr(fused, state), getattr(unfused, state), equal_nan=True, **TOL
        )
    StrategyDriver(fused).on_epoch_end()
    StrategyDriver(unfused).on_epoch_end()
    for state in fused._states:
        torch.testing.assert_close(
            getattr(fused, state), getattr(unfused, state), equal_nan=True, **TOL
        )


def test_observe_linear_never_builds_all_the_logits(monkeypatch, chunk_rows):
    strategy = make("online")
    hidden, weight, bias, targets, _ = batch()
    seen = []
    original = type(strategy).observe

    def spy(self, logits, targets, indices=None):
        seen.append(logits.shape[0])
        original(self, logits, targets, indices)

    monkeypatch.setattr(type(strategy), "observe", spy)
    with chunk_rows(5):
        StrategyDriver(strategy).observe_linear(hidden, weight, targets, bias=bias)
    assert seen == [5, 5, 5, 5, 1]


def test_observe_linear_is_a_no_op_without_observe_or_outside_training(monkeypatch):
    hidden, weight, bias, targets, _ = batch()
    calls = []
    monkeypatch.setattr(F, "linear", lambda *a, **k: calls.append(1))
    StrategyDriver(make("uniform")).observe_linear(hidden, weight, targets, bias=bias)
    StrategyDriver(make("online").eval()).observe_linear(hidden, weight, targets, bias=bias)
    assert calls == []


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_unsupported_strategies_say_so_by_name(name):
    strategy = make(name)
    hidden, weight, bias, targets, _ = batch()
    with pytest.raises(TypeError, match=rf"{type(strategy).__name__}.*fused linear path"):
        StrategyDriver(strategy).linear_loss(hidden, weight, targets, bias=bias)


def test_every_kind_is_covered():
    # the calibration peers need the logits; the smoothing strategies do not
    assert {"none", "uniform", "class_frequency", "feedback", "online", "self_distill"} <= set(
        SUPPORTED
    )
    assert {"focal", "mdca"} <= set(UNSUPPORTED)


def test_bad_inputs_are_named():
    strategy = make("uniform")
    hidden, weight, bias, targets, _ = batch()
    with pytest.raises(ValueError, match=r"weight has 8 rows.*num_classes=9"):
        StrategyDriver(strategy).linear_loss(hidden, weight[:8], targets)
    bad = targets.clone()
    bad[1, 1] = K
    with pytest.raises(ValueError, match=f"target {K} is out of range"):
        StrategyDriver(strategy).linear_loss(hidden, weight, bad, bias=bias)
    with pytest.raises(ValueError, match="reduction"):
        StrategyDriver(strategy).linear_loss(hidden, weight, targets, reduction="avg")
