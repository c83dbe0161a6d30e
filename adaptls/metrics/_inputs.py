"""One batch of predictions, prepared once and shared by every metric's update.

Preparing means: flatten (..., K) to (N, K), drop rows whose target is ``ignore_index``,
turn logits into probabilities with ONE softmax and find the top-1 confidence and
correctness with ONE max, chunk of rows by chunk. Everything the metrics need per row is
derived from these, so a suite of metrics costs one softmax, not one each.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from adaptls.checks import check_choice, check_int, check_num_classes

__all__ = [
    "CHUNK_ELEMENTS",
    "CONFIDENCE",
    "CORRECT",
    "COUNT",
    "INPUT_TYPES",
    "MIN_CHUNK_ROWS",
    "Predictions",
    "check_options",
    "iter_predictions",
    "predictions",
]

INPUT_TYPES = ("logits", "probs")
# Probabilities per chunk of rows: bounds every N x K temporary. On CPU 4 MiB of float32:
# an update runs a few dozen ops per chunk at a few us each, which outweighs what smaller,
# cache-sized chunks save (measured with scripts/bench_metrics.py). On accelerators 64 MiB:
# each op is a kernel launch (~5 us) and a pass over 64 MiB takes ~20 us at 3-4 TB/s, so
# launches stay a minor cost, while a (batch, sequence, vocabulary) validation batch still
# never holds more than a few 64 MiB temporaries (not measured on a GPU here).
CHUNK_ELEMENTS = {"cpu": 1 << 20, "other": 1 << 24}
# ... but at least this many rows: every chunk also builds (K, B) tables, which must stay
# small next to the chunk's N x K even for vocabulary-sized K.
MIN_CHUNK_ROWS = 64
# Rows of Predictions.stats, and columns of the bin and class tables summed from it.
COUNT, CONFIDENCE, CORRECT = 0, 1, 2


class Predictions(NamedTuple):
    r"""Rows that count, with their per-row facts. All float tensors share one dtype.

    The working dtype is float64 for float64 input and float32 otherwise (half precision
    inputs are upcast, so sums never accumulate in 16 bits).

    The (N, K) part is kept as the residual :math:`r = p - \mathrm{onehot}(y)`, the
    probabilities with 1 taken off at the true class: every N x K consumer wants exactly
    that (Brier is :math:`\sum r^2`, classwise gaps are sums of :math:`-r`), and its row max
    is the largest probability of the *other* classes, which settles top-1 correctness
    without an argmax pass.
    """

    residual: Tensor  # (N, K) contiguous p - onehot(y)
    targets: Tensor  # (N,) int64 in [0, K)
    # (3, N) rows COUNT (1), CONFIDENCE (top-1 probability max_k p_k) and CORRECT (1.0 where
    # argmax_k p_k, first index on ties, is the target): what bin and class tables sum.
    stats: Tensor
    target_prob: Tensor  # (N,) p_y, the probability of the true class
    target_log_prob: Tensor  # (N,) log p_y, exact from logits even where p_y underflows

    @property
    def confidence(self) -> Tensor:
        """(N,) top-1 probability."""
        return self.stats[CONFIDENCE]

    @property
    def correct(self) -> Tensor:
        """(N,) 1.0 where the top-1 class is the target, else 0.0."""
        return self.stats[CORRECT]


def check_options(num_classes: int, input_type: str, n_bins: int | None = None) -> None:
    """Raise a clear error for a bad constructor argument."""
    check_num_classes(num_classes)
    check_choice("input_type", input_type, INPUT_TYPES)
    if n_bins is not None:
        check_int("n_bins", n_bins, minimum=1)


def iter_predictions(
    preds: Tensor,
    targets: Tensor,
    num_classes: int,
    *,
    input_type: str = "logits",
    ignore_index: int | None = -100,
    validate_args: bool = True,
) -> Iterator[Predictions]:
    """Validate, flatten and filter ``preds`` (..., K) and ``targets`` (...), then yield the
    rows that count as :class:`Predictions`, chunk by chunk (nothing for no rows).

    Chunks of at most ``CHUNK_ELEMENTS`` probabilities (or ``MIN_CHUNK_ROWS`` rows) bound
    every N x K temporary, whatever the batch size (think (batch, sequence, vocabulary)
    logits).
    ``validate_args=False`` skips the value checks (target range, no NaN, probabilities in
    [0, 1] summing to 1), which cost a device-to-host sync each; shape and dtype checks
    always run. Rare rows (a tie for the top, a vanishing p_y) and ``ignore_index`` cost one
    sync per chunk either way.
    """
    _check_shapes(preds, targets, num_classes)
    x = preds.detach().reshape(-1, num_classes)
    y = targets.detach().reshape(-1).long()
    bounds = _bounds(y)
    # One (min, max) read decides both whether any row is ignored and whether all are valid.
    if ignore_index is not None and bounds[0] <= ignore_index <= bounds[1]:
        keep = y != ignore_index
        x, y = x[keep], y[keep]
        bounds = _bounds(y)
    if validate_args and not (bounds[0] >= 0 and bounds[1] < num_classes):
        bad = (y < 0) | (y >= num_classes)
        raise ValueError(
            f"targets must be class indices in [0, {num_classes}) or ignore_index; "
            f"got {sorted(set(y[bad][:8].tolist()))}"
        )
    budget = CHUNK_ELEMENTS["cpu" if x.device.type == "cpu" else "other"]
    rows = max(MIN_CHUNK_ROWS, budget // num_classes)
    for start in range(0, y.numel(), rows):
        yield predictions(
            x[start : start + rows], y[start : start + rows], input_type, validate_args
        )


def predictions(x: Tensor, y: Tensor, input_type: str, validate_args: bool = True) -> Predictions:
    """:class:`Predictions` of (N, K) logits or probabilities ``x`` and (N,) int64 targets."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if input_type == "logits":
        residual = torch.softmax(x.contiguous(), dim=-1, dtype=dtype)
    else:
        # A copy even when the dtype matches: the residual is formed in place.
        residual = x.to(dtype, memory_format=torch.contiguous_format, copy=True)
        if validate_args:
            _check_probs(residual, x.dtype)
    column = y.unsqueeze(1)
    target_prob = residual.gather(1, column)
    residual.scatter_(1, column, target_prob - 1)
    target_prob = target_prob.squeeze(1)
    # p_y - 1 <= 0 <= every other p_k, so the row max of the residual is the largest OTHER
    # probability: the true class is top-1 iff p_y beats it, and the larger is the confidence.
    rival = residual.amax(dim=1)
    stats = residual.new_ones(3, y.numel())
    confidence = torch.maximum(target_prob, rival, out=stats[CONFIDENCE])
    torch.gt(target_prob, rival, out=stats[CORRECT])
    # A NaN anywhere in a row (NaN or +inf logits) makes its max NaN: one cheap (N,) check.
    if validate_args and bool(confidence.isnan().any()):
        raise ValueError(
            f"preds contain NaN (or +inf logits) in {int(confidence.isnan().sum())} rows"
        )
    tiny = torch.finfo(dtype).tiny
    target_log_prob = target_prob.log() if input_type == "logits" else target_prob.clamp(tiny).log()
    # Rare rows take an exact path: the true class ties for the top (the first index wins,
    # like torch.argmax), or (logits) p_y is below tiny / eps, where it has lost precision
    # or underflowed and log p_y must come from the logits.
    rare = target_prob == rival
    if input_type == "logits":
        rare |= target_prob < tiny / torch.finfo(dtype).eps
    rows = rare.nonzero().squeeze(1)
    if rows.numel() > 0:
        probs = residual[rows].scatter_(1, column[rows], target_prob[rows].unsqueeze(1))
        top = probs.argmax(dim=1)
        stats[CORRECT, rows] = (top == y[rows]).to(dtype)
        if input_type == "logits":
            # log p_y = x_y - logsumexp(x) = x_y - x_top + log p_top, with p_top >= 1/K.
            gap = x[rows, y[rows]].to(dtype) - x[rows, top].to(dtype)
            target_log_prob[rows] = gap + confidence[rows].log()
    return Predictions(residual, y, stats, target_prob, target_log_prob)


