"""The fused soft-target cross-entropy, on logits or fused with the classifier layer.

Pure PyTorch kernels, the one loss every soft-target strategy trains with:

    loss_i = logsumexp(x_i) - (1 - eps_i) x_i[y_i] - eps_i <u_i, x_i>

- :func:`soft_target_cross_entropy`: on (..., K) logits;
- :func:`linear_soft_target_cross_entropy`: on the classifier layer's inputs
  (z = hidden @ weight.T + bias), rows in chunks, never holding the N x V logits;
- :func:`dense_soft_targets`: the dense target t itself, for analysis and tests.
"""

from adaptls.losses.linear import linear_soft_target_cross_entropy
from adaptls.losses.soft_target import dense_soft_targets, soft_target_cross_entropy

__all__ = ["dense_soft_targets", "linear_soft_target_cross_entropy", "soft_target_cross_entropy"]
