"""The two contracts an author writes against stay small, and the split between them kept
every checkpoint loadable."""

from __future__ import annotations

import pytest
import torch

from adaptls.smoothing import STRATEGIES, Criterion, SmoothingStrategy
from adaptls.smoothing._applied import RECORD_STATES
from adaptls.smoothing.driver import StrategyDriver

#: The most public names a contract adds to ``nn.Module``'s (issue 20: at most 15).
BOUND = 15
CRITERIA = sorted(n for n, cls in STRATEGIES.items() if issubclass(cls, Criterion))


def public_names(cls: type) -> list[str]:
    """The public names ``cls`` exposes beyond ``nn.Module``'s (methods, properties and
    class attributes: what an author sees in ``dir()``)."""
    module = set(dir(torch.nn.Module))
    return sorted(n for n in dir(cls) if not n.startswith("_") and n not in module)


@pytest.mark.parametrize("contract", [SmoothingStrategy, Criterion], ids=lambda c: c.__name__)
def test_the_class_an_author_subclasses_stays_small(contract):
    names = public_names(contract)
    assert len(names) <= BOUND, f"{contract.__name__} exposes {len(names)}: {names}"


def test_what_the_loop_calls_is_not_on_the_contracts():
    """Every public method of the driver beyond the author hooks it calls by the same name
    lives on the driver only."""
    hooks = set(public_names(SmoothingStrategy)) | set(public_names(Criterion))
    loop_only = {n for n in public_names(StrategyDriver) if n not in hooks}
    assert {"mixed_loss", "linear_loss", "set_epoch", "on_epoch_end", "smoothing_amount"} <= (
        loop_only
    )


def legacy(state: dict, strategy: torch.nn.Module) -> dict:
    """``state`` as written before the split: every criterion's extra state also held the
    soft-target base's (never written, zero) applied-epsilon record."""
    old = dict(state)
    for name, module in strategy.named_modules():
        key = f"{name}.{'_extra_state'}" if name else "_extra_state"
        if isinstance(module, Criterion):
            zero = torch.zeros((), dtype=torch.float64)
            old[key] = {**old[key], **{n: zero for n in RECORD_STATES}}
    return old


@pytest.mark.parametrize("name", CRITERIA)
def test_a_criterion_loads_a_checkpoint_written_before_the_split(name):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randint(0, 5, (16,))
    strategy, fresh = STRATEGIES[name](), STRATEGIES[name]()
    for s in (strategy, fresh):
        StrategyDriver(s).setup(5, [5, 4, 3, 2, 1])
    strategy(x, y)
    fresh.load_state_dict(legacy(strategy.state_dict(), strategy))
    assert fresh.state_dict().keys() == strategy.state_dict().keys()
    torch.testing.assert_close(fresh(x, y), strategy(x, y), rtol=0, atol=0)


def test_a_checkpoint_of_other_state_is_still_refused_by_name():
    strategy = STRATEGIES["cals"]()
    StrategyDriver(strategy).setup(5)
    state = strategy.state_dict()
    state["_extra_state"] = {**state["_extra_state"], "something_else": torch.zeros(())}
    with pytest.raises(ValueError, match="something_else"):
        strategy.load_state_dict(state)
