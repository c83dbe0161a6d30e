"""TextCNN: the model contract over token ids, padding invariance, bad arguments."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptls.models import TextCNN

VOCAB = 50
build = partial(TextCNN, vocab_size=VOCAB)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: one intra-op thread (two, on a busy 2-core machine, spend their time in
    barriers: 60 training steps took 50 s instead of 1 s here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Random ids of real tokens (never the padding id 0)."""
    return torch.randint(1, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def right_pad(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width, dtype=torch.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_logits_shape_and_gradients(pooling):
    torch.manual_seed(0)
    model = build((12,), 7, pooling=pooling)
    x = right_pad([tokens(1, n, seed=n)[0] for n in (12, 1, 5, 3)], 12)
    logits = model(x)
    assert logits.shape == (4, 7) and logits.dtype == torch.float32
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # the padding embedding is never used, so it gets no gradient
    assert not model.embedding.weight.grad[0].any()


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=5),
    extra=st.integers(0, 6),
    pooling=st.sampled_from(["max", "mean"]),
    seed=st.integers(0, 2**16),
)
def test_padding_never_changes_the_logits(lengths, extra, pooling, seed):
    """Each text alone, unpadded, gives the logits it gets right-padded in a batch."""
    torch.manual_seed(seed)
    model = build((20,), 5, pooling=pooling, kernel_sizes=(1, 2, 5)).eval()
    rows = [tokens(1, n, seed=seed + i)[0] for i, n in enumerate(lengths)]
    with torch.no_grad():
        batched = model(right_pad(rows, max(lengths) + extra))
        alone = torch.cat([model(row[None]) for row in rows])
    # Same windows, same arithmetic per window; only the conv kernels' summation order may
    # change with the input length (float32).
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("n", [1, 2, 7])
def test_matches_the_authors_padded_narrow_convolution(k, n):
    """yoonkim/CNN_sentence: the sentence's word vectors with k - 1 zero vectors on each
    side, a narrow (valid) convolution, ReLU, max over every window, then the classifier.
    With one kernel size and that padding no window is padding only, so the masked wide
    convolution must give the same features."""
    torch.manual_seed(k * 10 + n)
    model = build((16,), 4, kernel_sizes=(k,), dropout=0.0).eval()
    x = tokens(1, n, seed=n)
    with torch.no_grad():
        words = model.embedding.weight[x[0]]  # (n, width)
        zeros = torch.zeros(k - 1, words.shape[1])
        sentence = torch.cat([zeros, words, zeros]).T[None]  # (1, width, n + 2k - 2)
        conv = model.convs[0]
        features = F.relu(F.conv1d(sentence, conv.weight, conv.bias)).amax(-1)
        expected = model.classifier(features)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
        # and padded on the right in a batch, the same again
        torch.testing.assert_close(
            model(F.pad(x, (0, 9 - n)))[0], expected[0], rtol=1e-5, atol=1e-6
        )


def test_padding_positions_are_masked_whatever_their_embedding():
    """Even a non-zero padding embedding (e.g. loaded weights) does not leak in."""
    torch.manual_seed(0)
    model = build((10,), 3).eval()
    x = right_pad([tokens(1, 4)[0], tokens(1, 7, seed=1)[0]], 10)
    with torch.no_grad():
        before = model(x)
        model.embedding.weight[0] = 100.0
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_real_tokens_do_change_the_logits():
    torch.manual_seed(0)
    model = build((10,), 3).eval()
    x = tokens(2, 6)
    y = x.clone()
    y[:, -1] = y[:, -1] % (VOCAB - 1) + 1  # another real token in the last position
    with torch.no_grad():
        assert not torch.allclose(model(x), model(y))


def test_a_text_of_padding_only_gives_finite_logits():
    model = build((6,), 3).eval()
    with torch.no_grad():
        logits = model(torch.zeros(2, 6, dtype=torch.int64))
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, model.classifier.bias.expand(2, 3))


def test_accepts_torch_size_numpy_ints_and_int32_ids():
    model = TextCNN(torch.Size([8]), np.int64(3), vocab_size=np.int64(VOCAB))
    assert model(tokens(2, 8).int()).shape == (2, 3)


def test_dropout_active_in_train_and_off_in_eval():
    torch.manual_seed(0)
    model = build((8,), 10, dropout=0.5)
    x = tokens(8, 8)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    plain = build((8,), 10, dropout=0.0).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_no_dropout_is_deterministic_in_train_mode():
    model = build((8,), 10, dropout=0.0).train()
    x = tokens(8, 8)
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_overfits_a_handful_of_texts():
    """Random texts with random labels: only memorisation can fit them."""
    torch.manual_seed(0)
    model = build((12,), 10, width=32, channels=16, dropout=0.0)
    x = right_pad([tokens(1, 3 + i % 9, seed=i)[0] for i in range(20)], 12)
    y = torch.arange(20) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"vocab_size": None},
            ValueError,
            "vocab_size must be an int >= 2, got None: .*data=text_cls",
        ),
        ({"vocab_size": 1}, ValueError, "vocab_size must be an int >= 2, got 1"),
        ({"num_classes": 1}, ValueError, "num_classes must be an int >= 2, got 1"),
        ({"input_shape": (1, 40)}, ValueError, r"input_shape must be a tuple .* \(max_length,\)"),
        ({"width": 0}, ValueError, "width must be an int >= 1, got 0"),
        ({"channels": True}, ValueError, "channels must be an int >= 1, got True"),
        ({"kernel_sizes": []}, ValueError, "kernel_sizes must name at least one"),
        ({"kernel_sizes": [3, 0]}, ValueError, r"kernel_sizes\[1\] must be an int >= 1, got 0"),
        ({"kernel_sizes": "345"}, TypeError, "kernel_sizes must be a list of positive ints"),
        ({"dropout": 1.0}, ValueError, r"dropout must be a number in \[0, 1\), got 1.0"),
        ({"pooling": "sum"}, ValueError, "pooling must be one of 'max', 'mean'; got 'sum'"),
        ({"pad_id": 50}, ValueError, "pad_id must be < vocab_size=50, got 50"),
        ({"pad_id": -1}, ValueError, "pad_id must be an int >= 0, got -1"),
    ],
)
def test_bad_arguments_name_the_value_and_what_is_allowed(kwargs, error, message):
    args = {"input_shape": (8,), "num_classes": 3, "vocab_size": VOCAB, **kwargs}
    with pytest.raises(error, match=message):
        TextCNN(**args)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (
            torch.randn(2, 8),
            r"shape \(B, T\) with T <= 8, int64, got shape \(2, 8\) and dtype torch.float32",
        ),
        (torch.ones(2, 3, 4, dtype=torch.int64), r"got shape \(2, 3, 4\)"),
        (torch.ones(2, 9, dtype=torch.int64), r"T <= 8 \(max_length\), got \(2, 9\)"),
    ],
)
def test_a_wrong_batch_names_the_expected_layout(x, message):
    with pytest.raises(ValueError, match=message):
        build((8,), 3)(x)
