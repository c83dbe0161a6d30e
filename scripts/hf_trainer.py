"""Fine-tune a causal LM with an adaptls strategy inside the Hugging Face Trainer.

    python scripts/hf_trainer.py --strategy online --epochs 2
    python scripts/hf_trainer.py --strategy uniform --set epsilon=0.1 --accumulate 4 --linear
    python scripts/hf_trainer.py --model gpt2 --strategy confidence   # a hub model (downloads)

Without ``--model`` the model is a tiny GPT-2 built from a config (random weights, no
download) over bytes (V = 256), trained on Python's own standard-library source; with it,
the hub model and its tokenizer. ``--linear`` trains through the fused linear path (the
(B, T, V) logits are never formed in training). Prints the evaluation loss and the
strategy's figures after training.
"""

from __future__ import annotations

import argparse
import inspect
import os
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from adaptls.integrations.hf import SmoothingCallback, smoothing_loss
from adaptls.smoothing import STRATEGIES


class Blocks(Dataset):
    """Consecutive blocks of ``length`` token ids; labels are the inputs (the model shifts)."""

    def __init__(self, ids: torch.Tensor, length: int) -> None:
        self.blocks = ids[: len(ids) // length * length].view(-1, length)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def local_text() -> bytes:
    """The standard library's ``inspect`` and ``argparse`` sources."""
    return b"".join(Path(m.__file__).read_bytes() for m in (inspect, argparse))


def parse_value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="uniform", choices=sorted(STRATEGIES))
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="the strategy's hyperparameters"
    )
    parser.add_argument("--model", default=None, help="a hub causal LM (default: tiny GPT-2)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--accumulate", type=int, default=1, help="gradient accumulation steps")
    parser.add_argument("--length", type=int, default=64, help="tokens per block")
    parser.add_argument("--tokens", type=int, default=20_000, help="training tokens")
    parser.add_argument("--linear", action="store_true", help="the fused linear path")
    parser.add_argument("--output-dir", default=None)
    args = parser.parse_args()

    if args.model is None:
        torch.manual_seed(0)
        config = GPT2Config(
            vocab_size=256,
            n_positions=args.length,
            n_embd=32,
            n_layer=1,
            n_head=2,
            bos_token_id=0,
            eos_token_id=0,
        )
        model = GPT2LMHeadModel(config)
        ids = torch.tensor(list(local_text()[: args.tokens + args.tokens // 10]))
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(args.model)
        tokens = AutoTokenizer.from_pretrained(args.model)(local_text().decode())["input_ids"]
        ids = torch.tensor(tokens[: args.tokens + args.tokens // 10])
    split = args.tokens
    train, evaluation = Blocks(ids[:split], args.length), Blocks(ids[split:], args.length)

    hparams = dict(item.split("=", 1) for item in args.set)
    head = model.get_output_embeddings() if args.linear else None
    loss = smoothing_loss(
        args.strategy, head=head, **{k: parse_value(v) for k, v in hparams.items()}
    )
    output_dir = args.output_dir or tempfile.mkdtemp(prefix="hf_trainer_")
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=output_dir,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size,
            gradient_accumulation_steps=args.accumulate,
            learning_rate=3e-3,
            eval_strategy="epoch",
            save_strategy="no",
            report_to="none",
            logging_steps=10,
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
        ),
        train_dataset=train,
        eval_dataset=evaluation,
        compute_loss_func=loss,
        callbacks=[SmoothingCallback(loss)],
    )
    trainer.train()
    print("eval:", trainer.evaluate())
    values = {k: float(v) for k, v in loss.driver.log_values().items()}
    print(f"{loss.strategy!r}: {values}")
    print("output:", os.path.abspath(output_dir))


if __name__ == "__main__":
    main()
