"""linear_soft_target_cross_entropy against the unfused soft_target_cross_entropy(F.linear(..)).

Values and the gradients of hidden, weight and bias, for every epsilon kind (float, 0-d
tensor, one per row) and prior kind (uniform, shared (V,), per-row (N, V), table rows via
prior_index), every reduction, ignored rows, (..., D) shapes, chunkings that do not divide
N, float32/bfloat16/float16 inputs; a float64 gradcheck; a hypothesis property test; and a
check that nothing N x V is ever allocated.

Tolerances: float32 results are compared with the exact (float64) loss of the same
float32 inputs, within worst-case rounding bounds (Higham's gamma_n = n u / (1 - n u),
taken as n u) derived from the lengths of the sums involved: D + 1 terms per logit, V per
softmax denominator and per row of the hidden gradient, N (rows, in any chunk order) per
weight- and bias-gradient entry and per reduced loss. See ``Bounds``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck

import adaptls.losses._fused_linear as fused_linear
from adaptls.smoothing import linear_soft_target_cross_entropy, soft_target_cross_entropy

UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24}
# relative rounding of a gradient handed out in the input's dtype
OUTPUT_ROUNDING = {
    torch.float64: 0.0,
    torch.float32: 0.0,
    torch.bfloat16: 2.0**-8,
    torch.float16: 2.0**-11,
}
REDUCTIONS = ("mean", "sum", "none")
PRIOR_KINDS = ("uniform", "shared", "rows", "rows_shaped", "table")
EPS_KINDS = ("float", "scalar_tensor", "rows")


@dataclass
class Case:
    hidden: torch.Tensor  # (..., D) float64
    weight: torch.Tensor  # (V, D)
    bias: torch.Tensor | None
    targets: torch.Tensor  # (...)
    epsilon: float | torch.Tensor
    prior: torch.Tensor | None
    prior_index: torch.Tensor | None
    ignore_index: int = -100

    def kwargs(self, reduction: str) -> dict:
        return {
            "prior_index": self.prior_index,
            "ignore_index": self.ignore_index,
            "reduction": reduction,
        }


def make_case(
    lead=(6, 7),
    d=5,
    v=11,
    eps_kind="rows",
    prior_kind="table",
    bias=True,
    ignored=0.3,
    seed=0,
    scale=1.0,
    ignore_index=-100,
) -> Case:
    g = torch.Generator().manual_seed(seed)
    n = math.prod(lead)
    hidden = torch.randn(*lead, d, generator=g, dtype=torch.float64) * scale
    weight = torch.randn(v, d, generator=g, dtype=torch.float64)
    b = torch.randn(v, generator=g, dtype=torch.float64) if bias else None
    targets = torch.randint(0, v, lead, generator=g)
    targets[torch.rand(lead, generator=g) < ignored] = ignore_index
    epsilon = {
        "float": 0.3,
        "scalar_tensor": torch.tensor(0.25, dtype=torch.float64),
        "rows": torch.rand(lead, generator=g, dtype=torch.float64),
    }[eps_kind]
    table = torch.softmax(torch.randn(4, v, generator=g, dtype=torch.float64) * 2, -1)
    index = torch.randint(0, 4, lead, generator=g)
    prior, prior_index = {
        "uniform": (None, None),
        "shared": (table[0], None),
        "rows": (table[index.reshape(-1)], None),  # (N, V)
        "rows_shaped": (table[index], None),  # (..., V)
        "table": (table, index),
    }[prior_kind]
    assert hidden.shape[:-1] == targets.shape and targets.numel() == n
    return Case(hidden, weight, b, targets, epsilon, prior, prior_index, ignore_index)


def run(case: Case, reduction: str, dtype=torch.float64, fused=True, grad_output=None):
    """The loss and the gradients of (hidden, weight, bias) of sum(loss * grad_output)."""
    leaves = [
        None if t is None else t.detach().to(dtype, copy=True).requires_grad_()
        for t in (case.hidden, case.weight, case.bias)
    ]
    h, w, b = leaves
    eps = case.epsilon
    if torch.is_tensor(eps) and dtype != torch.float64:
        eps = eps.float()
    if fused:
        loss = linear_soft_target_cross_entropy(
            h, w, case.targets, eps, case.prior, bias=b, **case.kwargs(reduction)
        )
    else:
        loss = soft_target_cross_entropy(
            F.linear(h, w, b), case.targets, eps, case.prior, **case.kwargs(reduction)
        )
    go = torch.ones_like(loss) if grad_output is None else grad_output.to(loss.dtype)
    (loss * go).sum().backward()
    grads = [None if t is None else t.grad for t in leaves]
    return loss, grads


def reference(case: Case, reduction: str, dtype=torch.float64, grad_output=None):
    """The unfused loss in float64 of the inputs rounded to ``dtype``: exact up to 1e-16."""
    rounded = Case(
        *(
            None if t is None else t.to(dtype).double()
            for t in (case.hidden, case.weight, case.bias)
        ),
        case.targets,
        case.epsilon,
        case.prior,
        case.prior_index,
        case.ignore_index,
    )
    return run(rounded, reduction, torch.float64, fused=False, grad_output=grad_output)


class Bounds:
    """Worst-case rounding bounds for the fused loss computed with unit roundoff u.

    With A = max_ik (|h_i| . |W_k| + |b_k|) (the size of a logit's terms), Z = max |z|:
      a logit:                     dz   <= (D + 1) u A                          [D+1 terms]
      a row's loss:                dl_i <= 3 dz + (2V + D + 8) u (A + 1)
          (logsumexp: V-term sum, exp, log, shift; <u, z_i> = h_i . W^T u + b . u: V + D
          terms; the target logit)
      d loss_i / d z_ik = p_ik - t_ik: per entry <= 2 dz + (V + 6) u, and summed over
          k <= 2 dz + (3V + 4) u (p sums to 1)
      hidden grad row i:   <= w_i max|W| (2 dz + (6V + 4) u)   [V-term sums; W^T u]
      weight grad entry:   <= max|h| sum_i w_i (2 dz + (V + 2N + 10) u)   [N-term sums]
      bias grad entry:     <= sum_i w_i (2 dz + (V + 2N + 10) u)
      reduced loss:        sum: <= N max dl_i + N u sum_i |l_i|; mean: that / counted
    where w_i is row i's weight in the reduced loss (1/counted, 1, or grad_output_i).
    """

    def __init__(self, case: Case, reduction: str, ref_loss, u: float, grad_output=None):
        h = case.hidden.reshape(-1, case.hidden.shape[-1])
        n, d = h.shape
        v = case.weight.shape[0]
        b = 0.0 if case.bias is None else case.bias.abs()
        a = float((h.abs() @ case.weight.abs().T + b).max()) if n else 0.0
        dz = (d + 1) * u * a
        self.row = 3 * dz + (2 * v + d + 8) * u * (a + 1)
        counted = int((case.targets != case.ignore_index).sum())
        if reduction == "mean":
            w_max, w_sum = 1 / max(counted, 1), 1.0
        elif reduction == "sum":
            w_max, w_sum = 1.0, float(counted)
        else:
            go = grad_output.abs().reshape(-1) * (case.targets != case.ignore_index).reshape(-1)
            w_max, w_sum = float(go.max()) if n else 0.0, float(go.sum())
        if reduction != "none" and grad_output is not None:
            w_max, w_sum = w_max * abs(float(grad_output)), w_sum * abs(float(grad_output))
        total = n * self.row + n * u * float(ref_loss.detach().abs().sum())
        self.loss = {"none": self.row, "sum": total, "mean": total / max(counted, 1)}[reduction]
        self.hidden = w_max * float(case.weight.abs().max()) * (2 * dz + (6 * v + 4) * u)
        per_entry = w_sum * (2 * dz + (v + 2 * n + 10) * u)
        self.weight = float(h.abs().max()) * per_entry if n else 0.0
        self.bias = per_entry


def assert_matches(case, reduction, dtype, grad_output=None, factor=1.0, fused=True):
    """The fused loss in ``dtype`` equals the exact loss of the same (rounded) inputs."""
    loss, grads = run(case, reduction, dtype, fused=fused, grad_output=grad_output)
    ref, ref_grads = reference(case, reduction, dtype, grad_output)
    accumulate = torch.float64 if dtype == torch.float64 else torch.float32
    assert loss.dtype == (accumulate if fused else loss.dtype)
    assert loss.shape == ref.shape
    bound = Bounds(case, reduction, ref, UNIT_ROUNDOFF[accumulate], grad_output)
    torch.testing.assert_close(loss.double(), ref, atol=factor * bound.loss, rtol=0)
    rtol = OUTPUT_ROUNDING[dtype]
    for name, g, r in zip(("hidden", "weight", "bias"), grads, ref_grads, strict=True):
        if r is None:
            assert g is None
            continue
        assert g.dtype == dtype and g.shape == r.shape
        atol = factor * getattr(bound, name)
        torch.testing.assert_close(g.double(), r, atol=atol, rtol=rtol, msg=name)


def grad_output_for(case: Case, reduction: str, seed=1):
    if reduction != "none":
        return torch.tensor(1.7, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(case.targets.shape, generator=g, dtype=torch.float64)


# --- every epsilon and prior kind, every reduction, against the unfused loss ------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("prior_kind", PRIOR_KINDS)
@pytest.mark.parametrize("eps_kind", EPS_KINDS)
@pytest.mark.parametrize("rows", [None, 5])  # 5 rows per chunk: 42 rows end mid-chunk
def test_float64_matches_unfused(reduction, prior_kind, eps_kind, rows, chunk_rows):
    case = make_case(eps_kind=eps_kind, prior_kind=prior_kind)
    with chunk_rows(rows):
        assert_matches(case, reduction, torch.float64, grad_output_for(case, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("prior_kind", PRIOR_KINDS)
@pytest.mark.parametrize("rows", [None, 7])
def test_float32_within_rounding_bounds(reduction, prior_kind, rows, chunk_rows):
    # a vocabulary bigger than the dimension, logits of a few units, 3 x 40 rows
    case = make_case(lead=(3, 40), d=32, v=300, prior_kind=prior_kind, scale=0.5, seed=2)
    with chunk_rows(rows):
        assert_matches(case, reduction, torch.float32, grad_output_for(case, reduction))


@pytest.mark.parametrize("prior_kind", PRIOR_KINDS)
def test_float32_agrees_with_the_float32_unfused_loss(prior_kind):
    # both deviate from the exact loss by at most the bound: they agree within twice it
    case = make_case(lead=(50,), d=16, v=200, prior_kind=prior_kind, seed=3)
    ours, ours_grads = run(case, "mean", torch.float32)
    theirs, their_grads = run(case, "mean", torch.float32, fused=False)
    ref, _ = reference(case, "mean", torch.float32)
    bound = Bounds(case, "mean", ref, UNIT_ROUNDOFF[torch.float32])
    torch.testing.assert_close(ours, theirs, atol=2 * bound.loss, rtol=0)
    for name, g, r in zip(("hidden", "weight", "bias"), ours_grads, their_grads, strict=True):
        torch.testing.assert_close(g, r, atol=2 * getattr(bound, name), rtol=0, msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("prior_kind", ["uniform", "shared", "table"])
def test_half_precision_inputs_accumulate_in_float32(dtype, prior_kind, chunk_rows):
    case = make_case(lead=(4, 16), d=16, v=100, prior_kind=prior_kind, seed=4)
    with chunk_rows(9):
        # a large loss scale, as fp16 mixed precision uses: applied before rounding
        assert_matches(case, "mean", dtype, torch.tensor(4096.0, dtype=torch.float64))
        assert_matches(case, "none", dtype, grad_output_for(case, "none"))


def test_without_bias_and_with_a_frozen_weight():
    case = make_case(bias=False)
    assert_matches(case, "mean", torch.float64)
    h = case.hidden.clone().requires_grad_()
    loss = linear_soft_target_cross_entropy(h, case.weight, case.targets, 0.1)
    loss.backward()
    ref_h = case.hidden.clone().requires_grad_()
    soft_target_cross_entropy(F.linear(ref_h, case.weight), case.targets, 0.1).backward()
    torch.testing.assert_close(h.grad, ref_h.grad)
    w = case.weight.clone().requires_grad_()
    linear_soft_target_cross_entropy(case.hidden, w, case.targets, 0.1).backward()
    assert w.grad is not None and w.grad.shape == w.shape


@pytest.mark.parametrize("prior_kind", ["uniform", "table"])
def test_autocast_casts_like_f_linear(prior_kind):
    # float32 parameters, bfloat16 autocast: computed as for bfloat16 inputs, float32 grads
    case = make_case(lead=(4, 10), d=16, v=64, prior_kind=prior_kind, seed=5)
    leaves = [t.float().requires_grad_() for t in (case.hidden, case.weight, case.bias)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_soft_target_cross_entropy(
            leaves[0],
            leaves[1],
            case.targets,
            case.epsilon.float(),
            case.prior,
            bias=leaves[2],
            **case.kwargs("mean"),
        )
    loss.backward()
    assert loss.dtype == torch.float32 and all(t.grad.dtype == torch.float32 for t in leaves)
    ref, ref_grads = reference(case, "mean", torch.bfloat16)
    bound = Bounds(case, "mean", ref, UNIT_ROUNDOFF[torch.float32])
    torch.testing.assert_close(loss.double(), ref, atol=bound.loss, rtol=0)
    for name, t, r in zip(("hidden", "weight", "bias"), leaves, ref_grads, strict=True):
        atol, rtol = getattr(bound, name), OUTPUT_ROUNDING[torch.bfloat16]
        torch.testing.assert_close(t.grad.double(), r, atol=atol, rtol=rtol, msg=name)


def test_uniform_is_pytorch_label_smoothing():
    # the convention: e/V on every class, the true one included
    case = make_case(lead=(30,), eps_kind="float", prior_kind="uniform", ignored=0.2)
    loss, _ = run(case, "mean")
    logits = F.linear(case.hidden, case.weight, case.bias)
    ref = F.cross_entropy(logits, case.targets, label_smoothing=0.3)
    torch.testing.assert_close(loss, ref)


def test_epsilon_zero_is_plain_cross_entropy_and_ignores_the_prior():
    case = make_case(lead=(30,), eps_kind="float")
    loss = linear_soft_target_cross_entropy(
        case.hidden, case.weight, case.targets, 0.0, case.prior, prior_index=case.prior_index
    )
    torch.testing.assert_close(
        loss, F.cross_entropy(F.linear(case.hidden, case.weight), case.targets)
    )


# --- ignored rows, shapes, chunk boundaries ---------------------------------------------


def test_custom_ignore_index_rows_contribute_nothing():
    case = make_case(lead=(20,), ignore_index=3, ignored=0.0)
    case.targets[::3] = 3  # a valid class index used as the ignore marker
    assert_matches(case, "mean", torch.float64)
    loss, (dh, _, _) = run(case, "none")
    assert torch.all(loss[::3] == 0) and torch.all(dh[::3] == 0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("prior_kind", PRIOR_KINDS)
def test_all_rows_ignored_give_zero_loss_and_zero_gradients(reduction, prior_kind):
    case = make_case(prior_kind=prior_kind, ignored=1.0)
    loss, grads = run(case, reduction, torch.float32)
    assert torch.equal(loss, torch.zeros_like(loss))
    for g in grads:
        assert torch.equal(g, torch.zeros_like(g))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_input_gives_zero_loss(reduction):
    case = make_case(lead=(0, 3), prior_kind="uniform")
    loss, grads = run(case, reduction)
    assert loss.shape == (case.targets.shape if reduction == "none" else ())
    assert loss.sum().item() == 0.0
    assert grads[0].shape == case.hidden.shape and torch.all(grads[1] == 0)


@pytest.mark.parametrize("lead", [(), (1,), (2, 3, 4)])
def test_leading_shapes(lead, chunk_rows):
    case = make_case(lead=lead, ignored=0.0 if lead == () else 0.3)
    with chunk_rows(5):
        for reduction in REDUCTIONS:
            assert_matches(case, reduction, torch.float64, grad_output_for(case, reduction))


@pytest.mark.parametrize("prior_kind", PRIOR_KINDS)
def test_chunkings_agree(prior_kind, chunk_rows):
    case = make_case(lead=(23,), prior_kind=prior_kind)
    results = []
    for rows in (1, 2, 7, 22, 23, 64, None):
        with chunk_rows(rows):
            results.append(run(case, "mean"))
    for loss, grads in results[1:]:
        torch.testing.assert_close(loss, results[0][0], atol=1e-13, rtol=0)
        for g, g0 in zip(grads, results[0][1], strict=True):
            torch.testing.assert_close(g, g0, atol=1e-13, rtol=0)


def test_chunk_rule_keeps_the_buffer_small():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    rows = fused_linear.chunk_rows(8192, 32000, cpu)  # the bench shape: ~2^23 elements
    assert rows >= fused_linear._MIN_CHUNK_ROWS and rows * 32000 <= fused_linear._CPU_CHUNK_ELEMENTS
    for n, v in [(8192, 32000), (100_000, 128_000), (512, 50_000), (10, 5), (100_000, 10)]:
        for device in (cpu, cuda):
            rows = fused_linear.chunk_rows(n, v, device)
            assert 1 <= rows <= n
            assert rows <= max(math.ceil(n / 16), fused_linear._MIN_CHUNK_ROWS)


@pytest.mark.parametrize("prior_kind", ["uniform", "shared", "table"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_never_allocates_the_logits(prior_kind, reduction, allocations):
    case = make_case(lead=(2048,), d=8, v=1024, prior_kind=prior_kind)
    h, w, b = (t.float().requires_grad_() for t in (case.hidden, case.weight, case.bias))
    with allocations() as mode:
        loss = linear_soft_target_cross_entropy(
            h, w, case.targets, case.epsilon.float(), case.prior, bias=b, **case.kwargs(reduction)
        )
        loss.sum().backward()
    # the chunk rule: at most ceil(N / 16) = 128 rows of V (the table prior: (4, V))
    assert mode.largest <= 2048 * 1024 // 16


# --- autograd behaviour -----------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("prior_kind", ["uniform", "shared", "rows", "table"])
@pytest.mark.parametrize("eps_kind", ["float", "rows"])
@pytest.mark.parametrize("rows", [None, 2])
def test_gradcheck_float64(reduction, prior_kind, eps_kind, rows, chunk_rows):
    case = make_case(lead=(5,), d=3, v=4, eps_kind=eps_kind, prior_kind=prior_kind, ignored=0.2)
    leaves = tuple(t.clone().requires_grad_() for t in (case.hidden, case.weight, case.bias))

    def loss(h, w, b):
        return linear_soft_target_cross_entropy(
            h, w, case.targets, case.epsilon, case.prior, bias=b, **case.kwargs(reduction)
        )

    with chunk_rows(rows):
        assert gradcheck(loss, leaves)


def test_no_gradient_reaches_epsilon_or_prior():
    case = make_case(lead=(10,), prior_kind="table")
    eps = case.epsilon.clone().requires_grad_()
    prior = case.prior.clone().requires_grad_()
    h = case.hidden.clone().requires_grad_()
    loss = linear_soft_target_cross_entropy(
        h, case.weight, case.targets, eps, prior, prior_index=case.prior_index
    )
    loss.backward()
    assert h.grad is not None and eps.grad is None and prior.grad is None


def test_needs_no_gradient_when_no_input_does():
    case = make_case(lead=(10,))
    args = (case.hidden, case.weight, case.targets, 0.1)
    assert not linear_soft_target_cross_entropy(*args, bias=case.bias).requires_grad
    with torch.no_grad():
        h = case.hidden.clone().requires_grad_()
        assert not linear_soft_target_cross_entropy(h, *args[1:]).requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_twice_with_retain_graph_gives_the_same_gradients(dtype):
    case = make_case(lead=(30,), d=8, v=50, prior_kind="table")
    h, w, b = (
        t.to(dtype, copy=True).requires_grad_() for t in (case.hidden, case.weight, case.bias)
    )
    loss = linear_soft_target_cross_entropy(
        h, w, case.targets, case.epsilon.float(), case.prior, bias=b, prior_index=case.prior_index
    )
    first = torch.autograd.grad(loss * 3.0, (h, w, b), retain_graph=True)  # scales in place
    second = torch.autograd.grad(loss * 3.0, (h, w, b), retain_graph=True)  # recomputes
    third = torch.autograd.grad(loss, (h, w, b))
    three = torch.tensor(3.0, dtype=torch.float64)
    ref, ref_grads = reference(case, "mean", dtype, three)
    bound = Bounds(case, "mean", ref, UNIT_ROUNDOFF[torch.float32], three)
    rtol = 2 * OUTPUT_ROUNDING[dtype]  # third * 3.0 rounds twice
    for name, *grads, r in zip(
        ("hidden", "weight", "bias"), first, second, third, ref_grads, strict=True
    ):
        atol = getattr(bound, name)
        for g in (grads[0], grads[1], grads[2] * 3.0):
            torch.testing.assert_close(g.double(), r, atol=atol, rtol=rtol, msg=name)


def test_double_backward_is_refused():
    case = make_case(lead=(10,))
    h = case.hidden.clone().requires_grad_()
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    loss = linear_soft_target_cross_entropy(h, case.weight, case.targets, 0.1) * scale
    (grad,) = torch.autograd.grad(loss, h, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()


# --- input checks -----------------------------------------------------------------------


def test_bad_inputs_are_refused():
    case = make_case(lead=(4,), d=3, v=5)
    h, w, y = case.hidden, case.weight, case.targets
    with pytest.raises(ValueError, match="reduction"):
        linear_soft_target_cross_entropy(h, w, y, reduction="max")
    with pytest.raises(TypeError, match="dtype"):
        linear_soft_target_cross_entropy(h.float(), w, y)
    with pytest.raises(TypeError, match="hidden"):
        linear_soft_target_cross_entropy(y, w, y)
    with pytest.raises(TypeError, match="targets"):
        linear_soft_target_cross_entropy(h, w, y.double())
    with pytest.raises(ValueError, match="hidden must be shaped"):
        linear_soft_target_cross_entropy(h[:, :2], w, y)
    with pytest.raises(ValueError, match="hidden must be shaped"):
        linear_soft_target_cross_entropy(h, w, y[:3])
    with pytest.raises(ValueError, match="weight"):
        linear_soft_target_cross_entropy(h, w[0], y)
    with pytest.raises(ValueError, match="bias"):
        linear_soft_target_cross_entropy(h, w, y, bias=torch.zeros(4, dtype=h.dtype))
    with pytest.raises(ValueError, match="out of range"):
        linear_soft_target_cross_entropy(h, w, torch.tensor([0, 1, 5, 2]))
    with pytest.raises(ValueError, match="epsilon"):
        linear_soft_target_cross_entropy(h, w, y, 1.5)
    with pytest.raises(ValueError, match="prior"):
        linear_soft_target_cross_entropy(h, w, y, 0.1, torch.ones(4, dtype=h.dtype) / 4)


# --- property test ----------------------------------------------------------------------


@st.composite
def cases(draw):
    lead = tuple(draw(st.lists(st.integers(0, 6), max_size=3)))
    d = draw(st.integers(1, 12))
    v = draw(st.one_of(st.integers(1, 8), st.integers(9, 400)))
    case = make_case(
        lead=lead,
        d=d,
        v=v,
        eps_kind=draw(st.sampled_from(EPS_KINDS)),
        prior_kind=draw(st.sampled_from(PRIOR_KINDS)),
        bias=draw(st.booleans()),
        ignored=draw(st.sampled_from([0.0, 0.3, 1.0])),
        seed=draw(st.integers(0, 2**31 - 1)),
        scale=draw(st.floats(0.1, 10.0)),
    )
    rows = draw(st.one_of(st.none(), st.integers(1, 40)))
    return case, draw(st.sampled_from(REDUCTIONS)), rows


@settings(max_examples=60, deadline=None)
@given(cases())
def test_property_equals_unfused(chunk_rows, problem):
    case, reduction, rows = problem
    with chunk_rows(rows):
        assert_matches(case, reduction, torch.float64, grad_output_for(case, reduction))
