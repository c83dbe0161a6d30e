"""Expected calibration error: top-1 confidence, equal-width bins, L1."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from adaptls.metrics._base import PredictionMetric
from adaptls.metrics._inputs import Predictions, check_options
from adaptls.metrics.binning import (
    calibration_error,
    reliability_table,
    top_label_table,
)

__all__ = ["ExpectedCalibrationError"]


class ExpectedCalibrationError(PredictionMetric):
    r"""ECE :math:`= \sum_b \frac{|B_b|}{N} |\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|`.

    Top-1 confidence :math:`c_i = \max_k p_{ik}`, ``n_bins`` equal-width bins (15 by
    default, the field's usual choice); binning conventions in :mod:`adaptls.metrics.binning`.
    Streaming: the state is one (B, 3) table, summed across ranks.

    Equals torchmetrics' ``MulticlassCalibrationError(num_classes, n_bins, norm="l1")``
    (to float rounding) unless some confidence is exactly 1.0: torchmetrics puts such rows
    in a hidden 16th bin (torchmetrics issue 3510), adaptls puts them in the top bin.
    """

    higher_is_better = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0
    norm = "l1"

    def __init__(self, num_classes: int, n_bins: int = 15, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        check_options(num_classes, self.input_type, n_bins)
        self.n_bins = n_bins
        self._add_sum_state("bin_table", n_bins, 3)

    def _accumulate(self, batch: Predictions) -> None:
        self.bin_table += top_label_table(batch.stats, self.n_bins)

    def compute(self) -> Tensor:
        return calibration_error(self.bin_table, self.norm)

    def reliability(self) -> dict[str, Tensor]:
        """Per-bin mean ``confidence``, ``accuracy``, ``count`` and ``edges`` (synced)."""
        with self.sync_context(should_sync=self.sync_on_compute):
            return reliability_table(self.bin_table.clone())
