"""The fused kernels' exponential (adaptls.losses._exp) against float64 exp."""

from __future__ import annotations

import math

import pytest
import torch

from adaptls.losses._exp import exp_


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exp_matches_exp_within_the_rounding_of_z_log2e(dtype):
    # z as the kernels see it: x - max x, so z <= 0, down to where e^z underflows
    z = torch.cat([torch.linspace(-80.0, 0.0, 40_001), -torch.rand(10_000) * 30]).to(dtype)
    got = exp_(z.clone()).double()
    want = z.double().exp()
    ulp = torch.finfo(dtype).eps
    # log2 e rounded to the dtype and the product z log2 e rounded once: each an error of
    # at most |z| log2(e) ulp/2 in the exponent, |z| ulp/2 relative in the result, so |z|
    # ulp together; exp2 itself adds a few units in the last place
    bound = (z.double().abs() * ulp + 4 * ulp) * want
    assert torch.all((got - want).abs() <= bound)


def test_exp_keeps_zero_minus_infinity_and_nan():
    z = torch.tensor([0.0, -math.inf, math.nan])
    out = exp_(z.clone())
    assert out[0] == 1.0 and out[1] == 0.0 and out[2].isnan()


def test_exp_is_in_place():
    z = -torch.rand(64)
    assert exp_(z).data_ptr() == z.data_ptr()
