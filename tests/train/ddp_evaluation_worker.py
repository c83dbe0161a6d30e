"""One rank of the gloo runs in test_ddp_evaluation.py (run as a script), and the same
evaluation in one process (:func:`evaluate`, imported by the test).

    python ddp_evaluation_worker.py RANK WORLD_SIZE INIT_FILE OUT_PATH

Every rank builds the same synthetic datamodule (odd validation and test splits), gives
each row fixed logits (a seeded linear map of its inputs, looked up by the row's index, so
a row's logits do not depend on which batch or rank holds it) and runs what the Lightning
module runs in a validation pass of fit: the suite and ``observe_validation`` per batch,
then ``on_validation_end`` with the synced :class:`ValidationPass`; and the test suite.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.distributed as dist
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from adaptls.data import SyntheticDataModule
from adaptls.metrics import CalibrationSuite
from adaptls.smoothing import ValidationPass
from adaptls.smoothing.driver import StrategyDriver
from adaptls.train import CONFIG_DIR

# Validation-driven strategies, as their configs build them (feedback per class too).
STRATEGIES = {
    "feedback": ["smoothing=feedback", "smoothing.per_class=true"],
    "cals": ["smoothing=cals"],
    "adafocal": ["smoothing=adafocal"],
}
# 301 validation rows (43 of each class) and 203 test rows: neither divides by 2 or 3.
DATA = {"num_classes": 7, "num_train": 3010, "num_test": 203, "batch_size": 32, "dim": 8, "seed": 0}


def evaluate() -> dict[str, Any]:
    """The suites' figures and the strategies' states after one validation pass."""
    datamodule = SyntheticDataModule(**DATA)
    datamodule.setup("fit")
    k = datamodule.num_classes
    head = torch.nn.Linear(DATA["dim"], k)
    with torch.no_grad():
        head.weight.copy_(torch.randn(k, DATA["dim"], generator=torch.Generator().manual_seed(1)))
        head.bias.zero_()
    strategies = {name: _strategy(overrides) for name, overrides in STRATEGIES.items()}
    for strategy in strategies.values():
        StrategyDriver(strategy).setup(num_classes=k, class_counts=datamodule.class_counts)

    suite = CalibrationSuite(k, datamodule.class_counts)
    rows = 0
    val_logits = _logits(head, datamodule.val_dataset)
    for _, y, index in datamodule.val_dataloader():
        logits = val_logits[index]
        suite.update(logits, y)
        for strategy in strategies.values():
            strategy.observe_validation(logits, y)
        rows += len(y)
    values = suite.compute()
    validation = ValidationPass.from_suite(values, suite.per_class())
    for strategy in strategies.values():
        strategy.on_validation_end(validation)

    test_suite = CalibrationSuite(k, datamodule.class_counts)
    test_logits = _logits(head, datamodule.test_dataset)
    for _, y, index in datamodule.test_dataloader():
        test_suite.update(test_logits[index], y)
    return {
        "rows": rows,
        "val": {name: v.double() for name, v in values.items()},
        "test": {name: v.double() for name, v in test_suite.compute().items()},
        "strategies": {
            name: {k: v.double() for k, v in s.get_extra_state().items()}
            for name, s in strategies.items()
        },
    }


def _logits(head: torch.nn.Linear, dataset: Any) -> torch.Tensor:
    with torch.no_grad():
        return head(dataset.tensors[0])


def _strategy(overrides: list[str]) -> Any:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return instantiate(cfg.smoothing)


def main(rank: int, world_size: int, init_file: str, out_path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    torch.save(evaluate(), out_path)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
