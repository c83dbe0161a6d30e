"""SmoothingCallback drives a strategy through the Trainer: every strategy trains, state
moves at epoch ends and validation passes, evaluation after training leaves it alone, and a
checkpoint round trip keeps it."""

from __future__ import annotations

import pytest
import torch
from hf_support import VOCAB, TokenRows, gpt2, trainer

from adaptls.integrations.hf import STRATEGY_STATE_FILE, smoothing_loss
from adaptls.smoothing import STRATEGIES


def needs_sample_indices(name: str) -> bool:
    """Whether the strategy's training observation needs sample indices, which the Trainer
    does not hand a loss function (probed: observe without them)."""
    strategy = STRATEGIES[name]()
    strategy.setup(num_classes=4, class_counts=[2, 2, 2, 2])
    try:
        strategy.observe(torch.zeros(2, 4), torch.tensor([0, 1]), None)
    except ValueError as err:
        return "indices" in str(err)
    return False


def _state(strategy: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in strategy.get_extra_state().items()}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_trains_ten_steps(tmp_path, name):
    """10 optimizer steps of a tiny GPT-2 with an evaluation every 5 (validation passes for
    the strategies they steer); the loss stays finite and the weights move."""
    data = TokenRows(40)
    loss = smoothing_loss(name, num_classes=VOCAB, class_counts=data.class_counts())
    model = gpt2()
    before = [p.detach().clone() for p in model.parameters()]
    run = trainer(
        model, tmp_path, loss, data, TokenRows(8, seed=1), eval_strategy="steps", eval_steps=5
    )
    if needs_sample_indices(name):
        with pytest.raises(ValueError, match="indices"):
            run.train()
        return
    result = run.train()
    assert result.global_step == 10
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert any(
        not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True)
    )


def test_online_state_moves_at_each_epoch_end(tmp_path):
    loss = smoothing_loss("online", alpha=0.5)
    run = trainer(gpt2(), tmp_path, loss, TokenRows(16), num_train_epochs=2)
    run.train()
    table = loss.strategy.S
    assert table.shape == (VOCAB, VOCAB)
    assert table.abs().sum() > 0  # learned from the epochs' correct predictions
    # every learned row is a distribution
    rows = table.sum(1)
    learned = rows > 0
    torch.testing.assert_close(rows[learned], torch.ones_like(rows[learned]))


def test_validation_steers_feedback_only_during_train(tmp_path):
    """Feedback smoothing's epsilon moves at the Trainer's evaluations inside train; an
    evaluate() afterwards is no validation pass of fit and leaves it alone."""
    loss = smoothing_loss("feedback", epsilon_init=0.1, gain=0.5)
    run = trainer(
        gpt2(), tmp_path, loss, TokenRows(16), TokenRows(8, seed=1), eval_strategy="epoch"
    )
    run.train()
    epsilon = loss.strategy.epsilon.clone()
    assert not torch.allclose(epsilon, torch.full_like(epsilon, 0.1))
    assert torch.isfinite(loss.strategy.gap).all()
    run.evaluate()
    torch.testing.assert_close(loss.strategy.epsilon, epsilon, rtol=0, atol=0)


def test_checkpoint_round_trip_keeps_the_state(tmp_path):
    """A run resumed from its epoch-1 checkpoint ends with the state of the uninterrupted
    run (the strategy's state saved with the checkpoint and restored on resume)."""
    data = TokenRows(16)

    def run(out, loss):
        return trainer(gpt2(), out, loss, data, num_train_epochs=3, save_strategy="epoch")

    whole = smoothing_loss("online")
    run(tmp_path / "whole", whole).train()
    checkpoint = tmp_path / "whole" / "checkpoint-4"
    assert (checkpoint / STRATEGY_STATE_FILE).is_file()
    saved = torch.load(checkpoint / STRATEGY_STATE_FILE, weights_only=True)
    assert saved["_extra_state"]["S"].abs().sum() > 0  # epoch 1 learned a table

    resumed = smoothing_loss("online")
    resumed_run = run(tmp_path / "whole", resumed)
    resumed_run.train(resume_from_checkpoint=str(checkpoint))
    for key, value in _state(whole.strategy).items():
        torch.testing.assert_close(_state(resumed.strategy)[key], value, rtol=1e-6, atol=1e-7)


def test_resume_without_the_strategy_state_is_refused(tmp_path):
    data = TokenRows(16)
    run = trainer(gpt2(), tmp_path, smoothing_loss("online"), data, save_strategy="epoch")
    run.train()
    (tmp_path / "checkpoint-4" / STRATEGY_STATE_FILE).unlink()
    again = trainer(
        gpt2(), tmp_path, smoothing_loss("online"), data, num_train_epochs=2, save_strategy="epoch"
    )
    with pytest.raises(FileNotFoundError, match=STRATEGY_STATE_FILE):
        again.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))
