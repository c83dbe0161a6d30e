"""Label-aware smoothing (MiSLAS): per-class epsilon from the training counts."""

from __future__ import annotations

import math

import pytest
import torch

from adaptls.smoothing import ClassFrequencySmoothing, label_aware_epsilon, soft_targets
from adaptls.smoothing.driver import StrategyDriver


def test_cifar10_lt_if100_worked_example(cifar10_lt_counts):
    assert cifar10_lt_counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    s = ClassFrequencySmoothing(epsilon_head=0.3, epsilon_tail=0.0, shape="concave")
    s.setup(num_classes=10, class_counts=cifar10_lt_counts)
    eps = s.epsilon_per_class
    assert [round(e, 3) for e in eps[:3].tolist()] == [0.300, 0.241, 0.158]
    assert eps[-1].item() == 0.0
    assert (eps[:-1] > eps[1:]).all()  # rarer classes are smoothed less


def by_hand(counts, head, tail, shape, power=1.0):
    n1, nk = max(counts), min(counts)
    out = []
    for n in counts:
        r = (n - nk) / (n1 - nk)
        if shape == "concave":
            out.append(tail + (head - tail) * math.sin(math.pi / 2 * r))
        elif shape == "linear":
            out.append(tail + (head - tail) * r)
        elif shape == "convex":
            out.append(head + (head - tail) * math.sin(3 * math.pi / 2 + math.pi / 2 * r))
        else:
            out.append(tail + (head - tail) * r**power)
    return out


@pytest.mark.parametrize(
    ("shape", "power"), [("concave", 1.0), ("linear", 1.0), ("convex", 1.0), ("power", 2.5)]
)
@pytest.mark.parametrize(("head", "tail"), [(0.3, 0.0), (0.4, 0.1), (0.1, 0.2)])
def test_every_shape_follows_its_formula(cifar10_lt_counts, shape, power, head, tail):
    eps = label_aware_epsilon(torch.tensor(cifar10_lt_counts), head, tail, shape, power)
    expected = by_hand(cifar10_lt_counts, head, tail, shape, power)
    torch.testing.assert_close(eps, torch.tensor(expected, dtype=torch.float32))
    assert eps[0].item() == pytest.approx(head) and eps[-1].item() == pytest.approx(tail)


def test_shapes_order_between_head_and_tail(cifar10_lt_counts):
    counts = torch.tensor(cifar10_lt_counts)
    concave, linear, convex = (
        label_aware_epsilon(counts, 0.3, 0.0, s) for s in ("concave", "linear", "convex")
    )
    middle = slice(1, -1)
    assert (concave[middle] > linear[middle]).all() and (linear[middle] > convex[middle]).all()


@pytest.mark.parametrize("shape", ["concave", "linear", "convex", "power"])
def test_all_equal_counts_give_epsilon_head_everywhere(shape):
    s = ClassFrequencySmoothing(epsilon_head=0.25, epsilon_tail=0.05, shape=shape, power=2.0)
    s.setup(num_classes=4, class_counts=[7, 7, 7, 7])
    torch.testing.assert_close(s.epsilon_per_class, torch.full((4,), 0.25))


def test_soft_target_spreads_the_class_epsilon_over_all_classes(cifar10_lt_counts):
    s = ClassFrequencySmoothing()
    s.setup(num_classes=10, class_counts=cifar10_lt_counts)
    targets = torch.tensor([0, 1, 9, -100])
    t = soft_targets(s, torch.randn(4, 10), targets)
    eps = s.epsilon_per_class
    for row, y in enumerate(targets[:3].tolist()):
        expected = torch.full((10,), eps[y].item() / 10)
        expected[y] += 1 - eps[y].item()
        torch.testing.assert_close(t[row], expected)
    assert (t[3] == 0).all()
    assert s.summary()["epsilon_per_class"] == pytest.approx(eps.tolist())


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (None, r"needs class_counts .*setup\(num_classes=\.\.\., class_counts=\[\.\.\.\]\)"),
        ([5, 4, 3], r"one entry per class \(4\), got shape \(3,\)"),
        ([[5, 4], [3, 2]], r"one entry per class \(4\), got shape \(2, 2\)"),
        ([5, 4, -3, 2], r"whole numbers >= 0, got -3 for class 2"),
    ],
)
def test_bad_counts_are_named(counts, message):
    s = ClassFrequencySmoothing()
    with pytest.raises(ValueError, match=message):
        s.setup(num_classes=4, class_counts=counts)


