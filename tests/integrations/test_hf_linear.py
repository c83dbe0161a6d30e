"""The fused linear path under the Trainer: smoothing_loss(..., head=lm_head) trains a causal
LM from its output layer's inputs, equal to the loss of the logits, without forming them."""

from __future__ import annotations

import pytest
import torch
from hf_support import VOCAB, TokenRows, gpt2, trainer

from adaptls.integrations.hf import smoothing_loss
from adaptls.smoothing import STRATEGIES


def _loss_and_gradient(model, loss, batch):
    model.zero_grad()
    value = trainer(model, "unused", loss).compute_loss(model, dict(batch), num_items_in_batch=37)
    value.backward()
    return value.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("name", ["uniform", "confidence"])
def test_linear_path_equals_the_logits_loss(tmp_path, name):
    batch = TokenRows(8).batch()
    model = gpt2()
    model.train()
    expected, expected_grads = _loss_and_gradient(model, smoothing_loss(name), batch)
    fused = smoothing_loss(name, head=model.get_output_embeddings())
    got, grads = _loss_and_gradient(model, fused, batch)
    # chunked float32 log-sum-exps against one pass
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for key, gradient in expected_grads.items():
        torch.testing.assert_close(grads[key], gradient, rtol=1e-4, atol=1e-6)


def test_training_never_forms_the_logits(tmp_path):
    """In training the model's logits cover the first position only (what the head check
    compares); evaluation gets the full logits."""
    model = gpt2()
    loss = smoothing_loss("uniform", head=model.get_output_embeddings())
    shapes = []
    model.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.logits.shape)))
    run = trainer(model, tmp_path, loss, TokenRows(8), TokenRows(8, seed=1))
    run.train()
    assert set(shapes) == {(4, 1, VOCAB)}
    shapes.clear()
    run.evaluate()
    assert set(shapes) == {(8, 10, VOCAB)}


@pytest.mark.parametrize("name", [n for n in sorted(STRATEGIES) if STRATEGIES[n]().limits.linear])
def test_refused_for_strategies_that_read_logit_values(name):
    with pytest.raises(TypeError, match=f"{STRATEGIES[name].__name__}.*fused linear path"):
        smoothing_loss(name, head=gpt2().get_output_embeddings())


def test_refused_for_models_that_change_their_logits(tmp_path):
    model = gpt2()
    head = model.get_output_embeddings()
    # a model that changes its logits after the head (a scale): caught on the first step
    head.register_forward_hook(lambda m, i, out: 2.0 * out)
    run = trainer(model, tmp_path, smoothing_loss("uniform", head=head), TokenRows(8))
    with pytest.raises(ValueError, match="fused linear path does not apply"):
        run.train()
