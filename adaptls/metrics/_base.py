"""The base class of every adaptls metric: one update signature, one input pipeline."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from adaptls.checks import check_num_classes
from adaptls.metrics._inputs import Predictions, check_options, iter_predictions

__all__ = ["PredictionMetric"]


class PredictionMetric(Metric):
    """A torchmetrics ``Metric`` updated with ``(preds, targets)``.

    Args:
        num_classes: K, the size of the last dimension of ``preds``.
        input_type: ``"logits"`` (default; a softmax is applied) or ``"probs"`` (rows
            already sum to 1).
        ignore_index: rows whose target equals it are skipped (``None``: skip nothing).
        validate_args: check target range and probability rows (one host sync each).
        **kwargs: passed to :class:`torchmetrics.Metric` (``sync_on_compute``, ...).

    ``update(preds, targets)`` takes ``preds`` of shape (..., K) and integer ``targets`` of
    shape (...); leading dimensions are flattened. Sum states are float64 (exact counts far
    beyond 2^24 rows), all reduced across ranks with ``dist_reduce_fx="sum"``; the per-batch
    arithmetic runs in float32 (float64 for float64 input).
    """

    is_differentiable = False
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        *,
        input_type: str = "logits",
        ignore_index: int | None = -100,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_options(num_classes, input_type)
        self.num_classes = check_num_classes(num_classes)
        self.input_type = input_type
        self.ignore_index = ignore_index
        self.validate_args = validate_args

    def update(self, preds: Tensor, targets: Tensor) -> None:
        for batch in iter_predictions(
            preds,
            targets,
            self.num_classes,
            input_type=self.input_type,
            ignore_index=self.ignore_index,
            validate_args=self.validate_args,
        ):
            self._accumulate(batch)

    def _accumulate(self, batch: Predictions) -> None:
        """Add one prepared, non-empty chunk of rows to the states."""
        raise NotImplementedError

    def _add_sum_state(self, name: str, *shape: int) -> None:
        self.add_state(name, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
