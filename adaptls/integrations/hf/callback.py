"""The Hugging Face Trainer callback that drives a strategy's lifecycle.

What the Lightning module does for a strategy, from the Trainer's events:

- ``on_train_begin``: set the strategy up (V from the model's output layer when
  :func:`~adaptls.integrations.hf.smoothing_loss` was not given it), check the run's
  length, restore the strategy's state from the checkpoint training resumes from;
- ``on_epoch_begin``: the epoch (``set_epoch``: schedules, ramps over the run);
- ``on_epoch_end``: the end-of-epoch reduction across processes, ``update_state``, the
  reset of per-epoch statistics (a collective: every process reaches it);
- the Trainer's evaluations *during* ``train`` are the strategy's validation passes: the
  loss function sends each evaluation batch to ``observe_validation`` and to a calibration
  suite, and ``on_evaluate`` hands the synced :class:`~adaptls.smoothing.ValidationPass`
  to ``on_validation_end``. An evaluation before the first training step of ``train``
  (``eval_on_start``) and every ``evaluate``/``predict`` outside ``train`` leave the
  strategy alone;
- ``on_save``: the strategy's ``state_dict`` (its declared state) into the checkpoint's
  folder, as :data:`STRATEGY_STATE_FILE`.

Training statistics are observed by the loss function itself (it holds each training
step's logits).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from adaptls.integrations.hf.loss import SmoothingLoss
from adaptls.smoothing import ValidationPass

#: The strategy's state in a checkpoint folder (``checkpoint-<step>/``).
STRATEGY_STATE_FILE = "adaptls_strategy.pt"


class SmoothingCallback(TrainerCallback):
    """Drives the strategy of ``loss`` (the :class:`~adaptls.integrations.hf.SmoothingLoss`
    given to the Trainer as ``compute_loss_func``) through training; see the module
    docstring. ``n_bins``: bins of the validation pass's ECE."""

    def __init__(self, loss: SmoothingLoss, *, n_bins: int = 15) -> None:
        if not isinstance(loss, SmoothingLoss):
            raise TypeError(
                "SmoothingCallback takes the SmoothingLoss given to the Trainer as "
                f"compute_loss_func (smoothing_loss(...)), got {type(loss).__name__}: it "
                "reads the evaluation batches through it"
            )
        self.loss = loss
        self.n_bins = n_bins
        self.max_epochs: int | None = None
        self._trained = False  # a training step of this train() call has run

    @property
    def strategy(self) -> nn.Module:
        return self.loss.strategy

    # ------------------------------------------------------------------ training
    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.loss.is_set_up:
            self.loss.setup(_num_classes(model))
        self.max_epochs = math.ceil(state.num_train_epochs) if state.num_train_epochs else None
        self.loss.driver.check_run_length(self.max_epochs)
        if state.global_step > 0:  # resumed: the checkpoint of this step
            self._restore(args, state)
        self.strategy.to(_device(model))
        self.loss.driver.set_epoch(int(state.epoch or 0), self.max_epochs)
        self._trained = False

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # state.epoch is the float epoch reached; floor: the epoch that starts (or resumes)
        self.loss.driver.set_epoch(int(state.epoch or 0), self.max_epochs)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._trained = True
        if self.loss.validation is None:
            self.loss.start_validation(self.n_bins)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.loss.driver.on_epoch_end()

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.loss.validation = None  # evaluations after train are not validation passes
        self._trained = False

    # ------------------------------------------------------------------ validation
    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        suite = self.loss.validation
        if suite is None or not self._trained or not suite.update_called:
            return
        values = suite.compute()  # synced across processes
        validation = ValidationPass.from_suite(values, suite.per_class())
        self.loss.driver.on_validation_end(validation)
        suite.reset()

    # ------------------------------------------------------------------ checkpoints
    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if args.should_save:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            os.makedirs(folder, exist_ok=True)
            torch.save(self.strategy.state_dict(), os.path.join(folder, STRATEGY_STATE_FILE))

    def _restore(self, args: TrainingArguments, state: TrainerState) -> None:
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        path = os.path.join(folder, STRATEGY_STATE_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"training resumes at global step {state.global_step} but {path} does not "
                "exist: the strategy's state is saved there by SmoothingCallback.on_save "
                "(resume from a checkpoint of output_dir written with the callback)"
            )
        self.strategy.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def _num_classes(model: nn.Module | None) -> int:
    """V: the rows of the model's output layer, else ``config.num_labels``."""
    head = None if model is None else model.get_output_embeddings()
    if head is not None:
        return head.weight.shape[0]
    labels = getattr(getattr(model, "config", None), "num_labels", None)
    if labels is None:
        raise ValueError(
            "cannot tell the number of classes from the model: pass "
            "smoothing_loss(..., num_classes=V)"
        )
    return int(labels)


def _device(model: nn.Module | None) -> torch.device:
    if model is None:
        return torch.device("cpu")
    return next(model.parameters()).device
