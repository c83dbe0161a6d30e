"""State only moves during fit: a later trainer.validate / trainer.test leaves every
registered strategy that keeps state exactly as fit left it (feedback's controller, CALS's
multipliers, AdaFocal's gammas, online S, self-distillation's table, every soft-target
strategy's applied-epsilon record, ...)."""

from __future__ import annotations

import pytest
import torch

from adaptls.smoothing import STRATEGIES, StrategyDriver
from adaptls.train import build

# Away from its bounds, so that any extra controller step would show.
EXTRA = {"feedback": ["smoothing.epsilon_init=0.25", "smoothing.gain=0.05"]}


def _snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in _flat(module.strategy.state_dict()).items()}


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif torch.is_tensor(value):
            out[f"{prefix}{key}"] = value
    return out


def _keeps_state(name: str) -> bool:
    """Whether the strategy holds any state once set up (the stateless criteria: none)."""
    strategy = STRATEGIES[name]()
    StrategyDriver(strategy).setup(4, [4, 3, 2, 1])
    return bool(_flat(strategy.state_dict()))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in sorted(STRATEGIES) if _keeps_state(n)])
def test_validate_and_test_after_fit_leave_the_strategy_unchanged(
    name, compose_train, tiny, small, tmp_path
):
    cfg = compose_train(
        f"smoothing={name}", *EXTRA.get(name, []), "trainer.max_epochs=2", "logger=none",
        *tiny[1:], *small, output_dir=tmp_path,
    )  # fmt: skip
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    before = _snapshot(module)
    assert before, f"{name}: state after setup, none after fit"
    for evaluate in (trainer.validate, trainer.test, trainer.validate):
        evaluate(module, datamodule=datamodule, verbose=False)
        after = _snapshot(module)
        assert after.keys() == before.keys()
        for key in before:
            assert torch.equal(after[key], before[key]) or (
                before[key].is_floating_point()
                and torch.equal(after[key].isnan(), before[key].isnan())
                and torch.equal(after[key].nan_to_num(), before[key].nan_to_num())
            ), f"{name}: {evaluate.__name__} moved {key}"
