"""Calibration and accuracy metrics (torchmetrics ``Metric`` subclasses, synced across ranks).

Every metric is updated with ``update(preds, targets)``: ``preds`` (..., K) logits (or
probabilities with ``input_type="probs"``), integer ``targets`` (...); rows whose target is
``ignore_index`` (-100) are skipped. :class:`CalibrationSuite` computes all of them from one
softmax per batch and is what the Lightning module uses.
"""

from adaptls.metrics.accuracy import Accuracy
from adaptls.metrics.adaece import AdaptiveCalibrationError
from adaptls.metrics.balanced_accuracy import BalancedAccuracy
from adaptls.metrics.brier import BrierScore
from adaptls.metrics.classwise_ece import ClasswiseCalibrationError
from adaptls.metrics.confidence import MeanConfidence
from adaptls.metrics.ece import ExpectedCalibrationError
from adaptls.metrics.group_accuracy import GroupAccuracy, shot_groups
from adaptls.metrics.mce import MaxCalibrationError
from adaptls.metrics.nll import NegativeLogLikelihood
from adaptls.metrics.suite import CalibrationSuite

__all__ = [
    "Accuracy",
    "AdaptiveCalibrationError",
    "BalancedAccuracy",
    "BrierScore",
    "CalibrationSuite",
    "ClasswiseCalibrationError",
    "ExpectedCalibrationError",
    "GroupAccuracy",
    "MaxCalibrationError",
    "MeanConfidence",
    "NegativeLogLikelihood",
    "shot_groups",
]
