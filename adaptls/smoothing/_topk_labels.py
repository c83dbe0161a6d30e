r"""Per-class soft labels kept as their k largest entries plus a uniform rest: O(K k) memory.

Online label smoothing learns one soft label per class, a K x K matrix: 4 GB in float32 at
a vocabulary of K = 32000. The top-k form keeps, for each class c, the k largest entries
of its learned label :math:`S_c` and spreads the remaining mass uniformly over the other
classes:

.. math::
    \tilde S_{cj} = S_{cj} \text{ for } j \in T_c \;(|T_c| \le k), \qquad
    \tilde S_{cj} = \sigma_c = \frac{1 - \sum_{j \in T_c} S_{cj}}{K - |T_c|} \text{ otherwise},

stored as indices :math:`T_c` (K, k), deltas :math:`\delta_{cj} = S_{cj} - \sigma_c` on
:math:`T_c` (0 on unused entries) and the shares :math:`\sigma` (K,). Exact when k = K.

The loss never expands :math:`\tilde S` either. With :math:`a_c = K \sigma_c` and
:math:`s_c = \sum_j \delta_{cj}` (so :math:`a_c + s_c = 1`), the soft target
:math:`t_i = (1-\varepsilon)\,\mathrm{onehot}(y) + \varepsilon \tilde S_y` splits into a
uniform-smoothed target with per-row epsilon :math:`\varepsilon a_y` and a part that sums
to zero, :math:`\varepsilon(\delta_y - s_y\,\mathrm{onehot}(y))`, whose cross-entropy is
linear in the logits (the log-sum-exp cancels):

.. math::
    \ell_i = \mathrm{CE}_{\varepsilon a_{y_i}}(z_i, y_i)
             - \varepsilon \Big(\sum_j \delta_{y_i j}\, z_{i T_{y_i j}} - s_{y_i} z_{i y_i}\Big).

The first term is the fused loss with a uniform prior (O(N D) smoothing cost through the
linear path); the second reads k + 1 logits per row (:math:`z_{ij} = h_i \cdot W_j + b_j`:
O(N k D) through the linear path, by ``embedding_bag``, no N x k x D temporary).

Learning :math:`S` without a K x K accumulator: each class keeps ``slots`` (>= k) running
sums of probabilities by class index. Observed rows contribute their top-``slots``
probabilities; pending contributions are merged into the slots (summing equal indices,
keeping each class's largest sums) with fixed-shape operations, no host sync. Mass that
falls out of the slots ends up in the uniform rest. With slots = K (k = K) nothing is
dropped and the result is the dense mean.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class TopKLabels(NamedTuple):
    """Soft labels in top-k form (see the module docstring)."""

    index: Tensor  # (K, k) int64 class indices T_c (0 where unused)
    delta: Tensor  # (K, k) S_cj - share_c on T_c, 0 where unused
    share: Tensor  # (K,) the value of every class outside T_c

    @classmethod
    def uniform(cls, num_classes: int, k: int, learned: bool) -> TopKLabels:
        """1/K everywhere (``learned``) or all zero (the official init: not yet learned)."""
        share = torch.full((num_classes,), 1.0 / num_classes if learned else 0.0)
        return cls(
            torch.zeros(num_classes, k, dtype=torch.long), torch.zeros(num_classes, k), share
        )

    def dense(self, rows: Tensor | None = None) -> Tensor:
        """The labels of ``rows`` (default: all classes) as dense (., K) rows: analysis
        and small K only."""
        index, delta, share = self
        if rows is not None:
            index, delta, share = index[rows], delta[rows], share[rows]
        k = self.share.numel()
        out = share.unsqueeze(1).expand(-1, k).clone()
        return out.scatter_add_(1, index, delta)

    def diagonal(self) -> Tensor:
        """S_cc for every class, (K,)."""
        c = torch.arange(self.share.numel(), device=self.share.device).unsqueeze(1)
        return self.share + torch.where(self.index == c, self.delta, 0.0).sum(1)


def merge_slots(
    slot_index: Tensor, slot_value: Tensor, classes: Tensor, index: Tensor, value: Tensor
) -> tuple[Tensor, Tensor]:
    """Add ``value`` at (``classes``, ``index``) (flat, equal lengths; class K = drop) to
    the (K, m) slots (index K = empty slot), summing equal pairs, then keep each class's
    m largest sums. Fixed shapes throughout: no host sync."""
    num_classes, m = slot_index.shape
    base = num_classes + 1  # entry index K marks an empty slot
    own = torch.arange(num_classes, device=slot_index.device).unsqueeze(1)
    keys = torch.cat([(own * base + slot_index).reshape(-1), classes * base + index])
    values = torch.cat([slot_value.reshape(-1), value.to(slot_value.dtype)])
    keys, order = keys.sort()
    values = values[order]
    # one group per distinct (class, index): its id, sum and key
    starts = torch.ones_like(keys, dtype=torch.bool)
    starts[1:] = keys[1:] != keys[:-1]
    group = starts.cumsum(0) - 1
    total = keys.numel()
    sums = torch.zeros(total, dtype=values.dtype, device=values.device).index_add_(0, group, values)
    dropped = num_classes * base  # class K: unused groups and dropped contributions
    group_keys = torch.full_like(keys, dropped).scatter_(0, group, keys)
    group_class = group_keys // base
    # rank groups within their class by decreasing sum (two stable sorts)
    by_sum = torch.argsort(-sums, stable=True)
    order = by_sum[torch.argsort(group_class[by_sum], stable=True)]
    group_class, sums, group_keys = group_class[order], sums[order], group_keys[order]
    per_class = torch.zeros(num_classes + 1, dtype=torch.long, device=keys.device)
    per_class.index_add_(0, group_class, torch.ones_like(group_class))
    first = per_class.cumsum(0) - per_class
    rank = torch.arange(total, device=keys.device) - first[group_class]
    keep = (rank < m) & (group_class < num_classes)
    spare = num_classes * m  # one scratch position for everything not kept
    position = torch.where(keep, group_class * m + rank, spare)
    new_value = torch.zeros(spare + 1, dtype=slot_value.dtype, device=slot_value.device)
    new_index = torch.full((spare + 1,), num_classes, dtype=torch.long, device=keys.device)
    new_value.scatter_(0, position, torch.where(keep, sums, 0.0))
    new_index.scatter_(0, position, torch.where(keep, group_keys % base, num_classes))
    return new_index[:spare].view(num_classes, m), new_value[:spare].view(num_classes, m)


def labels_from_slots(slot_index: Tensor, slot_sum: Tensor, count: Tensor, k: int) -> TopKLabels:
    """The top-k labels of the slot means (sum / count); classes never counted get the
    uniform 1/K (as the dense online smoothing does)."""
    num_classes = slot_index.shape[0]
    used = slot_index < num_classes
    mean = slot_sum / count.clamp(min=1).unsqueeze(1)
    top, position = torch.where(used, mean, float("-inf")).topk(k, dim=1)
    kept = torch.isfinite(top) & (count > 0).unsqueeze(1)
    value = torch.where(kept, top, 0.0)
    index = torch.where(kept, slot_index.gather(1, position), 0)
    others = num_classes - kept.sum(1)
    rest = (1.0 - value.sum(1)).clamp(min=0.0)
    share = torch.where(others > 0, rest / others.clamp(min=1), 0.0)
    share = torch.where(count > 0, share, 1.0 / num_classes)
    delta = torch.where(kept, value - share.unsqueeze(1), 0.0)
    return TopKLabels(index, delta.float(), share.float())


def sparse_logit_term(labels: TopKLabels, rows: Tensor, logits: Tensor) -> Tensor:
    """sum_j delta_{y j} z_{T_{y j}} - s_y z_y for (N, K) logits and (N,) classes ``rows``."""
    index, weight = _bags(labels, rows, logits.dtype)
    return (weight * logits.gather(1, index)).sum(1)


def sparse_linear_term(
    labels: TopKLabels, rows: Tensor, hidden: Tensor, weight: Tensor, bias: Tensor | None
) -> Tensor:
    """:func:`sparse_logit_term` of the logits h W^T + b, from k + 1 weight rows per row:
    one ``embedding_bag`` sums the weighted rows of W (no N x (k + 1) x D temporary, and
    one V x D gradient)."""
    index, bag_weight = _bags(labels, rows, weight.dtype)
    mixed = F.embedding_bag(index, weight, per_sample_weights=bag_weight, mode="sum")
    term = (hidden * mixed).sum(1)
    if bias is not None:
        term = term + (bag_weight * bias[index]).sum(1)
    return term


def _bags(labels: TopKLabels, rows: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Per row, the k + 1 classes and weights of the term: T_y with delta_y, and y with
    -s_y (N, k + 1)."""
    delta = labels.delta[rows].to(dtype)
    index = torch.cat([labels.index[rows], rows.unsqueeze(1)], dim=1)
    return index, torch.cat([delta, -delta.sum(1, keepdim=True)], dim=1)
