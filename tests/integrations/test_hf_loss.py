"""smoothing_loss as the Trainer's compute_loss_func: the Trainer's own label smoothing, and
the gradient of accumulated micro-batches."""

from __future__ import annotations

import pytest
import torch
from hf_support import TokenRows, gpt2, t5, trainer

from adaptls.integrations.hf import smoothing_loss
from adaptls.smoothing import UniformSmoothing


@pytest.mark.parametrize(
    ("build", "causal"), [(gpt2, True), (t5, False)], ids=["gpt2-causal", "t5-seq2seq"]
)
@pytest.mark.parametrize("counted", [False, True], ids=["batch-mean", "num_items_in_batch"])
def test_uniform_equals_label_smoothing_factor(tmp_path, build, causal, counted):
    """UniformSmoothing(0.1) through adaptls is the Trainer's label_smoothing_factor=0.1 loss
    on the same batch (eps/V over all V classes; labels shifted for the causal LM only)."""
    model = build()
    data = TokenRows(8, seq2seq=not causal)
    batch = data.batch()
    num_items = 50 if counted else None  # a whole accumulated batch's count
    theirs = trainer(model, tmp_path, label_smoothing_factor=0.1)
    ours = trainer(model, tmp_path, smoothing_loss(UniformSmoothing(0.1), causal=causal))
    expected = theirs.compute_loss(model, dict(batch), num_items_in_batch=num_items)
    got = ours.compute_loss(model, dict(batch), num_items_in_batch=num_items)
    # float32 sums over 8 x 10 rows of log-softmaxes of 48 classes
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_causal_shift_and_ignore_index():
    """Position t is scored against label t + 1; -100 labels count nowhere."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 7, generator=generator)
    labels = torch.randint(0, 7, (2, 5), generator=generator)
    labels[1, 3:] = -100
    loss = smoothing_loss("none")(dict(logits=logits), labels)
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(loss, expected)
    seq2seq = smoothing_loss("none", causal=False)(dict(logits=logits), labels)
    torch.testing.assert_close(
        seq2seq, torch.nn.functional.cross_entropy(logits.reshape(-1, 7), labels.reshape(-1))
    )


def _one_step(tmp_path, name, build, batch_size, accumulation):
    model = build()
    causal = build is gpt2
    run = trainer(
        model,
        tmp_path / f"{name}-{batch_size}x{accumulation}",
        smoothing_loss(name, causal=causal),
        TokenRows(8, seq2seq=not causal),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        max_grad_norm=0.0,
        lr_scheduler_type="constant",
    )
    before = {k: v.clone() for k, v in model.named_parameters()}
    run.train()
    return {k: before[k] - v.detach() for k, v in model.named_parameters()}  # = the gradient


@pytest.mark.parametrize(
    ("name", "build"),
    [("uniform", gpt2), ("confidence", gpt2), ("uniform", t5)],
    ids=["uniform-gpt2", "confidence-gpt2", "uniform-t5"],
)
def test_accumulated_micro_batches_give_the_full_batch_gradient(tmp_path, name, build):
    """4 accumulated micro-batches of 2 rows make the SGD step of one batch of 8, although
    the micro-batches count different numbers of labels (the sum over all 8 rows divided by
    num_items_in_batch; a per-micro-batch mean would weigh rows unequally)."""
    full = _one_step(tmp_path, name, build, 8, 1)
    accumulated = _one_step(tmp_path, name, build, 2, 4)
    assert any(g.abs().max() > 1e-3 for g in full.values())
    for key, gradient in full.items():
        # float32: a sum of 4 partial gradients against one; lr = 1
        torch.testing.assert_close(accumulated[key], gradient, rtol=1e-4, atol=1e-6)


def test_bad_strategy_name_is_named():
    with pytest.raises(ValueError, match=r"one of .*got 'nope'"):
        smoothing_loss("nope")
    with pytest.raises(TypeError, match="hyperparameters"):
        smoothing_loss(UniformSmoothing(0.1), epsilon=0.2)