def _bounds(y: Tensor) -> tuple[int, int]:
    """(min, max) of the targets in one host read; (0, -1) for none."""
    if y.numel() == 0:
        return 0, -1
    low, high = torch.aminmax(y)
    return tuple(torch.stack((low, high)).tolist())


def _check_shapes(preds: Tensor, targets: Tensor, num_classes: int) -> None:
    if not torch.is_tensor(preds) or not preds.is_floating_point():
        raise TypeError(
            f"preds must be a floating-point tensor (logits or probabilities), "
            f"got {getattr(preds, 'dtype', type(preds))}"
        )
    if not torch.is_tensor(targets) or targets.is_floating_point() or targets.is_complex():
        raise TypeError(
            f"targets must be an integer tensor, got {getattr(targets, 'dtype', type(targets))}"
        )
    if preds.dim() < 1 or preds.shape[-1] != num_classes or preds.shape[:-1] != targets.shape:
        raise ValueError(
            f"preds must have shape (..., {num_classes}) and targets its leading shape (...); "
            f"got preds {tuple(preds.shape)} and targets {tuple(targets.shape)}"
        )


def _check_probs(probs: Tensor, input_dtype: torch.dtype) -> None:
    if probs.numel() == 0:
        return
    low, high = float(probs.min()), float(probs.max())
    if not (low >= 0.0 and high <= 1.0):  # also catches NaN
        raise ValueError(
            f"with input_type='probs', preds must lie in [0, 1]; got values in [{low}, {high}]"
        )
    # Half-precision probabilities of many classes legitimately sum a little off 1.
    tolerance = max(1e-3, probs.shape[-1] * torch.finfo(input_dtype).eps)
    error = float((probs.sum(dim=-1) - 1).abs().max())
    if error > tolerance:
        raise ValueError(
            f"with input_type='probs', each row of preds must sum to 1 (within {tolerance:g}); "
            f"got a row off by {error:g}. Pass input_type='logits' for unnormalised scores."
        )
