r"""Masked label smoothing (Chen et al., ACL 2022): smoothing mass only on the target
language's side of a joint vocabulary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from adaptls.smoothing.base import Limits, SmoothingStrategy, SoftTarget, check_epsilon


class MaskedSmoothing(SmoothingStrategy):
    r"""Uniform smoothing over the classes that occur as training targets only.

    With a vocabulary shared by source and target languages, uniform smoothing puts mass
    on source-language tokens that never appear in a translation. MLS masks them: with
    :math:`M` the target side of the vocabulary and :math:`y \in M`,

    .. math::
        t_y = 1 - e, \qquad t_k = \frac{e}{|M| - 1}\ (k \in M,\ k \ne y), \qquad
        t_k = 0\ (k \notin M),

    the fairseq convention restricted to :math:`M`, as the authors' criterion computes it
    (``masked_label_smoothed_cross_entropy``: :math:`(1 - e - e_i)\,\mathrm{nll} + e_i
    \sum_{k \in M} -\log p_k` with :math:`e_i = e/(|M|-1)`). It is trained as a soft
    target of amount :math:`e' = e |M|/(|M|-1)` with the prior :math:`u = 1_M / |M|`
    (a shared (K,) prior: the fused linear path serves it without the logits).

    :math:`M` is read from the training counts given to :meth:`setup`: the classes with a
    non-zero count, i.e. the tokens of the target side of the training data (the authors
    build it from the target side's dictionary, which fairseq also fills from the training
    targets, plus its four special symbols; here the end token is in :math:`M` because it
    is a target, padding and the others are not). A target outside :math:`M` (a token the
    training targets never hold) still gets a target that sums to one,
    :math:`1 - e'` on it and :math:`e'/|M|` on :math:`M`; the authors' formula assumes
    none. With every class in :math:`M` (classification, balanced or not) this is uniform
    smoothing in the fairseq convention.
    """

    name: ClassVar[str] = "masked"
    limits = Limits(linear=None)  # smoothing reads no logit values
    prior: Tensor

    def __init__(self, epsilon: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = check_epsilon("epsilon", epsilon)
        # Derived from the counts at setup(), so not part of the checkpoint.
        self.register_buffer("prior", torch.empty(0), persistent=False)
        self.masked_size = 0

    def setup(self, num_classes: int, class_counts: Sequence[int] | Tensor | None = None) -> None:
        if class_counts is None:
            raise ValueError(
                "MaskedSmoothing needs class_counts (its mask is the classes the training "
                "targets hold); pass setup(num_classes=..., class_counts=[...])"
            )
        super().setup(num_classes, class_counts)
        mask = self.class_counts > 0
        size = int(mask.sum())
        if size < 2:
            raise ValueError(
                f"MaskedSmoothing needs at least 2 classes with training targets, got {size}"
            )
        if self.epsilon > (size - 1) / size:
            raise ValueError(
                f"epsilon={self.epsilon} is more than (|M|-1)/|M| = {(size - 1) / size:.4g} "
                f"for the |M|={size} target classes: the true class would get less than the "
                "others"
            )
        self.masked_size = size
        self.prior = (mask.double() / size).to(self.prior.device)

    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        if self.masked_size == 0:
            raise RuntimeError("MaskedSmoothing needs class_counts: call setup() first")
        size = self.masked_size
        epsilon = min(1.0, self.epsilon * size / (size - 1))
        # float32 at least (the loss's accumulation type), float64 for float64 logits
        dtype = torch.promote_types(logits.dtype, torch.float32)
        return SoftTarget(epsilon, self.prior.to(logits.device, dtype))

    def log_values(self) -> dict[str, float]:
        return {"smoothing/epsilon": self.epsilon * self.schedule_factor}

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "smoothing/masked_classes": self.masked_size}
