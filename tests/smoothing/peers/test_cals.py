"""ClassAdaptiveMarginSmoothing (CALS) against a port of the authors' AugLagrangianClass
(by-liu/CALS calibrate/lagrangian/aug_lagrangian_class.py, penalty.py; the update calls of
engine/distributed_lagrangian_trainer.py): the loss (values and gradients, K from 2 to
1000), the multiplier and rho updates from validation passes (by hand and against the
port), state round trips and 2-process DDP equality."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from adaptls.smoothing import STRATEGIES, ClassAdaptiveMarginSmoothing
from adaptls.smoothing.driver import StrategyDriver
from adaptls.smoothing.validation_pass import ValidationPass

CLASSES = [2, 10, 1000]
IGNORE = -100

# Their updates read their own validation statistics, not the pass's figures.
PASS = ValidationPass(acc=0.5, confidence=0.5)


# ---------------------------------------------------------------------------- the reference
def ref_phr(h, lambd, rho):
    x = lambd + rho * h
    y_sup = 1 / (2 * rho) * (x**2 - lambd**2)
    y_inf = -1 / (2 * rho) * (lambd**2)
    grad_y_sup = x
    grad_y_inf = torch.zeros_like(h)
    sup = x >= 0
    return torch.where(sup, y_sup, y_inf), torch.where(sup, grad_y_sup, grad_y_inf)


class RefAugLagrangianClass:
    """The authors' class, single process, on the CPU (their ``.cuda()`` dropped)."""

    def __init__(
        self,
        num_classes,
        margin=10,
        lambd_min=1e-6,
        lambd_max=1e6,
        lambd_step=1,
        rho_min=1,
        rho_max=10,
        rho_step=-1,
        gamma=1.2,
        tao=0.9,
        dtype=torch.float64,
    ):
        self.num_classes, self.margin = num_classes, margin
        self.lambd_min, self.lambd_max, self.lambd_step = lambd_min, lambd_max, lambd_step
        self.rho_min, self.rho_max = rho_min, rho_max
        self.rho_update, self.rho_step = rho_step > 0, rho_step
        self.gamma, self.tao = gamma, tao
        self.lambd = self.lambd_min * torch.ones(num_classes, dtype=dtype)
        self.rho = self.rho_min * torch.ones(num_classes, dtype=dtype)
        self.prev_constraints, self.curr_constraints = None, None

    def get_constraints(self, logits, dim=-1):
        max_values = logits.amax(dim=dim, keepdim=True)
        diff = max_values - logits
        return (diff - self.margin) / self.margin  # normalize=True

    def get(self, logits):
        h = self.get_constraints(logits)
        p, _ = ref_phr(h, self.lambd, self.rho)
        return p.mean(), h.mean()

    def reset_update_lambd(self, epoch):
        self.grad_p_sum = torch.zeros_like(self.lambd)
        self.sample_num = 0
        self.curr_constraints = torch.zeros_like(self.rho)

    def update_lambd(self, logits, epoch):
        h = self.get_constraints(logits)
        _, grad_p = ref_phr(h, self.lambd, self.rho)
        grad_p = torch.clamp(grad_p, min=self.lambd_min, max=self.lambd_max)
        self.grad_p_sum += grad_p.sum(dim=0)
        self.sample_num += grad_p.shape[0]
        self.curr_constraints += h.sum(dim=0)

    def set_lambd(self, epoch):
        if (epoch + 1) % self.lambd_step == 0:
            grad_p_mean = self.grad_p_sum / self.sample_num
            self.lambd = torch.clamp(grad_p_mean, min=self.lambd_min, max=self.lambd_max)

    def update_rho(self, epoch):
        if self.rho_update:
            self.curr_constraints = self.curr_constraints / self.sample_num
            if (epoch + 1) % self.rho_step == 0 and self.prev_constraints is not None:
                self.rho = torch.where(
                    self.curr_constraints > (self.prev_constraints.clamp(min=0) * self.tao),
                    self.gamma * self.rho,
                    self.rho,
                )
                self.rho = torch.clamp(self.rho, min=self.rho_min, max=self.rho_max)
            self.prev_constraints = self.curr_constraints

    def validate(self, batches, epoch):
        """What ``eval_epoch(phase="val")`` does with the lagrangian."""
        self.reset_update_lambd(epoch)
        for x, y in batches:
            x = x[y != IGNORE]  # the authors' data has no ignored rows
            self.update_lambd(x, epoch)
        self.set_lambd(epoch)
        self.update_rho(epoch)


