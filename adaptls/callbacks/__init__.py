"""Lightning callbacks: temperature scaling, the run's pictures, checkpoints, resume and interrupts."""

from adaptls.callbacks.checkpoint import SharedLastCheckpoint
from adaptls.callbacks.figures import RunFigures
from adaptls.callbacks.interrupt import CheckpointOnInterrupt
from adaptls.callbacks.rng_state import RNGState
from adaptls.callbacks.temperature_scaling import TemperatureScaling

__all__ = [
    "CheckpointOnInterrupt",
    "RNGState",
    "RunFigures",
    "SharedLastCheckpoint",
    "TemperatureScaling",
]
