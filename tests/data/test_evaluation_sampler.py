"""EvaluationSampler: the ranks' shares of an evaluation split hold every row once."""

from __future__ import annotations

import pytest
from torch.utils.data import DistributedSampler

from adaptls.data.evaluation_sampler import EvaluationSampler, evaluation_share


@pytest.mark.parametrize(("rows", "ranks"), [(301, 2), (301, 3), (203, 3), (7, 7), (1000, 3)])
def test_shares_hold_every_row_once_and_differ_by_at_most_one(rows, ranks):
    shares = [list(EvaluationSampler(range(rows), ranks, rank)) for rank in range(ranks)]
    assert sorted(i for share in shares for i in share) == list(range(rows))
    assert [len(s) for s in shares] == [
        len(EvaluationSampler(range(rows), ranks, r)) for r in range(ranks)
    ]
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_lightning_keeps_it_as_a_distributed_sampler():
    """Lightning replaces an evaluation loader's sampler under DDP unless it is one."""
    assert isinstance(EvaluationSampler(range(5), 2, 1), DistributedSampler)


def test_without_a_process_group_one_share_holds_the_split_in_order():
    assert list(evaluation_share(range(5))) == [0, 1, 2, 3, 4]


def test_a_split_smaller_than_the_processes_is_refused():
    with pytest.raises(ValueError, match="2 rows cannot be shared by 3 processes"):
        EvaluationSampler(range(2), 3, 0)
