"""The benchmark searches what ``hparams_search=epsilon`` searches: every method's space
parses to the distributions hydra-optuna-sweeper builds from the same expressions."""

from __future__ import annotations

import pytest
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

from adaptls.benchmark import search_space
from adaptls.benchmark.space import distributions
from adaptls.smoothing import STRATEGIES


@pytest.mark.parametrize("method", sorted(STRATEGIES))
def test_every_method_has_the_sweepers_search_space(method):
    space = search_space(method)
    assert space, method
    expected = create_params_from_overrides([f"{k}={v}" for k, v in space.items()])
    assert distributions(space) == expected


def test_choices_and_fixed_values():
    swept, fixed = distributions({"a": "choice(1, 2)", "b": "interval(0.0, 1.0)", "c": "3"})
    assert swept["a"].choices == (1, 2) and (swept["b"].low, swept["b"].high) == (0.0, 1.0)
    assert fixed == {"c": 3}
