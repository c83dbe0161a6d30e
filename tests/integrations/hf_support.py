"""Tiny randomly initialised Hugging Face models built from configs (no hub download), token
data with padding, and a Trainer factory for the integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    T5Config,
    T5ForConditionalGeneration,
    Trainer,
    TrainingArguments,
)

from adaptls.integrations.hf import SmoothingCallback, SmoothingLoss

VOCAB = 48
LENGTH = 10


def gpt2(seed: int = 0) -> GPT2LMHeadModel:
    """A one-layer GPT-2 without dropout (so runs are deterministic)."""
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=LENGTH,
        n_embd=16,
        n_layer=1,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config)


def t5(seed: int = 0) -> T5ForConditionalGeneration:
    """A one-layer T5 (encoder and decoder) without dropout."""
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=VOCAB,
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5ForConditionalGeneration(config)


class TokenRows(Dataset):
    """``rows`` random token sequences; row i's labels are -100 past a length that varies
    from row to row (the padding of a real batch), so micro-batches hold different numbers
    of counted labels."""

    def __init__(self, rows: int = 16, seed: int = 0, seq2seq: bool = False) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.inputs = torch.randint(2, VOCAB, (rows, LENGTH), generator=generator)
        self.labels = torch.randint(2, VOCAB, (rows, LENGTH), generator=generator)
        if not seq2seq:  # a causal LM predicts its own next tokens
            self.labels = self.inputs.clone()
        for i in range(rows):
            self.labels[i, 3 + (i * 5) % (LENGTH - 3) :] = -100
        self.seq2seq = seq2seq

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.batch().items()}

    def batch(self) -> dict[str, torch.Tensor]:
        batch = {"input_ids": self.inputs, "labels": self.labels}
        if self.seq2seq:
            # what DataCollatorForSeq2Seq gives the decoder: the labels shifted right
            # behind the start token (0), padding as the pad token (0)
            start = torch.zeros_like(self.labels[:, :1])
            batch["decoder_input_ids"] = torch.cat([start, self.labels[:, :-1]], 1).clamp(min=0)
        return batch

    def class_counts(self) -> torch.Tensor:
        """Training labels per token id (what class-frequency smoothing needs)."""
        labels = self.labels[self.labels >= 0]
        return torch.bincount(labels, minlength=VOCAB) + 1


def arguments(out: Path, **overrides: Any) -> TrainingArguments:
    """CPU, no reporting, no dropout of rows, deterministic order, no clipping."""
    options: dict[str, Any] = {
        "output_dir": str(out),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "num_train_epochs": 1,
        "learning_rate": 1e-2,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "logging_strategy": "no",
        "seed": 0,
        "data_seed": 0,
    }
    options.update(overrides)
    return TrainingArguments(**options)


def trainer(
    model: torch.nn.Module,
    out: Path,
    loss: SmoothingLoss | None = None,
    train: Dataset | None = None,
    evaluation: Dataset | None = None,
    **overrides: Any,
) -> Trainer:
    """A Trainer with ``loss`` as its compute_loss_func and the strategy's callback."""
    callbacks = [] if loss is None else [SmoothingCallback(loss)]
    return Trainer(
        model=model,
        args=arguments(out, **overrides),
        train_dataset=train,
        eval_dataset=evaluation,
        compute_loss_func=loss,
        callbacks=callbacks,
    )
