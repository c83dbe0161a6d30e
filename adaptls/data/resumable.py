"""A training loader that resumes part-way through an epoch (Lightning's stateful loaders).

Lightning 2.x saves ``state_dict()`` of every training DataLoader that has one in each
checkpoint (``fit_loop.on_save_checkpoint``) and, when fit restarts from it, calls
``load_state_dict`` before the epoch's first batch is drawn (``FitLoop.setup_data``,
then ``set_epoch``). A loader without them restarts an interrupted epoch from its first
batch, so a run resumed from a mid-epoch checkpoint (Ctrl-C, SIGTERM) trains again on the
batches it had already trained on and never on the epoch's last ones.

Here the state is the epoch and the number of its batches the trainer completed (read from
the trainer when the checkpoint is written: not counted per step, and right whatever the
workers or Lightning's fetcher had prefetched). On resume the sampler drops that many
batches from that epoch's permutation, once; every other epoch is served in full.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import DataLoader, DistributedSampler


class EpochSampler(DistributedSampler):
    """A ``DistributedSampler`` (the order of :func:`~adaptls.data.base.epoch_shuffle`)
    that can start one epoch after its first ``skip`` samples (:meth:`resume_at`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resume: tuple[int, int] | None = None  # (epoch, samples of it to drop)

    def resume_at(self, epoch: int, skip: int) -> None:
        """Drop the first ``skip`` samples (of this rank) the next time epoch ``epoch`` is
        iterated, if it is the next epoch iterated (an epoch-end checkpoint's epoch is not:
        the run goes on with the next one, in full)."""
        self._resume = (int(epoch), int(skip))

    def __iter__(self) -> Iterator[int]:
        indices = super().__iter__()
        resume, self._resume = self._resume, None
        if resume is not None and resume[0] == self.epoch:
            return itertools.islice(indices, resume[1], None)
        return indices


class ResumableLoader(DataLoader):
    """A DataLoader over an :class:`EpochSampler` whose ``state_dict`` records where in
    the epoch the trainer is; ``batches_done()`` gives the batches of the current epoch
    the trainer has completed (0 outside a trainer).

    Lightning may rebuild it with another sampler (``overfit_batches`` takes a
    ``SequentialSampler``): it then serves every epoch in full, as a DataLoader does.
    """

    def __init__(self, *args: Any, batches_done: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches_done = batches_done

    def state_dict(self) -> dict[str, int]:
        sampler = self.sampler
        return {
            "epoch": int(getattr(sampler, "epoch", 0)),
            "batches": int(self._batches_done()),
            "batch_size": int(self.batch_size or 1),
            "num_replicas": int(getattr(sampler, "num_replicas", 1)),
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if not isinstance(self.sampler, EpochSampler):
            return
        saved = (state_dict["batch_size"], state_dict["num_replicas"])
        now = (int(self.batch_size or 1), self.sampler.num_replicas)
        if state_dict["batches"] and saved != now:
            raise ValueError(
                f"the checkpoint was written mid-epoch (after {state_dict['batches']} batches "
                f"of epoch {state_dict['epoch']}) by a run with batch_size={saved[0]} on "
                f"{saved[1]} process(es); this run has batch_size={now[0]} on {now[1]}: "
                "resume with the same batch size and number of processes, or from an "
                "epoch-end checkpoint"
            )
        self.sampler.resume_at(state_dict["epoch"], state_dict["batches"] * now[0])
