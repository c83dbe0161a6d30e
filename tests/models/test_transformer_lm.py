"""TransformerLM: causal, shifted labels with padding ignored, its head fused with the loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from adaptls.data.text_lm import IGNORE_INDEX, next_token_blocks
from adaptls.models import TransformerLM, has_linear_head
from adaptls.smoothing import NoSmoothing, UniformSmoothing
from adaptls.smoothing.driver import StrategyDriver

CONF = Path(__file__).resolve().parents[2] / "conf" / "model" / "transformer_lm.yaml"
V = 23


def build(**kwargs) -> TransformerLM:
    torch.manual_seed(0)
    options = {"layers": 2, "width": 16, "heads": 4, "dropout": 0.0, **kwargs}
    return TransformerLM((6,), V, **options).eval()


def hand_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two documents in blocks of 6: EOS 3 4 5 6 7 8 | EOS 9 10 11 EOS + padding."""
    return next_token_blocks([[3, 4, 5, 6, 7, 8], [9, 10, 11]], 6, eos_id=1, pad_id=0)


def test_shapes_and_the_linear_head_protocol():
    model = build()
    x, _ = hand_batch()
    logits = model(x)
    assert logits.shape == (2, 6, V)
    assert has_linear_head(model)
    assert torch.equal(logits, model.head(model.features(x)))
    assert model.features(x).shape == (2, 6, 16)


def test_tied_embeddings_share_one_matrix_and_untied_have_a_bias():
    tied, untied = build(), build(tie_embeddings=False)
    assert tied.head.weight is tied.tokens.weight and tied.head.bias is None
    assert untied.head.weight is not untied.tokens.weight and untied.head.bias is not None
    assert (
        sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters())
        == V * 16 + V
    )


def test_causal_mask_future_tokens_do_not_change_earlier_outputs():
    model = build(dropout=0.3)  # eval mode: dropout off
    x, _ = hand_batch()
    reference = model(x)
    for t in range(6):
        changed = x.clone()
        changed[:, t:] = torch.randint(2, V, changed[:, t:].shape, generator=torch.Generator())
        out = model(changed)
        torch.testing.assert_close(out[:, :t], reference[:, :t], rtol=0, atol=1e-6)
        if t < 5:
            assert not torch.allclose(out[:, t:], reference[:, t:])
    # Trailing padding (the second block) changes nothing before it either.
    assert torch.equal(model(x[1:, :4]), reference[1:, :4])


def test_loss_on_a_hand_made_batch_counts_exactly_the_positions_with_a_next_token():
    model = build()
    x, y = hand_batch()
    assert y.tolist() == [[3, 4, 5, 6, 7, 8], [1, 9, 10, 11, 1, IGNORE_INDEX]]
    logits = model(x).double()
    # By hand: -log p(next token) at each of the 11 positions that have one.
    log_p = torch.log_softmax(logits, dim=-1)
    positions = [(0, t) for t in range(6)] + [(1, t) for t in range(5)]
    by_hand = -sum(log_p[b, t, y[b, t]] for b, t in positions) / len(positions)

    strategy = NoSmoothing()
    strategy.setup(num_classes=V)
    hidden, head = model.features(x), model.head
    fused = StrategyDriver(strategy).linear_loss(hidden, head.weight, y, bias=head.bias)
    torch.testing.assert_close(fused.double(), by_hand, rtol=1e-5, atol=0)
    torch.testing.assert_close(
        F.cross_entropy(logits.view(-1, V), y.view(-1), ignore_index=IGNORE_INDEX), by_hand
    )


def test_fused_smoothed_loss_equals_the_loss_on_the_logits_with_gradients():
    model = build(tie_embeddings=False)
    x, y = hand_batch()
    strategy = UniformSmoothing(epsilon=0.1)
    strategy.setup(num_classes=V)
    fused = StrategyDriver(strategy).linear_loss(
        model.features(x), model.head.weight, y, bias=model.head.bias
    )
    grads = torch.autograd.grad(fused, list(model.parameters()))
    plain = strategy(model(x), y)
    expected = torch.autograd.grad(plain, list(model.parameters()))
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_yaml_builds_the_model_from_data_facts():
    cfg = OmegaConf.load(CONF)
    assert set(cfg) - {"_target_", "_partial_"} == {
        "layers", "width", "heads", "dropout", "tie_embeddings", "context_length"
    }  # fmt: skip
    model = instantiate(cfg)(input_shape=(32,), num_classes=300)
    assert isinstance(model, TransformerLM) and model.context_length == 32
    assert model(torch.zeros(2, 32, dtype=torch.long)).shape == (2, 32, 300)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 18, "heads": 4}, "width must be a multiple of heads \\(4\\), got 18"),
        ({"context_length": 5}, "context_length must be at least the data's block length 6"),
        ({"dropout": 1.0}, "dropout must be"),
        ({"layers": 0}, "layers must be an int >= 1, got 0"),
        ({"tie_embeddings": "yes"}, "tie_embeddings must be true or false"),
    ],
)
def test_bad_options_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransformerLM((6,), V, **kwargs)


def test_bad_batches_fail_clearly():
    model = build()
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.randn(2, 6))
    with pytest.raises(ValueError, match="exceeds context_length 6"):
        model(torch.zeros(1, 7, dtype=torch.long))
