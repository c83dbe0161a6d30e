"""Argument checks shared by the model constructors: clear errors at build time."""

from __future__ import annotations

import numbers
from collections.abc import Container, Sequence

from torch import Tensor

from adaptls.checks import check_probability


def check_shape(
    name: str, value: Sequence[int], ndims: Container[int], meaning: str
) -> tuple[int, ...]:
    """A sequence of positive ints whose length is in ``ndims``; ``meaning`` names the axes."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a tuple of positive ints {meaning}, got {value!r}")
    if len(value) not in ndims or not all(_is_int(d) and d > 0 for d in value):
        raise ValueError(f"{name} must be a tuple of positive ints {meaning}, got {value!r}")
    return tuple(int(d) for d in value)


def check_dropout(value: float) -> float:
    """A drop probability in [0, 1): 1 would zero every activation."""
    try:
        return check_probability("dropout", value, include_one=False)
    except TypeError as err:  # a config value: one error type for every bad value
        raise ValueError(str(err)) from None


def check_batch(x: Tensor, input_shape: tuple[int, ...]) -> None:
    """Fail with the expected layout rather than deep inside a layer with a cryptic message."""
    if tuple(x.shape[1:]) != input_shape:
        raise ValueError(
            f"expected a batch of shape (B, {', '.join(map(str, input_shape))}), "
            f"got {tuple(x.shape)}"
        )


def _is_int(value: object) -> bool:
    # numpy ints count (class counts often come from numpy); bool does not, though it
    # subclasses int: True as a width or a class count is always a mistake.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
