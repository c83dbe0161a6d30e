"""Lightning callbacks: temperature scaling and the run's pictures."""

from adaptls.callbacks.figures import RunFigures
from adaptls.callbacks.temperature_scaling import TemperatureScaling

__all__ = ["RunFigures", "TemperatureScaling"]
