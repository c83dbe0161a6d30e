"""The training loader's mid-epoch state: which batches a resumed epoch serves."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import SequentialSampler, TensorDataset

from adaptls.data.base import collate_tuple, epoch_shuffle
from adaptls.data.resumable import ResumableLoader


def _loader(n: int = 50, batch_size: int = 8, done: int = 0, seed: int = 3) -> ResumableLoader:
    dataset = TensorDataset(torch.arange(n))
    return ResumableLoader(
        dataset,
        sampler=epoch_shuffle(dataset, seed),
        batch_size=batch_size,
        collate_fn=collate_tuple,
        batches_done=lambda: done,
    )


def _epoch(loader: ResumableLoader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    return [batch[0].tolist() for batch in loader]


@pytest.mark.parametrize("done", [0, 1, 3, 6, 7])
def test_a_resumed_epoch_serves_exactly_the_batches_not_yet_trained(done: int) -> None:
    full = _epoch(_loader(), 2)
    writer = _loader(done=done)
    writer.sampler.set_epoch(2)
    state = writer.state_dict()
    assert state == {"epoch": 2, "batches": done, "batch_size": 8, "num_replicas": 1}

    resumed = _loader()
    resumed.load_state_dict(state)
    assert _epoch(resumed, 2) == full[done:]
    assert _epoch(resumed, 3) == _epoch(_loader(), 3)  # the next epoch in full


def test_an_epoch_end_state_leaves_the_next_epoch_whole() -> None:
    resumed = _loader()
    resumed.load_state_dict({"epoch": 1, "batches": 7, "batch_size": 8, "num_replicas": 1})
    assert _epoch(resumed, 2) == _epoch(_loader(), 2)


def test_a_mid_epoch_state_from_another_batch_size_is_refused() -> None:
    with pytest.raises(ValueError, match=r"batch_size=16 on 1 process.*batch_size=8 on 1"):
        _loader().load_state_dict({"epoch": 1, "batches": 2, "batch_size": 16, "num_replicas": 1})
    # at an epoch's start nothing is skipped, so any batch size resumes
    _loader().load_state_dict({"epoch": 1, "batches": 0, "batch_size": 16, "num_replicas": 1})


def test_with_another_sampler_it_is_a_plain_loader() -> None:
    dataset = TensorDataset(torch.arange(10))
    loader = ResumableLoader(
        dataset, sampler=SequentialSampler(dataset), batch_size=4, batches_done=lambda: 2
    )
    loader.load_state_dict(loader.state_dict())
    assert [b[0].tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
