"""Label smoothing strategies and the calibration losses they are compared with. Pure PyTorch.

>>> from adaptls.smoothing import UniformSmoothing
>>> s = UniformSmoothing(epsilon=0.1)
>>> s.setup(num_classes=10)
>>> loss = s(logits, targets)  # doctest: +SKIP
"""

import importlib
import pkgutil

from adaptls.losses import (
    dense_soft_targets,
    linear_soft_target_cross_entropy,
    soft_target_cross_entropy,
)
from adaptls.smoothing.base import (
    REGISTRY,
    Criterion,
    Limits,
    SmoothingStrategy,
    SoftTarget,
    Strategy,
    soft_targets,
)
from adaptls.smoothing.class_frequency import ClassFrequencySmoothing, label_aware_epsilon
from adaptls.smoothing.confidence import ConfidenceSmoothing
from adaptls.smoothing.driver import StrategyDriver
from adaptls.smoothing.feedback import FeedbackSmoothing
from adaptls.smoothing.masked import MaskedSmoothing
from adaptls.smoothing.none import NoSmoothing
from adaptls.smoothing.online import OnlineSmoothing
from adaptls.smoothing.peers import (
    MDCA,
    ACLSmoothing,
    AdaFocalLoss,
    AdaptiveFocalLoss,
    ClassAdaptiveMarginSmoothing,
    DualFocalLoss,
    FocalLoss,
    MarginSmoothing,
    MaxSup,
)
from adaptls.smoothing.schedule import EpsilonSchedule
from adaptls.smoothing.self_distill import SelfDistillSmoothing
from adaptls.smoothing.uniform import UniformSmoothing
from adaptls.smoothing.validation_pass import ClassFigures, ValidationPass
from adaptls.smoothing.zipf import ZipfSmoothing, zipf_prior


def _import_strategy_modules() -> None:
    """Import every public module of this package: each strategy registers itself."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_strategy_modules()
#: Every strategy by its ``smoothing=<name>``: the ones in this package, and any other
#: ``SmoothingStrategy`` or ``Criterion`` subclass with a ``name`` once its module is
#: imported (a live, read-only view of :data:`adaptls.smoothing.base.REGISTRY`).
STRATEGIES = REGISTRY

__all__ = [
    "MDCA",
    "STRATEGIES",
    "ACLSmoothing",
    "AdaFocalLoss",
    "AdaptiveFocalLoss",
    "ClassAdaptiveMarginSmoothing",
    "ClassFigures",
    "ClassFrequencySmoothing",
    "ConfidenceSmoothing",
    "Criterion",
    "DualFocalLoss",
    "EpsilonSchedule",
    "FeedbackSmoothing",
    "FocalLoss",
    "Limits",
    "MarginSmoothing",
    "MaskedSmoothing",
    "MaxSup",
    "NoSmoothing",
    "OnlineSmoothing",
    "SelfDistillSmoothing",
    "SmoothingStrategy",
    "SoftTarget",
    "Strategy",
    "StrategyDriver",
    "UniformSmoothing",
    "ValidationPass",
    "ZipfSmoothing",
    "dense_soft_targets",
    "label_aware_epsilon",
    "linear_soft_target_cross_entropy",
    "soft_target_cross_entropy",
    "soft_targets",
    "zipf_prior",
]
