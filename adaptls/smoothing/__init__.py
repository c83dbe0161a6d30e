"""Label smoothing strategies and the fused soft-target loss. Pure PyTorch.

>>> from adaptls.smoothing import UniformSmoothing
>>> s = UniformSmoothing(epsilon=0.1)
>>> s.setup(num_classes=10)
>>> loss = s(logits, targets)  # doctest: +SKIP
"""

from adaptls.smoothing.base import SmoothingStrategy, SoftTarget
from adaptls.smoothing.class_frequency import ClassFrequencySmoothing, label_aware_epsilon
from adaptls.smoothing.confidence import ConfidenceSmoothing
from adaptls.smoothing.feedback import FeedbackSmoothing
from adaptls.smoothing.functional import dense_soft_targets, soft_target_cross_entropy
from adaptls.smoothing.none import NoSmoothing
from adaptls.smoothing.online import OnlineSmoothing
from adaptls.smoothing.schedule import EpsilonSchedule
from adaptls.smoothing.self_distill import SelfDistillSmoothing
from adaptls.smoothing.uniform import UniformSmoothing

STRATEGIES: dict[str, type[SmoothingStrategy]] = {
    cls.name: cls
    for cls in (
        NoSmoothing,
        UniformSmoothing,
        ConfidenceSmoothing,
        ClassFrequencySmoothing,
        OnlineSmoothing,
        FeedbackSmoothing,
        SelfDistillSmoothing,
    )
}

__all__ = [
    "STRATEGIES",
    "ClassFrequencySmoothing",
    "ConfidenceSmoothing",
    "EpsilonSchedule",
    "FeedbackSmoothing",
    "NoSmoothing",
    "OnlineSmoothing",
    "SelfDistillSmoothing",
    "SmoothingStrategy",
    "SoftTarget",
    "UniformSmoothing",
    "dense_soft_targets",
    "label_aware_epsilon",
    "soft_target_cross_entropy",
]
