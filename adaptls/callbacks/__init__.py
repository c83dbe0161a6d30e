"""Lightning callbacks: temperature scaling, the run's pictures, resume and interrupts."""

from adaptls.callbacks.figures import RunFigures
from adaptls.callbacks.interrupt import CheckpointOnInterrupt
from adaptls.callbacks.rng_state import RNGState
from adaptls.callbacks.temperature_scaling import TemperatureScaling

__all__ = [
    "CheckpointOnInterrupt",
    "RNGState",
    "RunFigures",
    "TemperatureScaling",
]
