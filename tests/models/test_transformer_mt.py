"""TransformerMT: causal decoding, padding ignored, tied embeddings, the fused head; beam
search against an exhaustive search, greedy as beam 1, batched equal to one at a time."""

from __future__ import annotations

import itertools

import pytest
import torch

from adaptls.models import TransformerMT, has_linear_head
from adaptls.translation import beam_search, greedy_search

V, L, PAD, EOS = 12, 10, 0, 1


def model(seed=0, **kwargs) -> TransformerMT:
    torch.manual_seed(seed)
    net = TransformerMT((2, L), V, layers=1, width=16, heads=2, dropout=0.0, **kwargs)
    return net.eval()


def rows(seed=0, b=3, t=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(2, V, (b, 2, t), generator=g)
    x[:, 1, 0] = EOS
    return x


def test_outputs_are_the_tied_head_of_the_features():
    net = model()
    assert has_linear_head(net) and net.head.bias is None
    assert net.head.weight is net.tokens.weight
    x = rows()
    torch.testing.assert_close(net(x), net.head(net.features(x)))
    assert net(x).shape == (3, 6, V)


def test_a_position_never_sees_later_decoder_tokens():
    net, x = model(), rows()
    changed = x.clone()
    changed[:, 1, 4:] = (changed[:, 1, 4:] + 1) % (V - 2) + 2
    a, b = net(x), net(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_padding_changes_nothing():
    net, x = model(), rows()
    padded = torch.nn.functional.pad(x, (0, 3), value=PAD)
    torch.testing.assert_close(net(padded)[:, :6], net(x), atol=1e-5, rtol=1e-5)


def test_the_shape_and_options_are_checked():
    with pytest.raises(ValueError, match="input_shape must be \\(2, L\\)"):
        TransformerMT((3, L), V)
    with pytest.raises(ValueError, match="width must be a multiple of heads"):
        TransformerMT((2, L), V, width=10, heads=3)
    with pytest.raises(ValueError, match="expected a \\(B, 2, L\\) batch"):
        model().features(torch.zeros(2, L, dtype=torch.long))


def sequence_logprob(net, source, ids):
    """log p(ids + EOS | source), summed over the steps (teacher forcing)."""
    prefix = torch.tensor([[EOS, *ids]])
    memory, padding = net.encode(source.view(1, -1))
    logp = net.head(net.decode(prefix, memory, padding)).log_softmax(-1)[0]
    return float(sum(logp[i, t] for i, t in enumerate([*ids, EOS])))


@torch.no_grad()
def test_beam_search_with_every_hypothesis_kept_finds_the_best_sequence():
    """Two steps over V tokens: a beam of V * V keeps every hypothesis, so it must return
    the best of all sequences of up to 2 tokens (never padding) that end, or are cut at
    2 steps."""
    net = model(seed=3)
    source = torch.tensor([5, 7, 3, EOS])
    got = beam_search(
        net,
        source.view(1, -1),
        bos_id=EOS,
        eos_id=EOS,
        pad_id=PAD,
        max_steps=2,
        beam_size=V * V,
        length_penalty=0.0,
    )[0]
    # candidates: ended at step 1 or 2 (EOS scored), or cut at 2 steps (no EOS)
    memory, padding = net.encode(source.view(1, -1))
    best, best_score = None, float("-inf")
    for length in (0, 1, 2):
        for ids in itertools.product([t for t in range(V) if t not in (EOS, PAD)], repeat=length):
            if length < 2:
                score = sequence_logprob(net, source, list(ids))
            else:  # cut: the two tokens' log-probabilities, no end token
                prefix = torch.tensor([[EOS, ids[0]]])
                logp = net.head(net.decode(prefix, memory, padding)).log_softmax(-1)[0]
                score = float(logp[0, ids[0]] + logp[1, ids[1]])
            if score > best_score:
                best, best_score = list(ids), score
    assert got == best


def test_greedy_is_the_argmax_at_each_step():
    net = model(seed=1)
    source = rows(seed=2, b=1)[:, 0]
    got = greedy_search(net, source, bos_id=EOS, eos_id=EOS, pad_id=PAD, max_steps=5)[0]
    prefix = [EOS]
    memory, padding = net.encode(source)
    for _ in range(5):
        logits = net.head(net.decode(torch.tensor([prefix]), memory, padding))[0, -1]
        token = int(logits.argmax())
        if token == EOS:
            break
        prefix.append(token)
    assert got == [t for t in prefix[1:] if t != PAD]


def test_a_batch_decodes_as_its_sentences_one_by_one():
    net = model(seed=2)
    sources = rows(seed=4, b=4)[:, 0]
    sources[1, 3:] = PAD  # a shorter sentence in the batch
    sources[1, 2] = EOS
    settings = dict(bos_id=EOS, eos_id=EOS, pad_id=PAD, max_steps=6, beam_size=3)
    together = beam_search(net, sources, **settings)
    alone = [beam_search(net, s[s != PAD].view(1, -1), **settings)[0] for s in sources]
    assert together == alone


@torch.no_grad()
def test_a_decoding_step_with_the_cache_equals_decoding_the_whole_prefix():
    net, x = model(seed=5), rows(seed=6, t=L)
    memory, padding = net.encode(x[:, 0])
    prefix, cache = x[:, 1], None
    full = net.decode(prefix, memory, padding)
    for t in range(L):
        hidden, cache = net.decode_step(prefix[:, t], memory, padding, cache)
        torch.testing.assert_close(hidden, full[:, t], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="exceeds max_length 10"):
        net.decode_step(prefix[:, 0], memory, padding, cache)
