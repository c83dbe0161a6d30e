"""Maximum calibration error: the worst bin's gap."""

from __future__ import annotations

from adaptls.metrics.ece import ExpectedCalibrationError

__all__ = ["MaxCalibrationError"]


class MaxCalibrationError(ExpectedCalibrationError):
    r"""MCE :math:`= \max_{b:\,|B_b| > 0} |\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|`.

    Same bins and state as :class:`ExpectedCalibrationError` (empty bins never count).
    Equals torchmetrics' ``MulticlassCalibrationError(num_classes, n_bins, norm="max")``
    unless some confidence is exactly 1.0 (see ``ExpectedCalibrationError``).
    """

    norm = "max"
