"""Temperature scaling: recovers a known temperature, never changes accuracy."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptls.calibration import GRID_SPACING, TemperatureGrid, fit_temperature


def synthetic(t_true: float, n: int = 20_000, k: int = 10, seed: int = 0):
    """Logits t_true * clean with labels drawn from softmax(clean): the right T is t_true."""
    generator = torch.Generator().manual_seed(seed)
    clean = 2 * torch.randn(n, k, generator=generator)
    targets = torch.multinomial(torch.softmax(clean, -1), 1, generator=generator).squeeze(1)
    return t_true * clean, targets


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5, 8.0])
def test_recovers_a_known_temperature(t_true):
    logits, targets = synthetic(t_true)
    assert fit_temperature(logits, targets) == pytest.approx(t_true, rel=0.03)


def test_minimises_the_nll():
    logits, targets = synthetic(3.0, n=5000)
    t = fit_temperature(logits, targets)

    def nll(temperature: float) -> float:
        return float(F.cross_entropy(logits.double() / temperature, targets))

    assert nll(t) <= min(nll(t * 0.999), nll(t * 1.001))
    assert nll(t) < nll(1.0)


# Random logits may be separable or worse than chance: T then sits at a bound, with a warning.
@pytest.mark.filterwarnings("ignore:the validation NLL is still decreasing")
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 200),
    k=st.integers(2, 20),
    scale=st.floats(0.01, 30),
    seed=st.integers(0, 2**31 - 1),
)
def test_never_changes_accuracy_and_is_deterministic(n, k, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, k, generator=generator)
    targets = torch.randint(0, k, (n,), generator=generator)
    t = fit_temperature(logits, targets)
    assert 0.01 <= t <= 100
    assert torch.equal((logits / t).argmax(-1), logits.argmax(-1))
    assert fit_temperature(logits, targets) == t


def test_ignored_rows_and_leading_dimensions():
    logits, targets = synthetic(2.0, n=4000)
    noisy = torch.cat([logits, 50 * torch.randn(500, 10)])
    padded = torch.cat([targets, torch.full((500,), -100)])
    expected = fit_temperature(logits, targets)
    assert fit_temperature(noisy, padded) == pytest.approx(expected, rel=1e-9)
    assert fit_temperature(logits.view(40, 100, 10), targets.view(40, 100)) == pytest.approx(
        expected, rel=1e-9
    )


def test_separable_data_returns_the_lower_bound_with_a_warning():
    targets = torch.arange(10) % 3
    logits = 5 * F.one_hot(targets, 3).float()  # always right: NLL falls as T -> 0
    with pytest.warns(RuntimeWarning, match="lower temperature bound 0.01"):
        assert fit_temperature(logits, targets) == 0.01


@pytest.mark.parametrize(
    ("logits", "targets", "kwargs", "message"),
    [
        (torch.randn(0, 3), torch.zeros(0, dtype=torch.long), {}, "at least one row"),
        (torch.randn(2, 3), torch.full((2,), -100), {}, "at least one row"),
        (torch.randn(4, 3), torch.zeros(5, dtype=torch.long), {}, "leading shape"),
        (torch.randn(4, 1), torch.zeros(4, dtype=torch.long), {}, "K >= 2"),
        (torch.randn(4, 3), torch.zeros(4), {}, "integer tensor"),
        (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long), {}, "floating"),
        (torch.randn(2, 3), torch.tensor([0, 7]), {}, r"\[0, 3\).*\[7\]"),
        (torch.tensor([[0.0, float("nan")]]), torch.tensor([0]), {}, "finite"),
        (torch.randn(2, 3), torch.tensor([0, 1]), {"bounds": (2.0, 1.0)}, "0 < T_min < T_max"),
        (torch.randn(2, 3), torch.tensor([0, 1]), {"max_iter": 0}, "max_iter"),
    ],
)
def test_bad_input_is_named(logits, targets, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        fit_temperature(logits, targets, **kwargs)


# ---------------------------------------------------------------------- TemperatureGrid
@pytest.mark.parametrize(
    ("k", "scale", "t_true"), [(10, 3.0, 1.7), (1000, 5.0, 0.6), (300, 2.0, 3.0)]
)
def test_streamed_temperature_matches_the_exact_fit(k, scale, t_true):
    torch.manual_seed(k)
    logits = torch.randn(1500, k) * scale
    targets = torch.distributions.Categorical(logits=logits / t_true).sample()
    grid = TemperatureGrid()
    for x, y in zip(logits.split(256), targets.split(256), strict=True):
        grid.update(x, y)  # one batch at a time, nothing kept
    assert grid.fit() == pytest.approx(fit_temperature(logits, targets), rel=2e-3)
    assert grid.sums.shape == (17, 3)  # the state does not grow with the rows


def test_streamed_nll_is_exact_at_every_grid_temperature_and_skips_ignored_rows():
    torch.manual_seed(0)
    logits = torch.randn(6, 7, 11) * 4
    targets = torch.randint(11, (6, 7))
    targets[1, 3:] = -100
    grid = TemperatureGrid(points=5)
    grid.update(logits, targets)
    keep = targets != -100
    for t, nll in zip(grid.log_t.exp(), grid.nll(), strict=True):
        expected = torch.nn.functional.cross_entropy(logits[keep].double() / t, targets[keep])
        assert float(nll) == pytest.approx(float(expected), rel=1e-6)
    assert float(grid.count) == int(keep.sum())


def test_streamed_sums_add_across_ranks():
    torch.manual_seed(1)
    logits, targets = torch.randn(400, 9) * 3, torch.randint(9, (400,))
    whole, first, second = TemperatureGrid(), TemperatureGrid(), TemperatureGrid()
    whole.update(logits, targets)
    first.update(logits[:150], targets[:150])
    second.update(logits[150:], targets[150:])
    first.sums += second.sums  # what the callback's all-gather sum does
    first.count += second.count
    torch.testing.assert_close(first.sums, whole.sums, rtol=1e-9, atol=1e-9)
    assert first.fit() == pytest.approx(whole.fit(), rel=1e-9)


def test_streamed_fit_warns_at_a_bound_and_needs_rows():
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    grid = TemperatureGrid()
    grid.update(logits, torch.tensor([0, 1]))  # perfectly separated: T -> 0
    with pytest.warns(RuntimeWarning, match="lower temperature bound"):
        assert grid.fit() == pytest.approx(0.01)
    with pytest.raises(ValueError, match="at least one row"):
        TemperatureGrid().fit()
    with pytest.raises(ValueError, match="points must be an int >= 2"):
        TemperatureGrid(points=1)
    with pytest.raises(ValueError, match=r"0 < T_min < T_max, got \(0, 1\)"):
        TemperatureGrid(bounds=(0, 1))


@pytest.mark.parametrize(
    ("bounds", "points"), [((1e-2, 1e2), 17), ((1e-2, 1e4), 25), ((1e-4, 1e2), 25), ((0.5, 2), 4)]
)
def test_other_bounds_keep_the_default_grid_spacing(bounds, points):
    grid = TemperatureGrid(bounds=bounds)
    assert len(grid.log_t) == points
    spacing = float(grid.log_t[1] - grid.log_t[0])
    assert spacing <= GRID_SPACING * (1 + 1e-12)
    assert grid.bounds == pytest.approx(bounds, rel=1e-12)


def test_a_wider_range_finds_a_temperature_beyond_the_default_bound_as_accurately():
    logits, targets = synthetic(300.0, n=4000)
    default, wide = TemperatureGrid(), TemperatureGrid(bounds=(1e-2, 1e4))
    for grid in (default, wide):
        grid.update(logits, targets)
    assert default.solve() == (pytest.approx(100.0), "upper")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # solve() never warns; inside the range nor fit()
        t, bound = wide.solve()
        assert wide.fit() == t
    assert bound is None
    assert t == pytest.approx(fit_temperature(logits, targets, bounds=(1e-2, 1e4)), rel=2e-3)
    assert math.log(t / 300.0) == pytest.approx(0.0, abs=0.05)  # the T the data was made with