def test_label_aware_epsilon_checks_its_arguments():
    with pytest.raises(ValueError, match=r"shape must be one of .*got 'sine'"):
        label_aware_epsilon(torch.tensor([3, 2]), 0.3, 0.0, "sine")
    with pytest.raises(ValueError, match=r"got -2 for class 1"):
        label_aware_epsilon(torch.tensor([3, -2]), 0.3, 0.0)
    with pytest.raises(ValueError, match=r"power must be a number > 0"):
        label_aware_epsilon(torch.tensor([3, 2]), 0.3, 0.0, "power", 0.0)


def test_a_class_without_samples_is_the_tail():
    eps = label_aware_epsilon(torch.tensor([10, 0, 5]), 0.3, 0.1, "linear")
    torch.testing.assert_close(eps, torch.tensor([0.3, 0.1, 0.2]))


# --- token frequencies: a vocabulary as the classes ------------------------------------

V = 32000


def zipf_counts(v=V, tokens=300_000, exponent=1.0, seed=0):
    """Counts of a Zipf-shaped token stream over a shuffled vocabulary: the long tail of
    a real training split, with many tokens never seen (count 0)."""
    g = torch.Generator().manual_seed(seed)
    weights = 1.0 / torch.arange(1, v + 1, dtype=torch.float64).pow(exponent)
    expected = tokens * weights / weights.sum()
    counts = torch.floor(expected * torch.rand(v, generator=g, dtype=torch.float64) * 2)
    return counts.long()[torch.randperm(v, generator=g)]


@pytest.mark.parametrize("count_scale", ["linear", "log"])
def test_zipf_token_counts_with_unseen_tokens(count_scale):
    counts = zipf_counts()
    unseen = counts == 0
    assert unseen.sum() > V // 10  # the tail really holds tokens never seen
    s = ClassFrequencySmoothing(epsilon_head=0.2, epsilon_tail=0.05, count_scale=count_scale)
    s.setup(num_classes=V, class_counts=counts)
    eps = s.epsilon_per_class
    assert eps.shape == (V,) and eps.dtype == torch.float32
    # a token never seen in training gets the tail's epsilon; the most frequent the head's
    torch.testing.assert_close(eps[unseen], torch.full((int(unseen.sum()),), 0.05))
    torch.testing.assert_close(eps[counts.argmax()], torch.tensor(0.2))
    order = counts.argsort()
    assert (eps[order][1:] >= eps[order][:-1]).all()  # more frequent: smoothed at least as much
    summary = s.summary()
    assert "epsilon_per_class" not in summary  # 32000 numbers stay out of metrics.json
    assert summary["epsilon_per_class_quantiles"]["min"] == pytest.approx(0.05)


def test_on_zipf_counts_the_linear_ratio_leaves_almost_every_token_at_the_tail():
    # why count_scale="log" exists: n ~ 1/rank puts r < 0.01 past the top 1% of tokens
    counts = 1_000_000 // torch.arange(1, V + 1)
    linear = label_aware_epsilon(counts, 0.3, 0.0, "concave")
    log = label_aware_epsilon(counts, 0.3, 0.0, "concave", count_scale="log")
    tail = 0.3 * math.sin(math.pi / 2 * 0.01) + 1e-6  # epsilon at r = 0.01
    assert (linear < tail).float().mean() > 0.99
    assert (log < tail).float().mean() < 0.15  # r ~ 1 - log(rank) / log(V): spread out
    lo, hi = math.log1p(counts[-1]), math.log1p(counts[0])
    r = (math.log1p(counts[99]) - lo) / (hi - lo)  # the 100th token, by hand
    assert log[99].item() == pytest.approx(0.3 * math.sin(math.pi / 2 * r), rel=1e-6)


def test_token_frequencies_through_the_linear_path():
    counts = zipf_counts()
    s = ClassFrequencySmoothing(epsilon_head=0.2, epsilon_tail=0.05)
    s.setup(num_classes=V, class_counts=counts)
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(48, 8, generator=g, dtype=torch.float64)
    weight = torch.randn(V, 8, generator=g, dtype=torch.float64).requires_grad_()
    targets = torch.randint(0, V, (48,), generator=g)
    targets[:6] = counts.argmin()  # unseen tokens as targets: the tail's epsilon
    targets[6] = -100
    loss = StrategyDriver(s).linear_loss(hidden, weight, targets)
    (grad,) = torch.autograd.grad(loss, weight)
    w = weight.detach().clone().requires_grad_()
    ref = s(torch.nn.functional.linear(hidden, w), targets)
    ref.backward()
    torch.testing.assert_close(loss, ref, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(grad, w.grad, atol=1e-12, rtol=1e-10)


def test_count_scale_is_checked():
    with pytest.raises(ValueError, match="count_scale"):
        ClassFrequencySmoothing(count_scale="sqrt")
