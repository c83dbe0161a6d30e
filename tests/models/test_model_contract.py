"""What every model promises: Model(input_shape, num_classes, **hp), (B, *shape) -> (B, K)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adaptls.models import CNN1D, MLP, ResNet, resnet20, resnet32

# (factory, one valid input shape); small shapes keep the ResNets fast.
MODELS = {
    "mlp": (MLP, (1, 40)),
    "cnn1d": (CNN1D, (1, 40)),
    "resnet20": (resnet20, (3, 8, 8)),
    "resnet32": (resnet32, (3, 8, 8)),
}


@pytest.fixture(params=list(MODELS))
def model_case(request):
    return MODELS[request.param]


def test_logits_shape_and_gradients(model_case):
    build, shape = model_case
    torch.manual_seed(0)
    model = build(shape, 7)
    x = torch.randn(5, *shape)
    logits = model(x)
    assert logits.shape == (5, 7)
    assert logits.dtype == torch.float32
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_accepts_torch_size_and_numpy_ints(model_case):
    build, shape = model_case
    model = build(torch.Size(shape), np.int64(3))
    assert model(torch.randn(2, *shape)).shape == (2, 3)


def test_dropout_active_in_train_and_off_in_eval(model_case):
    build, shape = model_case
    torch.manual_seed(0)
    model = build(shape, 10, dropout=0.5)
    x = torch.randn(8, *shape)

    model.train()
    assert not torch.allclose(model(x), model(x))

    # Dropout holds no state, so this is the same network; copied after the train-mode
    # passes because those moved BatchNorm's running statistics.
    plain = build(shape, 10, dropout=0.0)
    plain.load_state_dict(model.state_dict())
    model.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
        torch.testing.assert_close(model(x), plain(x))


def test_no_dropout_is_deterministic_in_train_mode(model_case):
    build, shape = model_case
    model = build(shape, 10).train()
    x = torch.randn(8, *shape)
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.0, True, "10"])
def test_bad_num_classes(model_case, num_classes):
    build, shape = model_case
    with pytest.raises(ValueError, match=f"num_classes must be an int >= 2, got {num_classes!r}"):
        build(shape, num_classes)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5, True, "0.1", None])
def test_bad_dropout(model_case, dropout):
    build, shape = model_case
    with pytest.raises(ValueError, match=rf"dropout must be a number in \[0, 1\), got {dropout!r}"):
        build(shape, 10, dropout=dropout)


def test_wrong_batch_shape_names_expected_layout(model_case):
    build, shape = model_case
    model = build(shape, 10)
    bad = torch.randn(4, *shape[1:]) if len(shape) > 1 else torch.randn(4, 1, *shape)
    expected = ", ".join(map(str, shape))
    with pytest.raises(ValueError, match=rf"expected a batch of shape \(B, {expected}\)"):
        model(bad)


@pytest.mark.parametrize(
    ("build", "shape"),
    [MODELS["mlp"], MODELS["cnn1d"], (partial(ResNet, depth=8), (3, 8, 8))],
    ids=["mlp", "cnn1d", "resnet8"],
)
def test_overfits_a_handful_of_samples(build, shape):
    """Random inputs with random labels: only memorisation can fit them."""
    torch.manual_seed(0)
    model = build(shape, 10)
    x, y = torch.randn(20, *shape), torch.arange(20) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy == 1.0
