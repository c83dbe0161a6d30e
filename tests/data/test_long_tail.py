import math

import pytest
import torch

from adaptls.data.long_tail import long_tail_counts, long_tail_subsample


def test_exp_profile_matches_the_cifar10_lt_counts():
    assert long_tail_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


@pytest.mark.parametrize(
    ("n_max", "num_classes", "ratio", "total"),
    # Training-set sizes quoted in the long-tail literature (Cui et al. 2019, Cao et al. 2019).
    [(5000, 10, 100, 12406), (5000, 10, 50, 13996), (5000, 10, 10, 20431), (500, 100, 100, 10847),
     (500, 100, 50, 12608), (500, 100, 10, 19573)],
)  # fmt: skip
def test_exp_profile_gives_the_published_cifar_lt_sizes(n_max, num_classes, ratio, total):
    assert sum(long_tail_counts(n_max, num_classes, ratio)) == total


@pytest.mark.parametrize("ratio", [2.0, 7.5, 100.0])
@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_exp_profile_is_the_formula(ratio, num_classes):
    counts = long_tail_counts(1000, num_classes, ratio, "exp")
    expected = [math.floor(1000 * ratio ** (-c / (num_classes - 1))) for c in range(num_classes)]
    # floor() may differ by one where the product is an integer up to rounding.
    assert all(abs(a - b) <= 1 for a, b in zip(counts, expected, strict=True))
    assert counts[0] == 1000 and counts[-1] == math.floor(1000 / ratio)
    assert counts == sorted(counts, reverse=True)


def test_step_profile_keeps_the_first_half_at_n_max():
    assert long_tail_counts(500, 10, 10, "step") == [500] * 5 + [50] * 5
    assert long_tail_counts(500, 5, 10, "step") == [500] * 2 + [50] * 3


@pytest.mark.parametrize("profile", ["exp", "step"])
def test_ratio_one_is_balanced(profile):
    assert long_tail_counts(37, 7, 1.0, profile) == [37] * 7


@pytest.mark.parametrize("ratio", [0.5, 0.0, -3.0, float("nan"), float("inf"), True, "10"])
def test_bad_ratio_is_rejected_with_its_value(ratio):
    with pytest.raises(ValueError, match=r"imbalance_ratio must be .*>= 1.*got"):
        long_tail_counts(100, 10, ratio)


def test_unknown_profile_is_rejected():
    with pytest.raises(
        ValueError, match=r"imbalance_profile must be one of 'exp', 'step'; got 'log'"
    ):
        long_tail_counts(100, 10, 10, "log")


def test_ratio_that_empties_the_rarest_class_is_rejected():
    assert long_tail_counts(100, 10, 100)[-1] == 1
    with pytest.raises(ValueError, match=r"imbalance_ratio=101.*must be <= 100"):
        long_tail_counts(100, 10, 101)


def test_subsample_takes_the_asked_counts_of_each_class_without_repeats():
    targets = torch.arange(60) % 3
    keep = long_tail_subsample(targets, [20, 7, 1], torch.Generator().manual_seed(0))
    assert keep.dtype == torch.int64
    assert torch.equal(keep, keep.unique())  # sorted, no repeats
    assert torch.bincount(targets[keep]).tolist() == [20, 7, 1]


def test_subsample_is_seeded_and_random():
    targets = torch.arange(1000) % 2
    draw = [
        long_tail_subsample(targets, [10, 10], torch.Generator().manual_seed(s)) for s in (0, 0, 1)
    ]
    assert torch.equal(draw[0], draw[1])
    assert not torch.equal(draw[0], draw[2])


def test_subsample_refuses_more_than_available():
    with pytest.raises(ValueError, match="class 1 has 5 samples, cannot keep 6"):
        long_tail_subsample(torch.arange(10) % 2, [5, 6])
