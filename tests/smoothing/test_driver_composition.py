"""Composition by construction: every hook the driver calls reaches a wrapper's base.

The hooks are enumerated from :class:`StrategyDriver` itself (its public methods) and the
wrappers from the registry (every strategy whose constructor takes a ``base``): a new
driver hook, or a new wrapper, joins these tests by existing.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch

from adaptls.smoothing import STRATEGIES, UniformSmoothing, ValidationPass
from adaptls.smoothing.base import SmoothingStrategy, Strategy
from adaptls.smoothing.driver import StrategyDriver

K = 4
WRAPPERS = sorted(
    name for name, cls in STRATEGIES.items() if "base" in inspect.signature(cls).parameters
)
DRIVER_METHODS = sorted(
    name
    for name, member in inspect.getmembers(StrategyDriver, inspect.isfunction)
    if not name.startswith("_")
)
#: The strategy methods a spy records: every public method of the soft-target contract
#: beyond nn.Module's (what any driver method could call on a strategy), and its call.
STRATEGY_METHODS = [
    "forward",
    *(
        name
        for name, member in inspect.getmembers(SmoothingStrategy, inspect.isfunction)
        if not name.startswith("_") and not hasattr(torch.nn.Module, name)
    ),
]
#: A wrapper computes its base's loss inside its own (MDCA adds its term to the base's):
#: the base is reached through its loss, never through its call.
LOSS_ENTRIES = {"forward"}
#: What the driver may set on a strategy directly (the loop's facts), seen as "set:<name>".
LOOP_FACTS = ("epoch", "max_epochs", "num_classes", "class_counts")


class Spy(UniformSmoothing, register=False):
    """Uniform smoothing that records the strategy methods called on it from outside (a
    method it calls on itself is not recorded)."""


def _recording(name: str):
    def method(self, *args: Any, **kwargs: Any) -> Any:
        state = self.__dict__.setdefault("spy", {"calls": [], "depth": 0})  # from __init__ on
        if state["depth"] == 0:
            state["calls"].append(name)
        state["depth"] += 1
        try:
            return getattr(super(Spy, self), name)(*args, **kwargs)
        finally:
            state["depth"] -= 1

    method.__name__ = name
    return method


for _name in STRATEGY_METHODS:
    setattr(Spy, _name, _recording(_name))


def arguments(method: str) -> tuple[list[Any], dict[str, Any]]:
    """Arguments for a driver method, by parameter name (a new name fails here, loudly)."""
    g = torch.Generator().manual_seed(0)
    values = {
        "num_classes": K,
        "class_counts": None,
        "logits": torch.randn(8, K, generator=g, dtype=torch.float64),
        "targets": torch.randint(0, K, (8,), generator=g),
        "targets_a": torch.randint(0, K, (8,), generator=g),
        "targets_b": torch.randint(0, K, (8,), generator=g),
        "lam": 0.3,
        "reduction": "mean",
        "indices": None,
        "indices_a": None,
        "indices_b": None,
        "hidden": torch.randn(8, 5, generator=g, dtype=torch.float64),
        "weight": torch.randn(K, 5, generator=g, dtype=torch.float64),
        "bias": torch.randn(K, generator=g, dtype=torch.float64),
        "epoch": 1,
        "max_epochs": 3,
        "validation": ValidationPass(acc=0.5, confidence=0.9),
    }
    args, kwargs = [], {}
    for p in list(inspect.signature(getattr(StrategyDriver, method)).parameters.values())[1:]:
        if p.name not in values:
            raise KeyError(f"no test value for StrategyDriver.{method}'s parameter {p.name!r}")
        if p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = values[p.name]
        else:
            args.append(values[p.name])
    return args, kwargs


def received(strategy: Strategy, spy: Spy, method: str) -> set[str] | None:
    """What ``spy`` receives when the driver of ``strategy`` runs ``method`` (after setup,
    except for setup itself): the strategy methods called on it from outside, the loop's
    facts set on it and its declared states that changed; None when the driver refuses
    the call for this strategy with a TypeError naming why (the fused linear path)."""
    driver = StrategyDriver(strategy)
    if method != "setup":
        driver.setup(K)
    spy.spy["calls"].clear()
    before = {name: repr(getattr(spy, name)) for name in LOOP_FACTS}
    states = {name: getattr(spy, name).clone() for name in spy._states}
    args, kwargs = arguments(method)
    try:
        getattr(driver, method)(*args, **kwargs)
    except TypeError as err:
        if "cannot run through the fused linear path" in str(err):
            return None
        raise
    changed = {f"set:{n}" for n in LOOP_FACTS if repr(getattr(spy, n)) != before[n]}
    changed |= {f"state:{n}" for n, v in states.items() if not torch.equal(getattr(spy, n), v)}
    return set(spy.spy["calls"]) | changed


def test_the_driver_and_the_wrappers_are_enumerated():
    assert {"setup", "observe", "on_epoch_end", "on_validation_end"} <= set(DRIVER_METHODS)
    assert "mdca" in WRAPPERS


@pytest.mark.parametrize("method", DRIVER_METHODS)
@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_every_driver_hook_reaches_a_wrapped_base(wrapper, method):
    alone = Spy(epsilon=0.1)
    expected = received(alone, alone, method)
    base = Spy(epsilon=0.1)
    got = received(STRATEGIES[wrapper](base=base), base, method)
    if got is None:  # the wrapper refuses this call itself: nothing to forward
        return
    missing = expected - got - LOSS_ENTRIES
    assert not missing, (
        f"StrategyDriver.{method} on {wrapper}(base=...) does not reach the base's "
        f"{sorted(missing)} (alone it calls {sorted(expected)}, wrapped {sorted(got)})"
    )


def test_the_tree_is_visited_parent_first():
    base = Spy(epsilon=0.1)
    wrapper = STRATEGIES["mdca"](base=base)
    assert StrategyDriver(wrapper).parts == (wrapper, base)


# ---------------------------------------------------------------------------- issue 19
def over_confident_pass(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Validation batches whose top-1 confidence (~0.99) is far above their accuracy
    (~0.5): every validation-driven strategy must move."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(3):
        x = torch.randn(32, K, generator=g, dtype=torch.float64) * 8.0
        right = torch.rand(32, generator=g) < 0.5
        other = (x.argmax(1) + 1 + torch.randint(0, K - 1, (32,), generator=g)) % K
        batches.append((x, torch.where(right, x.argmax(1), other)))
    return batches


def validate(driver: StrategyDriver, batches) -> None:
    driver.set_epoch(0, max_epochs=2)
    driver.strategy.eval()
    for x, y in batches:
        driver.loss(x, y)
        driver.observe_validation(x, y)
    driver.on_validation_end(ValidationPass(acc=0.5, confidence=0.99))
    driver.strategy.train()


#: Validation-driven strategies and the state their validation passes move.
VALIDATION_STATE = {"adafocal": "gammas", "cals": "lambdas"}


@pytest.mark.parametrize("name", sorted(VALIDATION_STATE))
def test_a_wrapped_base_moves_on_validation_as_it_does_alone(name):
    state = VALIDATION_STATE[name]
    alone = STRATEGIES[name]()
    wrapped = STRATEGIES["mdca"](base=name)
    batches = over_confident_pass()
    for strategy in (alone, wrapped):
        StrategyDriver(strategy).setup(K)
    before = getattr(alone, state).clone()
    validate(StrategyDriver(alone), batches)
    validate(StrategyDriver(wrapped), batches)
    moved = getattr(alone, state)
    assert not torch.equal(moved, before), f"{name}'s {state} did not move alone"
    torch.testing.assert_close(getattr(wrapped.base, state), moved, rtol=0, atol=0)
