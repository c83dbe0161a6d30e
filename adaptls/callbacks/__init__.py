"""Lightning callbacks: temperature scaling, translation scores, the run's pictures, resume and interrupts."""

from adaptls.callbacks.figures import RunFigures
from adaptls.callbacks.interrupt import CheckpointOnInterrupt
from adaptls.callbacks.rng_state import RNGState
from adaptls.callbacks.temperature_scaling import TemperatureScaling
from adaptls.callbacks.translation import TranslationMetrics

__all__ = [
    "CheckpointOnInterrupt",
    "RNGState",
    "RunFigures",
    "TemperatureScaling",
    "TranslationMetrics",
]
