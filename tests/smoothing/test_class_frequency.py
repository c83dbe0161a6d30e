"""Label-aware smoothing (MiSLAS): per-class epsilon from the training counts."""

from __future__ import annotations

import math

import pytest
import torch

from adaptls.smoothing import ClassFrequencySmoothing, label_aware_epsilon


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
    t = s.soft_targets(torch.randn(4, 10), targets)
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
