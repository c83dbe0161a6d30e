import pytest
import torch

from adaptls.data.augment import random_crop_flip


def _windows(image, padding, fill):
    """Every crop and mirrored crop that random_crop_flip may return for one image."""
    c, h, w = image.shape
    padded = fill.view(c, 1, 1).repeat(1, h + 2 * padding, w + 2 * padding)
    padded[:, padding : padding + h, padding : padding + w] = image
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top : top + h, left : left + w]
            yield crop
            yield crop.flip(-1)


def test_every_output_is_a_padded_crop_of_its_own_image_maybe_mirrored():
    images = torch.randn(16, 3, 6, 5)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = random_crop_flip(images, padding=2, fill=fill, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    for image, result in zip(images, out, strict=True):
        assert any(torch.equal(result, window) for window in _windows(image, 2, fill))


def test_crops_and_flips_vary_across_the_batch():
    images = torch.randn(1, 3, 8, 8).repeat(256, 1, 1, 1)
    out = random_crop_flip(images, padding=4, generator=torch.Generator().manual_seed(0))
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 50  # 81 offsets x 2 flips are possible
    flipped = [torch.equal(o, images[0].flip(-1)) for o in random_crop_flip(images, padding=0)]
    assert 0.3 < sum(flipped) / len(flipped) < 0.7


def test_is_deterministic_under_a_fixed_seed():
    images = torch.randn(32, 3, 32, 32)
    torch.manual_seed(7)
    first = random_crop_flip(images)
    torch.manual_seed(7)
    assert torch.equal(first, random_crop_flip(images))
    assert not torch.equal(first, random_crop_flip(images))


def test_rejects_a_batch_that_is_not_nchw():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got \(3, 32, 32\)"):
        random_crop_flip(torch.zeros(3, 32, 32))