def reference_loss(x, y, ref, *, kept):
    x, y = kept(x, y)
    penalty, _ = ref.get(x)
    return F.cross_entropy(x, y) + penalty


# ---------------------------------------------------------------------------- helpers
def built(k, **hparams):
    strategy = ClassAdaptiveMarginSmoothing(**hparams)
    strategy.setup(num_classes=k)
    return strategy


def with_multipliers(k, seed=0):
    """A strategy and the reference holding the same non-trivial lambda and rho: both PHR
    branches are taken for logits of scale ~8 and margin 10."""
    g = torch.Generator().manual_seed(seed)
    lambd = torch.rand(k, generator=g, dtype=torch.float64) * 3
    lambd[: k // 2] = 1e-6
    rho = 1 + torch.rand(k, generator=g, dtype=torch.float64) * 9
    strategy = built(k)
    strategy.lambdas, strategy.rhos = lambd.clone(), rho.clone()
    ref = RefAugLagrangianClass(k)
    ref.lambd, ref.rho = lambd.clone(), rho.clone()
    return strategy, ref


def validation_batches(k, n_batches=5, rows=12, seed=0, scale=8.0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.randn(rows, k, generator=g, dtype=torch.float64) * scale
        y = torch.randint(0, k, (rows,), generator=g)
        y[0] = IGNORE
        out.append((x, y))
    return out


def validate(strategy, batches, epoch, max_epochs=30):
    StrategyDriver(strategy).set_epoch(epoch, max_epochs)
    strategy.eval()
    for x, y in batches:
        strategy(x, y)  # the validation loss: moves nothing
        strategy.observe_validation(x, y)
    strategy.on_validation_end(PASS)
    strategy.train()


# ---------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize("scale", [3.0, 8.0, 30.0])
def test_loss_matches_the_reference_in_float64(batch, check_against, kept, k, scale):
    strategy, ref = with_multipliers(k, seed=k)
    x, y = batch(k, scale=scale)
    ref_fn = lambda a, b: reference_loss(a, b, ref, kept=kept)  # noqa: E731
    check_against(strategy, ref_fn, x, y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", CLASSES)
def test_initial_multipliers_match_the_reference(batch, check_against, kept, k):
    ref = RefAugLagrangianClass(k)
    x, y = batch(k, scale=8.0)
    check_against(
        built(k), lambda a, b: reference_loss(a, b, ref, kept=kept), x, y, rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("k", CLASSES)
def test_tied_maxima_share_the_gradient_as_amax_does(check_against, kept, k):
    strategy, ref = with_multipliers(k, seed=1)
    g = torch.Generator().manual_seed(k)
    x = torch.randint(0, 4, (16, k), generator=g).double() * 8
    y = torch.randint(0, k, (16,), generator=g)
    y[3] = IGNORE
    ref_fn = lambda a, b: reference_loss(a, b, ref, kept=kept)  # noqa: E731
    check_against(strategy, ref_fn, x, y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", CLASSES)
def test_float32_and_extreme_logits(batch, check_against, kept, k):
    strategy, ref = with_multipliers(k, seed=2)
    strategy.lambdas, strategy.rhos = strategy.lambdas.float(), strategy.rhos.float()
    ref_fn = lambda a, b: reference_loss(a, b, ref, kept=kept)  # noqa: E731
    x, y = batch(k, scale=8.0, dtype=torch.float32, seed=1)
    check_against(strategy, ref_fn, x, y, rtol=1e-5, atol=1e-5)
    x, y = batch(k, scale=1e4, dtype=torch.float32, seed=2)  # distances of ~1e4: h ~ 1e3
    check_against(strategy, ref_fn, x, y, rtol=1e-4, atol=1e-3)


def test_ignored_rows_with_huge_logits_change_nothing():
    strategy, _ = with_multipliers(5)
    x = torch.randn(6, 5, dtype=torch.float64) * 4
    y = torch.tensor([0, 1, 2, 3, 4, IGNORE])
    x[5] = torch.tensor(
        [1e300, -1e300, 0, 0, 0], dtype=torch.float64
    )  # x^2 overflows: the row is dropped
    leaf = x.clone().requires_grad_()
    loss = strategy(leaf, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(leaf.grad).all()
    assert (leaf.grad[5] == 0).all()
    torch.testing.assert_close(loss, strategy(x[:5], y[:5]))


def test_penalty_and_constraint_figures_are_the_reference_meters(batch, kept):
    strategy, ref = with_multipliers(10)
    x, y = batch(10, scale=8.0)
    strategy(x, y)
    penalty, constraint = ref.get(kept(x, y)[0])
    values = strategy.log_values()
    torch.testing.assert_close(values["smoothing/penalty"], penalty)
    torch.testing.assert_close(values["smoothing/constraint"], constraint)


def test_schedule_scales_the_penalty(batch, kept):
    x, y = batch(6, scale=8.0)
    strategy = built(6, schedule={"name": "step", "milestones": [1], "gamma": 0.5})
    strategy.lambdas = torch.full((6,), 2.0, dtype=torch.float64)
    StrategyDriver(strategy).set_epoch(1, 4)
    s = strategy.schedule_factor
    assert 0 < s < 1
    ce = F.cross_entropy(*kept(x, y))
    torch.testing.assert_close(strategy(x, y), ce + s * strategy.log_values()["smoothing/penalty"])


# ---------------------------------------------------------------------------- the updates
def test_one_pass_by_hand():
    """margin 2, K 3. Row [4, 1, 0]: h = [-1, 0.5, 1]; row [0, 2, 0]: h = [0, -1, 0]. With
    lambda 1e-6 and rho 1, P' = [0, 0.5, 1] + 1e-6 and [1e-6, 0, 1e-6], clamped to >= 1e-6.
    No class's mean h sits on the rho step's threshold (0.9 * max(prev, 0))."""
    strategy = built(3, margin=2.0, rho_step=2)
    x = torch.tensor([[4.0, 1, 0], [0, 2, 0], [9, 9, 9]], dtype=torch.float64)
    y = torch.tensor([0, 1, IGNORE])  # the ignored row counts nowhere
    validate(strategy, [(x, y)], epoch=0)
    e = 1e-6
    torch.testing.assert_close(strategy.lambdas, torch.tensor([e, 0.25 + e, 0.5 + e]).double())
    torch.testing.assert_close(strategy.prev_constraint, torch.tensor([-0.5, -0.25, 0.5]).double())
    assert strategy.rhos.tolist() == [1, 1, 1]  # epoch 0: (0 + 1) % 2 != 0
    # Epoch 1, the same rows: lambda from the new multipliers; rho steps ((1 + 1) % 2 == 0)
    # where the mean h (again [-0.5, -0.25, 0.5]) > 0.9 * max(prev, 0) = [0, 0, 0.45].
    validate(strategy, [(x, y)], epoch=1)
    torch.testing.assert_close(strategy.lambdas, torch.tensor([e, 0.375 + e, 1 + e]).double())
    torch.testing.assert_close(strategy.rhos, torch.tensor([1, 1, 1.2]).double())
    assert int(strategy.rho_epoch) == 1
    for name in ("val_grad_sum", "val_constraint_sum", "val_rows"):
        assert not getattr(strategy, name).any(), name  # reset after the pass


@pytest.mark.parametrize("k", [2, 10, 1000])
def test_passes_match_the_reference(k):
    """Six epochs, rho_step 2, lambda_step 1: lambda, rho and the previous mean constraint
    follow the authors' updates exactly."""
    strategy = built(k, rho_step=2, margin=5.0)
    ref = RefAugLagrangianClass(k, margin=5.0, rho_step=2)
    for epoch in range(6):
        batches = validation_batches(k, seed=epoch, scale=6.0 + epoch)
        validate(strategy, batches, epoch)
        ref.validate(batches, epoch)
        torch.testing.assert_close(strategy.lambdas, ref.lambd, rtol=1e-12, atol=0)
        torch.testing.assert_close(strategy.rhos, ref.rho, rtol=1e-12, atol=0)
        torch.testing.assert_close(strategy.prev_constraint, ref.prev_constraints)
    assert (strategy.rhos > 1).any()  # the schedule did something


def test_lambda_step_and_the_rho_clamps_follow_the_reference():
    k = 4
    strategy = built(k, lambda_step=3, rho_step=1, rho_max=1.3, lambda_max=0.5, margin=3.0)
    ref = RefAugLagrangianClass(k, margin=3.0, lambd_step=3, lambd_max=0.5, rho_step=1, rho_max=1.3)
    for epoch in range(7):
        batches = validation_batches(k, seed=epoch, scale=10.0)
        validate(strategy, batches, epoch)
        ref.validate(batches, epoch)
        torch.testing.assert_close(strategy.lambdas, ref.lambd, rtol=1e-12, atol=0)
        torch.testing.assert_close(strategy.rhos, ref.rho, rtol=1e-12, atol=0)
    assert strategy.rhos.max() == 1.3 and strategy.lambdas.max() <= 0.5


def test_rho_steps_once_per_epoch_even_with_several_validations():
    strategy = built(3, rho_step=1, margin=1.0)
    batches = validation_batches(3, scale=20.0)  # far beyond the margin: h grows, rho steps
    validate(strategy, batches, epoch=0)
    validate(strategy, batches, epoch=1)
    rho = strategy.rhos.clone()
    assert (rho > 1).any()
    validate(strategy, batches, epoch=1)  # a second pass in epoch 1 (val_check_interval)
    assert torch.equal(strategy.rhos, rho)
    validate(strategy, batches, epoch=2)
    assert (strategy.rhos > rho).any()


def test_rho_step_zero_never_moves_rho():
    strategy = built(3, rho_step=0, margin=1.0)
    for epoch in range(4):
        validate(strategy, validation_batches(3, seed=epoch, scale=20.0), epoch)
    assert strategy.rhos.tolist() == [1, 1, 1]


def test_a_pass_without_counted_rows_changes_nothing():
    strategy = built(3, rho_step=1)
    validate(strategy, validation_batches(3), epoch=0)
    before = {k: v.clone() for k, v in strategy.get_extra_state().items()}
    x = torch.randn(4, 3)
    validate(strategy, [(x, torch.full((4,), IGNORE))], epoch=1)
    validate(strategy, [], epoch=2)
    for key, value in strategy.get_extra_state().items():
        assert torch.equal(value.nan_to_num(), before[key].nan_to_num()), key


def test_training_and_evaluation_forwards_move_nothing(batch):
    strategy = built(5)
    before = {k: v.clone() for k, v in strategy.get_extra_state().items()}
    x, y = batch(5, scale=8.0)
    strategy(x, y)
    strategy.observe(x, y)
    strategy.eval()
    strategy(x, y)
    for key, value in strategy.get_extra_state().items():
        assert torch.equal(value.nan_to_num(), before[key].nan_to_num()), key


# ---------------------------------------------------------------------------- state
def test_state_round_trip_continues_identically(batch):
    strategy = built(6, rho_step=1, margin=3.0)
    for epoch in range(3):
        validate(strategy, validation_batches(6, seed=epoch, scale=10.0), epoch)
    fresh = built(6, rho_step=1, margin=3.0)
    fresh.load_state_dict(strategy.state_dict())
    x, y = batch(6, scale=8.0)
    assert torch.equal(fresh(x, y), strategy(x, y))
    for s in (strategy, fresh):
        validate(s, validation_batches(6, seed=9, scale=10.0), epoch=3)
    for key, value in strategy.get_extra_state().items():
        assert torch.equal(fresh.get_extra_state()[key].nan_to_num(), value.nan_to_num()), key
    assert list(strategy.named_buffers()) == []


def test_registry_contract_hparams_summary_and_errors(batch):
    assert STRATEGIES["cals"] is ClassAdaptiveMarginSmoothing
    strategy = built(6, margin=4.0, rho_step=3)
    assert type(strategy)(**strategy.hparams()).hparams() == strategy.hparams()
    assert "margin=4.0" in repr(strategy) and "rho_step=3" in repr(strategy)
    x, y = batch(6, scale=8.0)
    rows = strategy(x, y, reduction="none")
    counted = y != IGNORE
    assert (rows[~counted] == 0).all()
    torch.testing.assert_close(strategy(x, y, reduction="sum"), rows.sum())
    torch.testing.assert_close(strategy(x, y), rows.sum() / counted.sum())
    summary = json.loads(json.dumps(strategy.summary()))
    assert summary["name"] == "cals" and summary["hparams"] == strategy.hparams()
    for key, value in strategy.log_values().items():
        assert torch.is_tensor(value) and value.dim() == 0 and isinstance(summary[key], float)
    for bad in ({"margin": 0.0}, {"rho_step": -1}, {"lambda_step": 0}, {"rho_step": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ClassAdaptiveMarginSmoothing(**bad)
    with pytest.raises(ValueError, match="rho_min <= rho_max"):
        ClassAdaptiveMarginSmoothing(rho_min=5.0, rho_max=2.0)


def test_loss_needs_no_host_sync_and_low_precision_accumulates_in_float32():
    """On meta tensors (the strategy's state moved along) any .item() fails."""
    strategy = built(6).to("meta")
    x = torch.empty(8, 6, device="meta", requires_grad=True)
    y = torch.empty(8, dtype=torch.long, device="meta")
    (grad,) = torch.autograd.grad(strategy.loss(x, y, None, "mean"), x)
    assert grad.shape == x.shape
    strategy = built(6)
    logits = (torch.randn(8, 6) * 20).bfloat16().requires_grad_()
    y = torch.randint(0, 6, (8,))
    loss = strategy(logits, y)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(logits.grad).all()
    torch.testing.assert_close(loss, strategy(logits.detach().float(), y))


def test_sgd_lowers_the_loss():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 8, generator=g) * 2
    y = torch.randint(0, 5, (200,), generator=g)
    x = centres[y] + torch.randn(200, 8, generator=g)
    model = torch.nn.Linear(8, 5)
    with torch.no_grad():
        model.weight.mul_(8)
    strategy = built(5)
    strategy.lambdas = torch.full((5,), 2.0, dtype=torch.float64)  # an active penalty
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = strategy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.7 * losses[0]


# ---------------------------------------------------------------------------- DDP
WORLD = 2
DDP_K = 7
DDP_EPOCHS = 4


def ddp_run(strategy, rank_batches):
    """The module's call order: an epoch end (it reduces every per-epoch state, the
    validation sums included), then a validation pass of fit."""
    for epoch in range(DDP_EPOCHS):
        StrategyDriver(strategy).set_epoch(epoch, DDP_EPOCHS)
        StrategyDriver(strategy).on_epoch_end()
        strategy.eval()
        for x, y in rank_batches(epoch):
            strategy.observe_validation(x, y)
        strategy.on_validation_end(PASS)
        strategy.train()


def ddp_batches(epoch, parts):
    # uneven: rank 0 sees batches 0, 2, 4; rank 1 sees 1, 3
    batches = validation_batches(DDP_K, n_batches=5, seed=epoch, scale=12.0)
    return [b for i, b in enumerate(batches) if i % WORLD in parts]


def ddp_strategy():
    return built(DDP_K, rho_step=2, margin=4.0)


def worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        strategy = ddp_strategy()
        ddp_run(strategy, lambda epoch: ddp_batches(epoch, {rank}))
        torch.save(strategy.get_extra_state(), Path(out_dir) / f"cals_rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.slow
def test_every_rank_ends_with_the_multipliers_one_process_computes(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    single = ddp_strategy()
    ddp_run(single, lambda epoch: ddp_batches(epoch, set(range(WORLD))))
    expected = single.get_extra_state()
    assert (expected["rhos"] > 1).any() and (expected["lambdas"] > 1e-6).any()
    states = [torch.load(tmp_path / f"cals_rank{r}.pt") for r in range(WORLD)]
    for key, value in expected.items():
        assert torch.equal(states[0][key].nan_to_num(), states[1][key].nan_to_num()), key
        torch.testing.assert_close(states[0][key], value, rtol=1e-12, atol=1e-15, msg=key)
