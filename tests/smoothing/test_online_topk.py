"""OnlineSmoothing(topk=k): soft labels as k largest entries plus a uniform rest, O(K k).

- k = K is the dense OnlineSmoothing, step by step over epochs (S, loss values and
  gradients, through the logits and through the fused linear path);
- the top-k reconstruction: each row keeps the dense row's k largest entries and spreads
  the rest uniformly (when the running sums hold every class, slots = 2k >= K);
- with fewer slots than classes, rows are still distributions and a single merge keeps
  each class's largest sums exactly;
- the loss never expands the labels: it equals the cross-entropy against the dense
  reconstruction, and at K = 32000 nothing K x K is allocated.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptls.smoothing import OnlineSmoothing, soft_target_cross_entropy, soft_targets
from adaptls.smoothing._topk_labels import merge_slots
from adaptls.smoothing.driver import StrategyDriver

# S is float32 state whose rows sum to 1 within ~K 2^-24; the dense and top-k losses use
# it through different (equivalent) formulas, so they agree to ~max|z| K 2^-24.
TOL = {"atol": 2e-6, "rtol": 2e-6}


def make(k_classes, topk=None, **kw):
    s = OnlineSmoothing(alpha=0.4, topk=topk, **kw)
    s.setup(num_classes=k_classes)
    return s


def batch(k_classes, n=40, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g, dtype=torch.float64)
    weight = torch.randn(k_classes, d, generator=g, dtype=torch.float64) * 2
    bias = torch.randn(k_classes, generator=g, dtype=torch.float64)
    logits = F.linear(hidden, weight, bias)
    # mostly correct predictions, so that most classes learn a label
    targets = torch.where(torch.rand(n, generator=g) < 0.7, logits.argmax(1), 0)
    targets[::9] = -100
    return hidden, weight, bias, targets


def losses(strategy, hidden, weight, bias, targets, linear):
    leaves = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
    if linear:
        loss = StrategyDriver(strategy).linear_loss(leaves[0], leaves[1], targets, bias=leaves[2])
    else:
        loss = strategy(F.linear(*leaves), targets)
    loss.backward()
    return loss.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("linear", [False, True])
def test_k_equal_to_the_classes_is_the_dense_strategy_epoch_by_epoch(linear):
    k_classes = 7
    dense, top = make(k_classes), make(k_classes, topk=k_classes)
    for epoch in range(3):
        for step in range(3):
            data = batch(k_classes, seed=10 * epoch + step)
            want, want_grads = losses(dense, *data, linear=linear)
            got, got_grads = losses(top, *data, linear=linear)
            torch.testing.assert_close(got, want, **TOL)
            for a, b in zip(got_grads, want_grads, strict=True):
                torch.testing.assert_close(a, b, **TOL)
            logits = F.linear(*data[:3])
            dense.observe(logits, data[3])
            top.observe(logits, data[3])
        StrategyDriver(dense).on_epoch_end()
        StrategyDriver(top).on_epoch_end()
        torch.testing.assert_close(top.labels.dense(), dense.S, atol=1e-7, rtol=0)
        torch.testing.assert_close(top.log_values(), dense.log_values())


def test_each_row_keeps_its_k_largest_entries_and_a_uniform_rest():
    k_classes, k = 8, 4  # slots = 2k = K: the running sums hold every class exactly
    dense, top = make(k_classes), make(k_classes, topk=k)
    for seed in range(4):
        hidden, weight, bias, targets = batch(k_classes, seed=seed)
        targets[targets == 7] = -100  # class 7 never counts: it keeps the uniform label
        logits = F.linear(hidden, weight, bias)
        dense.observe(logits, targets)
        top.observe(logits, targets)
    seen = dense.count > 0  # classes with a correct sample (before the epoch resets it)
    StrategyDriver(dense).on_epoch_end()
    StrategyDriver(top).on_epoch_end()
    exact, approx = dense.S.double(), top.labels.dense().double()
    assert seen.sum() >= 3 and not seen.all()  # both kinds of class are covered
    for c in range(k_classes):
        if not seen[c]:
            torch.testing.assert_close(approx[c], torch.full((k_classes,), 1 / k_classes).double())
            continue
        kept = exact[c].topk(k).indices
        rest = torch.ones(k_classes, dtype=torch.bool)
        rest[kept] = False
        torch.testing.assert_close(approx[c, kept], exact[c, kept], atol=1e-7, rtol=0)
        share = (1 - exact[c, kept].sum()) / (k_classes - k)
        torch.testing.assert_close(approx[c, rest], share.expand(k_classes - k), atol=1e-7, rtol=0)
    torch.testing.assert_close(approx.sum(1), torch.ones(k_classes, dtype=torch.float64))


def test_with_fewer_slots_than_classes_rows_stay_distributions():
    k_classes, k = 12, 2  # 4 slots for 12 classes: mass falls out into the uniform rest
    dense, top = make(k_classes), make(k_classes, topk=k)
    for seed in range(5):
        hidden, weight, bias, targets = batch(k_classes, n=60, seed=seed)
        logits = F.linear(hidden, weight, bias) * 0.3  # flat: many entries compete
        dense.observe(logits, targets)
        top.observe(logits, targets)
    StrategyDriver(dense).on_epoch_end()
    StrategyDriver(top).on_epoch_end()
    approx = top.labels.dense().double()
    assert (approx >= 0).all()
    torch.testing.assert_close(approx.sum(1), torch.ones(k_classes, dtype=torch.float64))
    # a kept entry holds at most the dense mean (dropped contributions join the rest)
    kept = top.labels.delta != 0
    got = approx.gather(1, top.labels.index)[kept]
    want = dense.S.double().gather(1, top.labels.index)[kept]
    assert (got <= want + 1e-7).all()


@settings(max_examples=30, deadline=None)
@given(
    k_classes=st.integers(2, 9),
    slots=st.integers(1, 9),
    n=st.integers(0, 40),
    seed=st.integers(0, 1000),
)
def test_one_merge_from_empty_keeps_each_class_largest_sums(k_classes, slots, n, seed):
    slots = min(slots, k_classes)
    g = torch.Generator().manual_seed(seed)
    classes = torch.randint(0, k_classes + 1, (n,), generator=g)  # class K: dropped
    index = torch.randint(0, k_classes, (n,), generator=g)
    value = torch.rand(n, generator=g, dtype=torch.float64) + 0.01
    empty = torch.full((k_classes, slots), k_classes), torch.zeros(k_classes, slots).double()
    slot_index, slot_sum = merge_slots(*empty, classes, index, value)
    dense = torch.zeros(k_classes + 1, k_classes + 1, dtype=torch.float64)
    dense.index_put_((classes, index), value, accumulate=True)
    dense = dense[:k_classes, :k_classes]
    for c in range(k_classes):
        nonzero = int((dense[c] > 0).sum())
        want = dense[c].sort(descending=True).values[: min(slots, nonzero)]
        got = slot_sum[c][slot_index[c] < k_classes].sort(descending=True).values
        torch.testing.assert_close(got, want)
        used = slot_index[c][slot_index[c] < k_classes]
        torch.testing.assert_close(slot_sum[c][slot_index[c] < k_classes], dense[c, used])


@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_loss_is_cross_entropy_against_the_reconstructed_labels(linear, reduction):
    k_classes = 12
    top = make(k_classes, topk=3, schedule={"name": "cosine"})
    StrategyDriver(top).set_epoch(0, max_epochs=4)
    for seed in range(3):
        hidden, weight, bias, targets = batch(k_classes, seed=seed)
        top.observe(F.linear(hidden, weight, bias), targets)
    StrategyDriver(top).on_epoch_end()
    StrategyDriver(top).set_epoch(2, max_epochs=4)
    hidden, weight, bias, targets = batch(k_classes, seed=7)
    leaves = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
    if linear:
        got = StrategyDriver(top).linear_loss(
            leaves[0], leaves[1], targets, bias=leaves[2], reduction=reduction
        )
    else:
        got = top(F.linear(*leaves), targets, reduction)
    ref_leaves = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
    eps = 0.6 * top.schedule_factor
    rows = top.labels.dense(targets.clamp(min=0)).double()
    want = soft_target_cross_entropy(F.linear(*ref_leaves), targets, eps, rows, reduction=reduction)
    torch.testing.assert_close(got, want, **TOL)
    got.sum().backward()
    want.sum().backward()
    for a, b in zip(leaves, ref_leaves, strict=True):
        torch.testing.assert_close(a.grad, b.grad, **TOL)
    torch.testing.assert_close(
        soft_targets(top, F.linear(hidden, weight, bias), targets)[targets != -100],
        (1 - eps) * F.one_hot(targets.clamp(min=0), k_classes)[targets != -100]
        + eps * rows[targets != -100],
    )


@pytest.mark.slow  # ~5 s: softmax rows and merges at V = 32000
def test_vocabulary_scale_never_builds_k_by_k(allocations):
    v, k, n, d = 32000, 8, 96, 16
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, d, generator=g)
    weight = torch.randn(v, d, generator=g)
    targets = F.linear(hidden, weight).argmax(1)  # correct predictions: labels are learned
    targets[::2] = torch.randint(0, v, (n // 2,), generator=g)
    strategy = make(v, topk=k)
    w = weight.clone().requires_grad_()
    with allocations() as mode:
        StrategyDriver(strategy).observe_linear(hidden, weight, targets)
        StrategyDriver(strategy).on_epoch_end()
        StrategyDriver(strategy).linear_loss(hidden, w, targets).backward()
    assert mode.largest <= n * v  # at most one batch of logits (observe), never V x V
    assert (strategy.S_delta != 0).any()  # some classes learned a label
    state = sum(t.numel() * t.element_size() for t in strategy.get_extra_state().values())
    assert state < 10 * v * k * 8  # O(V k): ~6 MB here, against 4 GB for a dense S


def test_checkpoint_mid_epoch_holds_the_pending_rows():
    k_classes = 9
    s = make(k_classes, topk=2)
    hidden, weight, bias, targets = batch(k_classes, n=6)  # 24 entries < 36 slots
    s.observe(F.linear(hidden, weight, bias), targets)
    assert s._pending  # not merged yet
    buffer = io.BytesIO()
    torch.save(s.state_dict(), buffer)
    buffer.seek(0)
    fresh = make(k_classes, topk=2)
    fresh.load_state_dict(torch.load(buffer))
    StrategyDriver(s).on_epoch_end()
    StrategyDriver(fresh).on_epoch_end()
    for a, b in zip(fresh.labels, s.labels, strict=True):
        torch.testing.assert_close(a, b)


def test_bad_topk_is_named():
    with pytest.raises(ValueError, match="topk"):
        OnlineSmoothing(topk=0)
    assert OnlineSmoothing(topk=50).hparams()["topk"] == 50
    s = make(5, topk=50)  # more than the classes: all of them (exact)
    assert s.S_index.shape == (5, 5)


def test_distributed_top_k_says_it_is_not_supported(monkeypatch):
    import adaptls.smoothing.online as online

    s = make(6, topk=2)
    monkeypatch.setattr(online, "is_distributed", lambda: True)
    with pytest.raises(NotImplementedError, match="topk=None"):
        s.update_state()
