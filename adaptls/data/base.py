"""Base class of the in-memory datamodules: validation split, long tail, loaders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset, default_collate

from adaptls.checks import check_choice, check_fraction, check_int, check_real
from adaptls.data.evaluation_sampler import evaluation_share
from adaptls.data.long_tail import PROFILES, long_tail_counts, long_tail_subsample
from adaptls.data.resumable import EpochSampler, ResumableLoader
from adaptls.data.split import stratified_split


class TensorDataModule(pl.LightningDataModule):
    """A classification dataset held as tensors, served as ``(inputs, targets, indices)``.

    Options every datamodule takes (subclasses forward them as ``**kwargs``):
    ``batch_size``, ``num_workers``, ``val_fraction``, ``seed``, ``imbalance_ratio``,
    ``imbalance_profile`` (``exp`` or ``step``) and ``shuffle`` (False: every epoch takes
    the training samples in their stored order, as the MNIST-1D paper's loop does).

    Subclasses set ``num_classes`` and ``input_shape`` in ``__init__`` (both known before
    any data is loaded, so models can be built from them) and implement :meth:`load`, which
    returns the full training and test splits. :meth:`setup` then, with one
    ``torch.Generator`` seeded from ``seed``:

    1. holds out ``val_fraction`` of every class of the training split as the validation set
       (stratified; never from test);
    2. if ``imbalance_ratio > 1``, subsamples the rest per class to the long-tail profile
       :func:`~adaptls.data.long_tail.long_tail_counts` with ``n_max`` = the smallest class
       count left, so the realised counts follow the profile exactly. ``imbalance_ratio = 1``
       keeps the training data as it is.

    Validation and test sets are left balanced. Batches are ``(inputs, targets int64,
    indices int64)``, inputs as :meth:`load` returns them (float32 features for the series
    and images, int64 token ids for text, batched by :meth:`collate_fn`); ``indices`` are
    the positions of the samples within their split (0..len-1), stable for the life of the
    datamodule. Under DDP the validation and test rows are shared by the ranks without
    padding (:class:`~adaptls.data.evaluation_sampler.EvaluationSampler`): each row counts
    once, as in one process. The training loader shuffles with
    :func:`epoch_shuffle`: the order of epoch e depends only on ``seed`` and e (not on the
    global RNG, nor on the number of processes, and it is the same after a resume).

    After ``prepare_data()`` and ``setup()`` (any stage; everything is loaded at once),
    ``class_counts`` (training split, after subsampling) and ``num_train`` are available.
    """

    num_classes: int
    input_shape: tuple[int, ...]
    #: inputs are int64 token ids (text), not float features: nothing can mix them
    token_ids: ClassVar[bool] = False
    #: one target per token (language modelling), not one per example
    token_level: ClassVar[bool] = False

    def __init__(
        self,
        *,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        imbalance_ratio: float = 1.0,
        imbalance_profile: str = "exp",
        shuffle: bool = True,
    ) -> None:
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.num_workers = check_int("num_workers", num_workers, minimum=0)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.seed = check_int("seed", seed, minimum=0)
        self.imbalance_ratio = check_real("imbalance_ratio", imbalance_ratio, minimum=1.0)
        self.imbalance_profile = check_choice("imbalance_profile", imbalance_profile, PROFILES)
        if not isinstance(shuffle, bool):
            raise ValueError(f"shuffle must be true or false, got {shuffle!r}")
        self.shuffle = shuffle
        self.train_dataset: TensorDataset | None = None
        self.val_dataset: TensorDataset | None = None
        self.test_dataset: TensorDataset | None = None

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The full ``(x_train, y_train, x_test, y_test)``; targets int64 in [0, num_classes)."""
        raise NotImplementedError

    def load_validation(self, generator: torch.Generator) -> tuple[Tensor, Tensor] | None:
        """A validation set that does not come out of the training split, or None (the
        default: ``val_fraction`` of the training split is held out)."""
        return None

    def collate_fn(self) -> Callable[[list[Any]], tuple[Tensor, ...]]:
        """Batch collation: stacks samples into the tuple ``(inputs, targets, indices)``."""
        return collate_tuple

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        x, y, x_test, y_test = self.load()
        generator = torch.Generator().manual_seed(self.seed)
        separate = self.load_validation(generator)
        if separate is None:
            train, val = stratified_split(y, self.val_fraction, generator)
        else:
            train = torch.arange(len(y))
        if self.imbalance_ratio > 1:
            available = torch.bincount(y[train], minlength=self.num_classes)
            counts = long_tail_counts(
                int(available.min()), self.num_classes, self.imbalance_ratio, self.imbalance_profile
            )
            train = train[long_tail_subsample(y[train], counts, generator)]
        self.train_dataset = _indexed(x[train], y[train])
        self.val_dataset = _indexed(*separate) if separate is not None else _indexed(x[val], y[val])
        self.test_dataset = _indexed(x_test, y_test)

    def train_dataloader(self) -> DataLoader:
        dataset = self._require(self.train_dataset)
        return self._loader(
            dataset,
            loader=ResumableLoader,
            sampler=epoch_shuffle(dataset, self.seed, self.shuffle),
            batches_done=self._batches_done,
        )

    def val_dataloader(self) -> DataLoader:
        dataset = self._require(self.val_dataset)
        return self._loader(dataset, sampler=evaluation_share(dataset))

    def test_dataloader(self) -> DataLoader:
        dataset = self._require(self.test_dataset)
        return self._loader(dataset, sampler=evaluation_share(dataset))

    # ------------------------------------------------------------------ data facts
    @property
    def class_counts(self) -> list[int]:
        """Samples per class in the training split, after long-tail subsampling."""
        targets = self._require(self.train_dataset).tensors[1]
        return torch.bincount(targets, minlength=self.num_classes).tolist()

    @property
    def num_train(self) -> int:
        """Size of the training split (after the validation hold-out and subsampling)."""
        return len(self._require(self.train_dataset))

    # ------------------------------------------------------------------ helpers
    def _loader(
        self, dataset: TensorDataset, loader: type[DataLoader] = DataLoader, **kwargs: Any
    ) -> DataLoader:
        return loader(
            dataset,
            # Its own generator: creating an iterator then never draws from the global RNG,
            # which an exact resume restores (see adaptls.callbacks.RNGState).
            generator=torch.Generator().manual_seed(self.seed),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn(),
            **kwargs,
        )

    def _batches_done(self) -> int:
        """Training batches of the current epoch the trainer has completed (what a
        mid-epoch checkpoint records, see :class:`~adaptls.data.resumable.ResumableLoader`)."""
        if self.trainer is None:
            return 0
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.completed

    def _require(self, dataset: TensorDataset | None) -> TensorDataset:
        if dataset is None:
            raise RuntimeError(
                f"{type(self).__name__} has no data yet: call prepare_data() and setup() first"
            )
        return dataset


def epoch_shuffle(dataset: TensorDataset, seed: int, shuffle: bool = True) -> EpochSampler:
    """The training order: epoch e is ``randperm(n)`` seeded with ``seed + e`` (or, with
    ``shuffle=False``, ``0..n-1`` every epoch), dealt round-robin to the ranks (one rank
    without a process group).

    So the global batch k (the union over ranks of their batch k) is the same slice of the
    same permutation for any number of processes: DDP on W processes with per-rank batch B
    sees exactly the batches of one process with batch W * B, and a resumed run sees what
    the uninterrupted run saw. Lightning calls ``set_epoch`` every epoch and leaves a
    ``DistributedSampler`` as it is (its own wrapper would reshuffle the positions). A
    run resumed from a mid-epoch checkpoint starts that epoch after the batches it had
    completed (:class:`~adaptls.data.resumable.EpochSampler`).
    """
    replicas, rank = 1, 0
    if dist.is_available() and dist.is_initialized():
        replicas, rank = dist.get_world_size(), dist.get_rank()
    return EpochSampler(dataset, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=seed)


def _indexed(x: Tensor, y: Tensor) -> TensorDataset:
    return TensorDataset(x, y, torch.arange(len(y)))


def collate_tuple(samples: list[tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    """PyTorch's default collation, as a tuple (it gives a list)."""
    return tuple(default_collate(samples))
