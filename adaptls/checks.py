"""Argument checks shared by every part of adaptls, and the atomic file writer and linker.

Each check returns the value in its canonical Python type and raises a ``ValueError`` (or
``TypeError`` where the type is wrong) whose message names the argument, the bad value
and what is allowed, e.g. ``num_classes must be an int >= 2, got 1``.

Conventions, the same everywhere:

- integers: any ``numbers.Integral`` (Python and NumPy ints, 0-d integer tensors via
  ``operator.index``) except ``bool``: ``True`` as a class count is always a mistake;
- real numbers: any ``numbers.Real`` (NumPy floats included) except ``bool``;
- choices: ``"<name> must be one of 'a', 'b'; got 'c'"``.

Only the standard library and torch are imported here: ``adaptls.smoothing`` (pure
PyTorch) uses these checks too.
"""

from __future__ import annotations

import math
import operator
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from numbers import Real
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """An integer (not a bool), ``>= minimum`` when given."""
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or isinstance(value, bool) or (minimum is not None and number < minimum):
        allowed = "an int" if minimum is None else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return number


def check_num_classes(value: Any) -> int:
    """The number of classes K: an int >= 2."""
    return check_int("num_classes", value, minimum=2)


def check_class_counts(
    class_counts: Sequence[int] | Tensor, num_classes: int | None = None
) -> Tensor:
    """Training samples per class: a 1-d sequence of whole numbers >= 0 (one per class when
    ``num_classes`` is given), returned as a CPU int64 tensor."""
    try:
        counts = torch.as_tensor(class_counts).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"class_counts must be a 1-d sequence of counts, got {class_counts!r}"
        ) from None
    if counts.dtype == torch.bool or counts.is_complex():
        raise ValueError(f"class_counts must be whole numbers >= 0, got {class_counts!r}")
    if num_classes is not None and (counts.dim() != 1 or counts.numel() != num_classes):
        raise ValueError(
            f"class_counts must have one entry per class ({num_classes}), "
            f"got shape {tuple(counts.shape)}"
        )
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(
            f"class_counts must be a non-empty 1-d sequence, got shape {tuple(counts.shape)}"
        )
    bad = ~(counts >= 0)  # NaN counts as bad
    if counts.is_floating_point():
        bad |= counts != counts.round()
    if bad.any():
        c = int(bad.nonzero()[0])
        raise ValueError(
            f"class_counts must be whole numbers >= 0, got {counts[c].item()!r} for class {c}"
        )
    return counts.to(torch.long)


def _real(name: str, value: Any, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {allowed}, got {value!r}")
    return float(value)


def check_probability(name: str, value: Any, *, include_one: bool = True) -> float:
    """A number in [0, 1] (``include_one=False``: [0, 1), e.g. a smoothing amount, where 1
    would erase the label)."""
    allowed = "a number in [0, 1]" if include_one else "a number in [0, 1)"
    number = _real(name, value, allowed)
    if not (0.0 <= number <= 1.0) or (number == 1.0 and not include_one):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return number


def check_fraction(name: str, value: Any) -> float:
    """A number in the open interval (0, 1) (a split fraction)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def check_real(
    name: str, value: Any, *, minimum: float | None = None, strict: bool = False
) -> float:
    """A finite real number, ``>= minimum`` (``> minimum`` when ``strict``) when given."""
    relation = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number{relation}, got {value!r}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise ValueError(f"{name} must be{relation}, got {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """A number > 0 (an exponent, a temperature)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value: Any) -> float:
    """A number >= 0 (a focal exponent, a penalty weight, a margin)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """One of the ``allowed`` names."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """A real bool: a stray string such as ``"false"`` would otherwise be truthy."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on a clean exit flush, fsync, rename it to
    ``path`` and fsync the directory.

    A crash or an exception at any point leaves ``path`` as it was (complete or absent) and
    no temporary file behind. The temporary file lives in the same directory because
    ``os.replace`` is atomic only within one file system (a move from the system temp
    directory is a copy whenever that is another file system).

    The file ends with the permissions a plain ``open(path, "w")`` of a new file gives,
    ``0o666 & ~umask`` (0644 under the usual umask 022), not ``mkstemp``'s private 0600:
    results on a shared cluster stay readable to the user's group like every other output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        os.chmod(temporary, 0o666 & ~_current_umask())
        with os.fdopen(fd, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _current_umask() -> int:
    """The process umask: read from ``/proc/self/status`` on Linux (no change to the
    process). Elsewhere the only way is to set it and set it back; a file another thread
    creates in between gets the stricter 0o077, never a looser mode."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (directories cannot be opened on Windows: skip)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
