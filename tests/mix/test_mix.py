"""The mixing augmentations: mixup's convex combination, cutmix's box and its lam, seeds."""

from __future__ import annotations

import math

import pytest
import torch

from adaptls.mix import CutMix, MixUp, NoMix, cutmix_box


def torchvision_cutmix_params(alpha: float, h: int, w: int) -> tuple[tuple[int, ...], float]:
    """torchvision.transforms.v2.CutMix._get_params (torchvision 0.16-0.20), verbatim but
    for ``query_size``: lam ~ Beta(alpha, alpha), a centre, a clipped box, and lam
    replaced by the fraction of the image kept. The reference for our box and lam."""
    dist = torch.distributions.Beta(torch.tensor([alpha]), torch.tensor([alpha]))
    lam = float(dist.sample(()))
    r_x = torch.randint(w, size=(1,))
    r_y = torch.randint(h, size=(1,))
    r = 0.5 * math.sqrt(1.0 - lam)
    r_w_half = int(r * w)
    r_h_half = int(r * h)
    x1 = int(torch.clamp(r_x - r_w_half, min=0))
    y1 = int(torch.clamp(r_y - r_h_half, min=0))
    x2 = int(torch.clamp(r_x + r_w_half, max=w))
    y2 = int(torch.clamp(r_y + r_h_half, max=h))
    return (x1, y1, x2, y2), float(1.0 - (x2 - x1) * (y2 - y1) / (w * h))


def labelled_batch(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample i is the constant i + 1 everywhere (so each element tells its source)."""
    b = shape[0]
    x = (torch.arange(b, dtype=torch.float32) + 1).reshape(b, *([1] * (len(shape) - 1)))
    return x.expand(shape).clone(), torch.arange(b) % 3


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("alpha", [0.2, 1.0])
@pytest.mark.parametrize("hw", [(32, 32), (7, 12)])
def test_cutmix_box_and_lam_are_torchvisions(seed, alpha, hw):
    h, w = hw
    torch.manual_seed(seed)
    (x1, y1, x2, y2), lam_tv = torchvision_cutmix_params(alpha, h, w)
    torch.manual_seed(seed)
    x, y = labelled_batch((8, 3, h, w))
    mixed = CutMix(alpha=alpha)(x, y)
    assert mixed.lam == lam_tv
    expected = x.clone()
    expected[..., y1:y2, x1:x2] = x[mixed.perm][..., y1:y2, x1:x2]
    assert torch.equal(mixed.x, expected)


@pytest.mark.parametrize("shape", [(16, 2, 9, 13), (16, 1, 40), (16, 3, 5)])
@pytest.mark.parametrize("seed", range(10))
def test_cutmix_lam_is_the_fraction_of_the_input_kept(shape, seed):
    torch.manual_seed(seed)
    x, y = labelled_batch(shape)
    mixed = CutMix(alpha=1.0)(x, y)
    moved = mixed.perm != torch.arange(shape[0])
    if not moved.any():
        pytest.skip("the permutation fixed every sample")
    row = moved.nonzero()[0, 0]
    # lam = kept / total, computed as one division in double precision by both
    kept = int((mixed.x[row] == x[row]).sum()) // shape[1]
    assert mixed.lam == 1.0 - (math.prod(shape[2:]) - kept) / math.prod(shape[2:])
    assert torch.equal(mixed.y_b, y[mixed.perm])


def test_cutmix_series_segment_is_one_minus_lam_long_before_clipping():
    torch.manual_seed(0)
    for lam in (0.0, 0.3, 0.75, 1.0):
        ((lo, hi),) = cutmix_box((1000,), lam)
        assert hi - lo <= 2 * int(0.5 * (1 - lam) * 1000)
    # away from the border, the segment is exactly that long
    lengths = [hi - lo for ((lo, hi),) in (cutmix_box((1000,), 0.6) for _ in range(200))]
    assert max(lengths) == 2 * int(0.5 * 0.4 * 1000)


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixup_is_the_convex_combination_with_a_permutation(alpha):
    torch.manual_seed(1)
    x, y = torch.randn(10, 1, 40), torch.randint(0, 10, (10,))
    mixed = MixUp(alpha=alpha)(x, y)
    assert 0.0 <= mixed.lam <= 1.0
    assert sorted(mixed.perm.tolist()) == list(range(10))
    torch.testing.assert_close(mixed.x, mixed.lam * x + (1 - mixed.lam) * x[mixed.perm])
    assert torch.equal(mixed.y_a, y) and torch.equal(mixed.y_b, y[mixed.perm])
    idx = torch.arange(100, 110)
    assert torch.equal(mixed.partner(idx), idx[mixed.perm])


@pytest.mark.parametrize("mixer", [MixUp(alpha=0.4), CutMix(alpha=1.0, probability=0.5)])
def test_a_fixed_seed_gives_the_same_mix(mixer):
    x, y = torch.randn(12, 2, 8, 8), torch.randint(0, 5, (12,))
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        runs.append([mixer(x, y) for _ in range(5)])
    for a, b in zip(runs[0], runs[1], strict=True):
        assert a.lam == b.lam and torch.equal(a.x, b.x) and torch.equal(a.y_b, b.y_b)
    assert any(a.lam != c.lam for a, c in zip(runs[0], runs[2], strict=True))


def test_probability_mixes_that_share_of_batches():
    torch.manual_seed(0)
    x, y = torch.randn(4, 1, 6), torch.arange(4)
    mixer = MixUp(alpha=1.0, probability=0.3)
    mixed = [mixer(x, y) for _ in range(2000)]
    share = sum(m.perm is not None for m in mixed) / len(mixed)
    assert share == pytest.approx(0.3, abs=0.04)  # 4 standard deviations of a binomial
    unmixed = next(m for m in mixed if m.perm is None)
    assert unmixed.lam == 1.0 and unmixed.x is x and unmixed.y_b is y
    assert all(m.x is x for m in map(MixUp(probability=0.0), [x] * 3, [y] * 3))


def test_no_mix_is_the_identity():
    x, y = torch.randn(3, 1, 5), torch.arange(3)
    mixed = NoMix()(x, y)
    assert mixed.x is x and mixed.y_a is y and mixed.y_b is y and mixed.lam == 1.0
    assert mixed.partner(torch.arange(3)) is not None and mixed.perm is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0}, "alpha must be a number > 0, got 0"),
        ({"alpha": -1.0}, "alpha must be a number > 0"),
        ({"probability": 1.5}, r"probability must be a number in \[0, 1\], got 1.5"),
        ({"probability": True}, "probability must be"),
    ],
)
def test_bad_options_are_named(kwargs, message):
    for cls in (MixUp, CutMix):
        with pytest.raises((ValueError, TypeError), match=message):  # TypeError: a bool
            cls(**kwargs)


def test_bad_batches_are_named():
    with pytest.raises(ValueError, match=r"CutMix needs images \(C, H, W\) or series \(C, L\)"):
        CutMix()(torch.randn(4, 1, 2, 3, 4), torch.arange(4))
    with pytest.raises(ValueError, match=r"needs inputs \(B, C, \.\.\.\) and labels \(B,\)"):
        MixUp()(torch.randn(4, 3), torch.arange(5))
