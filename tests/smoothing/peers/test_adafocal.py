"""AdaFocalLoss against a port of the authors' code (3mcloud/adafocal losses/adafocal.py,
the bins and gaps of utils/metrics.py adaECE_error_mukhoti, the validation statistics of
test_classification_net_adafocal): the loss (values and gradients, K from 2 to 1000), the
per-sample bin lookup, the equal-mass bins, the gamma updates (by hand and against the
port), state round trips and 2-process DDP equality."""

from __future__ import annotations

import collections
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from adaptls.smoothing import STRATEGIES, AdaFocalLoss
from adaptls.smoothing.driver import StrategyDriver
from adaptls.smoothing.peers.adafocal import equal_mass_edges, validation_gaps
from adaptls.smoothing.validation_pass import ValidationPass

CLASSES = [2, 10, 1000]
IGNORE = -100

# Their updates read their own validation statistics, not the pass's figures.
PASS = ValidationPass(acc=0.5, confidence=0.5)


# ---------------------------------------------------------------------------- the reference
class RefAdaFocal(torch.nn.Module):
    """The authors' AdaFocal, verbatim but for the bin-stats file it appends to."""

    def __init__(self, args, device=None):
        super().__init__()
        self.num_bins = args.num_bins
        self.lamda = args.adafocal_lambda
        self.gamma_initial = args.adafocal_gamma_initial
        self.switch_pt = args.adafocal_switch_pt
        self.gamma_max = args.adafocal_gamma_max
        self.gamma_min = args.adafocal_gamma_min
        self.device = device
        self.bin_stats = collections.defaultdict(dict)
        for bin_no in range(self.num_bins):
            self.bin_stats[bin_no]["lower_boundary"] = bin_no * (1 / self.num_bins)
            self.bin_stats[bin_no]["upper_boundary"] = (bin_no + 1) * (1 / self.num_bins)
            self.bin_stats[bin_no]["gamma"] = self.gamma_initial

    def update_bin_stats(self, val_adabin_dict):
        for bin_no in range(self.num_bins):
            prev_gamma = self.bin_stats[bin_no]["gamma"]
            exp_term = val_adabin_dict[bin_no]["calibration_gap"]
            if prev_gamma > 0:
                next_gamma = prev_gamma * math.exp(self.lamda * exp_term)
            else:
                next_gamma = prev_gamma * math.exp(-self.lamda * exp_term)
            if abs(next_gamma) < self.switch_pt:
                if next_gamma > 0:
                    next_gamma = -self.switch_pt
                else:
                    next_gamma = self.switch_pt
            self.bin_stats[bin_no]["gamma"] = max(min(next_gamma, self.gamma_max), self.gamma_min)
            self.bin_stats[bin_no]["lower_boundary"] = val_adabin_dict[bin_no]["lower_bound"]
            self.bin_stats[bin_no]["upper_boundary"] = val_adabin_dict[bin_no]["upper_bound"]

    def get_gamma_per_sample(self, pt):
        gamma_list = []
        batch_size = pt.shape[0]
        for i in range(batch_size):
            pt_sample = pt[i].item()
            for bin_no, stats in self.bin_stats.items():
                if bin_no == 0 and pt_sample < stats["upper_boundary"]:  # noqa: SIM114
                    break
                elif bin_no == self.num_bins - 1 and pt_sample >= stats["lower_boundary"]:  # noqa: SIM114
                    break
                elif pt_sample >= stats["lower_boundary"] and pt_sample < stats["upper_boundary"]:
                    break
            gamma_list.append(stats["gamma"])
        return torch.tensor(gamma_list).to(self.device)

    def forward(self, input, target):
        target = target.view(-1, 1)
        logpt = F.log_softmax(input, dim=1)
        logpt = logpt.gather(1, target)
        logpt = logpt.view(-1)
        pt = logpt.exp()
        gamma = self.get_gamma_per_sample(pt)
        gamma_sign = torch.sign(gamma)
        gamma_mag = torch.abs(gamma)
        pt = gamma_sign * pt
        loss = -1 * ((1 - pt + 1e-20) ** gamma_mag) * logpt
        return loss.sum()


def ref_args(num_bins=15):
    return SimpleNamespace(
        num_bins=num_bins,
        adafocal_lambda=1.0,
        adafocal_gamma_initial=1.0,
        adafocal_gamma_max=20.0,
        adafocal_gamma_min=-2.0,
        adafocal_switch_pt=0.2,
    )


def ref_adaece_bins(confs, preds, labels, num_bins=15):
    """adaECE_error_mukhoti's bin dictionary."""

    def histedges_equal_n(x):
        npt = len(x)
        return np.interp(np.linspace(0, npt, num_bins + 1), np.arange(npt), np.sort(x))

    confidences = torch.FloatTensor(confs)
    predictions, labels = torch.FloatTensor(preds), torch.FloatTensor(labels)
    accuracies = predictions.eq(labels)
    _, bin_boundaries = np.histogram(
        confidences.cpu().detach(), histedges_equal_n(confidences.cpu().detach())
    )
    bin_dict = collections.defaultdict(dict)
    for bin_num, (bin_lower, bin_upper) in enumerate(
        zip(bin_boundaries[:-1], bin_boundaries[1:], strict=True)  # noqa: RUF007
    ):
        in_bin = confidences.gt(bin_lower.item()) * confidences.le(bin_upper.item())
        prop_in_bin = in_bin.float().mean()
        if prop_in_bin.item() > 0:
            accuracy_in_bin = accuracies[in_bin].float().mean()
            avg_confidence_in_bin = confidences[in_bin].mean()
        else:
            accuracy_in_bin = torch.zeros(1)
            avg_confidence_in_bin = torch.zeros(1)
        bin_dict[bin_num]["lower_bound"] = bin_lower
        bin_dict[bin_num]["upper_bound"] = bin_upper
        bin_dict[bin_num]["calibration_gap"] = avg_confidence_in_bin.item() - accuracy_in_bin.item()
    return bin_dict


def ref_validation(batches, num_bins=15):
    """test_classification_net_adafocal's lists, then the bins (counted rows only)."""
    confs, preds, labels = [], [], []
    for x, y in batches:
        keep = y != IGNORE
        log_confidence_vals, predictions = torch.max(F.log_softmax(x[keep], dim=1), dim=1)
        confs.extend(log_confidence_vals.exp().tolist())
        preds.extend(predictions.tolist())
        labels.extend(y[keep].tolist())
    return ref_adaece_bins(confs, preds, labels, num_bins)


def ref_state(ref):
    f64 = torch.float64
    gammas = torch.tensor([ref.bin_stats[b]["gamma"] for b in range(ref.num_bins)], dtype=f64)
    lowers = [float(ref.bin_stats[b]["lower_boundary"]) for b in range(ref.num_bins)]
    upper = float(ref.bin_stats[ref.num_bins - 1]["upper_boundary"])
    return gammas, torch.tensor([*lowers, upper], dtype=f64)


# ---------------------------------------------------------------------------- helpers
#: float32-exact gammas of both signs (the reference hands its gammas over in float32)
GAMMAS = [-2.0, 0.25, -1.5, 20.0, 0.5, -0.25, 1.0, 3.0, -0.75, 8.0, 1.5, 12.0, 2.0, 5.0, 16.0]


def built(k, **hparams):
    strategy = AdaFocalLoss(**hparams)
    strategy.setup(num_classes=k)
    return strategy


def validation_batches(k, n_batches=4, rows=25, seed=0, scale=3.0, ties=False):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.randn(rows, k, generator=g, dtype=torch.float64) * scale
        if ties:
            x = x.round()  # few distinct confidences: tied values, repeated edges
        y = torch.randint(0, k, (rows,), generator=g)
        right = torch.rand(rows, generator=g) < 0.6  # some right, some wrong at any K
        y = torch.where(right, x.argmax(1), y)
        y[0] = IGNORE
        out.append((x, y))
    return out


def validate(strategy, batches):
    strategy.eval()
    for x, y in batches:
        strategy(x, y)  # the validation loss: moves nothing
        strategy.observe_validation(x, y)
    strategy.on_validation_end(PASS)
    strategy.train()


def matched(k, seed=0, ties=False):
    """A strategy and the reference after one validation pass (non-uniform edges), both
    then holding GAMMAS."""
    strategy, ref = built(k), RefAdaFocal(ref_args())
    batches = validation_batches(k, seed=seed, ties=ties)
    validate(strategy, batches)
    ref.update_bin_stats(ref_validation(batches))
    strategy.gammas = torch.tensor(GAMMAS, dtype=torch.float64)
    for b, gamma in enumerate(GAMMAS):
        ref.bin_stats[b]["gamma"] = gamma
    return strategy, ref


# ---------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize("scale", [1.0, 3.0, 8.0])
def test_loss_matches_the_reference_in_float64(batch, check_against, kept, k, scale):
    strategy, ref = matched(k, seed=k)
    x, y = batch(k, scale=scale, n=60)
    check_against(
        lambda a, b: strategy(a, b, reduction="sum"),
        lambda a, b: ref(*kept(a, b)),
        x,
        y,
        rtol=1e-9,
        atol=1e-12,
    )


@pytest.mark.parametrize("k", CLASSES)
def test_initial_bins_match_the_reference(batch, check_against, kept, k):
    ref = RefAdaFocal(ref_args())
    strategy = built(k)
    x, y = batch(k, scale=2.0, n=60)
    check_against(
        lambda a, b: strategy(a, b, reduction="sum"),
        lambda a, b: ref(*kept(a, b)),
        x,
        y,
        rtol=1e-9,
        atol=1e-12,
    )
    assert strategy.bin_edges.tolist() == [
        ref.bin_stats[b]["lower_boundary"] for b in range(15)
    ] + [ref.bin_stats[14]["upper_boundary"]]


@pytest.mark.parametrize("k", CLASSES)
def test_float32_and_extreme_logits(batch, check_against, kept, k):
    strategy, ref = matched(k, seed=1)
    ours = lambda a, b: strategy(a, b, reduction="sum")  # noqa: E731
    ref_fn = lambda a, b: ref(*kept(a, b))  # noqa: E731
    x, y = batch(k, scale=3.0, dtype=torch.float32, seed=1, n=60)

    # a float32 p_t next to an edge may fall in another bin than the float64 reference's
    def bins(logits):
        return strategy.bin_of(F.log_softmax(logits, 1).gather(1, y.clamp(0)[:, None])[:, 0].exp())

    same = bins(x) == bins(x.double())
    x, y = x[same], y[same]
    check_against(ours, ref_fn, x, y, rtol=1e-4, atol=1e-4)
    x, y = batch(k, scale=1e4, dtype=torch.float32, seed=2, n=60)  # p_t 0 or 1
    value = strategy(x.requires_grad_(), y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()
    strategy.gammas = torch.full((15,), 0.2, dtype=torch.float64)  # |gamma| < 1 at p_t = 1
    x.grad = None
    strategy(x, y).backward()
    assert torch.isfinite(x.grad).all()


def test_all_negative_and_switch_point_gammas_match_the_reference(batch, check_against, kept):
    for gamma in (-2.0, -0.25, 0.25, 20.0):
        strategy, ref = built(10), RefAdaFocal(ref_args())
        strategy.gammas = torch.full((15,), gamma, dtype=torch.float64)
        for b in range(15):
            ref.bin_stats[b]["gamma"] = gamma
        x, y = batch(10, scale=4.0, n=40)
        check_against(
            lambda a, b, s=strategy: s(a, b, reduction="sum"),
            lambda a, b, r=ref: r(*kept(a, b)),
            x,
            y,
            rtol=1e-9,
            atol=1e-12,
        )


def test_the_bin_lookup_is_the_reference_loop():
    """Gamma b = b identifies the bin the reference's loop picks, edges with repeats
    included, p_t exactly on edges, 0, 1 and NaN."""
    strategy, ref = built(4), RefAdaFocal(ref_args())
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 2, (60, 4), generator=g).double()  # a few distinct confidences
    batches = [(x, torch.randint(0, 4, (60,), generator=g))]
    validate(strategy, batches)
    ref.update_bin_stats(ref_validation(batches))
    edges = strategy.bin_edges
    assert (edges[1:] == edges[:-1]).any()  # repeated edges are exercised
    for b in range(15):
        ref.bin_stats[b]["gamma"] = float(b)
    pts = torch.cat(
        [
            torch.rand(300, generator=g, dtype=torch.float64),
            edges,
            torch.nextafter(edges, torch.zeros_like(edges)),
            torch.tensor([0.0, 1.0, float("nan")], dtype=torch.float64),
        ]
    )
    expected = ref.get_gamma_per_sample(pts).long()
    assert torch.equal(strategy.bin_of(pts), expected)


def test_ignored_rows_count_nowhere(batch, kept):
    strategy, _ = matched(6)
    x, y = batch(6, scale=3.0)
    torch.testing.assert_close(strategy(x, y, reduction="sum"), strategy(*kept(x, y), "sum"))
    rows = strategy(x, y, reduction="none")
    counted = y != IGNORE
    assert (rows[~counted] == 0).all()
    torch.testing.assert_close(strategy(x, y), rows.sum() / counted.sum())


def test_figures_are_the_batch_gammas(batch, kept):
    strategy, ref = matched(10)
    x, y = batch(10, scale=3.0, n=60)
    strategy(x, y)
    xk, yk = kept(x, y)
    pt = F.log_softmax(xk, 1).gather(1, yk[:, None]).exp()[:, 0]
    gammas = ref.get_gamma_per_sample(pt).double()
    values = strategy.log_values()
    torch.testing.assert_close(values["smoothing/gamma_mean"], gammas.mean())
    torch.testing.assert_close(
        values["smoothing/inverse_fraction"], (gammas < 0).double().mean().float()
    )


# ---------------------------------------------------------------------------- bins and updates
@pytest.mark.parametrize("n", [1, 2, 5, 14, 15, 16, 200, 1001])
@pytest.mark.parametrize("ties", [False, True])
def test_bins_and_gaps_match_the_reference(n, ties):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, 5, generator=g, dtype=torch.float64) * 3
    if ties:
        x = x.round()
    y = torch.randint(0, 5, (n,), generator=g)
    log_conf, pred = F.log_softmax(x, 1).max(1)
    conf = log_conf.exp().float()
    edges, gaps = validation_gaps(conf, (pred == y).double(), 15)
    ref = ref_adaece_bins(log_conf.exp().tolist(), pred.tolist(), y.tolist())
    ref_edges = [float(ref[b]["lower_bound"]) for b in range(15)] + [float(ref[14]["upper_bound"])]
    assert edges.tolist() == ref_edges  # the same float64 numbers as np.interp's
    ref_gaps = torch.tensor([ref[b]["calibration_gap"] for b in range(15)], dtype=torch.float64)
    torch.testing.assert_close(gaps, ref_gaps, rtol=0, atol=1e-6)  # theirs: float32 means


def test_equal_mass_edges_is_np_interp():
    g = torch.Generator().manual_seed(1)
    for n in (1, 3, 7, 15, 16, 29, 100):
        values = torch.rand(n, generator=g, dtype=torch.float64).sort().values
        expected = np.interp(np.linspace(0, n, 16), np.arange(n), values.numpy())
        assert equal_mass_edges(values, 15).tolist() == expected.tolist()


def test_one_pass_by_hand():
    """B = 2, confidences 0.6, 0.7, 0.8, 0.9 (K = 2): edges [0.6, 0.8, 0.9]; bin 0 holds
    (0.6, 0.8] = {0.7 right, 0.8 wrong}: gap 0.75 - 0.5; bin 1 holds {0.9 right}: gap -0.1;
    0.6 (the smallest) is in no bin, as in the reference."""
    c = torch.tensor([0.6, 0.7, 0.8, 0.9, 0.95], dtype=torch.float64)
    x = torch.stack([torch.log(c / (1 - c)), torch.zeros(5, dtype=torch.float64)], 1)
    y = torch.tensor([1, 0, 1, 0, IGNORE])
    strategy = built(2, num_bins=2)
    validate(strategy, [(x[:2], y[:2]), (x[2:], y[2:])])
    conf = c.float().double()
    torch.testing.assert_close(strategy.bin_edges, conf[[0, 2, 3]], rtol=0, atol=0)
    torch.testing.assert_close(strategy.gaps, torch.tensor([0.25, -0.1]).double())
    torch.testing.assert_close(strategy.gammas, torch.tensor([0.25, -0.1]).double().exp())
    validate(strategy, [(x, y)])
    torch.testing.assert_close(strategy.gammas, torch.tensor([0.5, -0.2]).double().exp())


def test_update_rule_by_hand_and_as_the_reference():
    start = [0.21, -0.21, 0.25, -0.25, 19.0, -1.9, 1.0, 1.0]
    gaps = [-0.1, 0.1, 0.5, -0.5, 0.2, -0.2, 0.0, 0.3]
    expected = [
        -0.2,  # 0.19: below the switch point, positive -> inverse focal
        0.2,  # -0.19: below the switch point, negative -> focal
        0.25 * math.exp(0.5),
        -0.25 * math.exp(0.5),  # negative gamma: exp(-lambda gap)
        20.0,  # clipped
        -2.0,  # clipped
        1.0,
        math.exp(0.3),
    ]
    strategy = built(3, num_bins=8)
    strategy.gammas = torch.tensor(start, dtype=torch.float64)
    got = strategy.updated_gammas(torch.tensor(gaps, dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    ref = RefAdaFocal(ref_args(8))
    for b in range(8):
        ref.bin_stats[b]["gamma"] = start[b]
    ref.update_bin_stats(
        {b: {"calibration_gap": gaps[b], "lower_bound": 0, "upper_bound": 1} for b in range(8)}
    )
    torch.testing.assert_close(got, ref_state(ref)[0], rtol=1e-15, atol=0)


@pytest.mark.parametrize("k", [2, 10, 1000])
def test_passes_match_the_reference(k):
    strategy, ref = built(k), RefAdaFocal(ref_args())
    for epoch in range(5):
        batches = validation_batches(k, seed=epoch, scale=1.0 + epoch, ties=epoch == 2)
        validate(strategy, batches)
        ref.update_bin_stats(ref_validation(batches))
        gammas, edges = ref_state(ref)
        assert strategy.bin_edges.tolist() == edges.tolist()
        torch.testing.assert_close(strategy.gammas, gammas, rtol=1e-5, atol=1e-6)
    assert (strategy.gammas != 1).all()


def test_a_pass_without_counted_rows_changes_nothing():
    strategy = built(3)
    validate(strategy, validation_batches(3))
    before = {k: v.clone() for k, v in strategy.get_extra_state().items()}
    validate(strategy, [(torch.randn(4, 3), torch.full((4,), IGNORE))])
    validate(strategy, [])
    for key, value in strategy.get_extra_state().items():
        assert torch.equal(value.nan_to_num(), before[key].nan_to_num()), key


def test_training_and_evaluation_forwards_move_nothing(batch):
    strategy = built(5)
    before = {k: v.clone() for k, v in strategy.get_extra_state().items()}
    x, y = batch(5, scale=3.0)
    strategy(x, y)
    strategy.observe(x, y)
    strategy.eval()
    strategy(x, y)
    for key, value in strategy.get_extra_state().items():
        assert torch.equal(value.nan_to_num(), before[key].nan_to_num()), key
    assert strategy._validation == []


# ---------------------------------------------------------------------------- state
def test_state_round_trip_continues_identically(batch):
    strategy = built(6)
    for epoch in range(3):
        validate(strategy, validation_batches(6, seed=epoch))
    fresh = built(6)
    fresh.load_state_dict(strategy.state_dict())
    x, y = batch(6, scale=3.0)
    assert torch.equal(fresh(x, y), strategy(x, y))
    for s in (strategy, fresh):
        validate(s, validation_batches(6, seed=9))
    for key, value in strategy.get_extra_state().items():
        assert torch.equal(fresh.get_extra_state()[key], value), key
    assert list(strategy.named_buffers()) == []
    with pytest.raises(ValueError, match=r"AdaFocalLoss.gammas has shape \(15,\), expected \(5,\)"):
        built(6, num_bins=5).load_state_dict(strategy.state_dict())


def test_registry_contract_hparams_summary_and_errors(batch):
    assert STRATEGIES["adafocal"] is AdaFocalLoss
    strategy = built(6, num_bins=10, lamda=2.0)
    assert type(strategy)(**strategy.hparams()).hparams() == strategy.hparams()
    assert "num_bins=10" in repr(strategy) and "lamda=2.0" in repr(strategy)
    summary = json.loads(json.dumps(built(6).summary()))  # before any pass: gap NaN -> None
    assert summary["smoothing/gap"] is None
    x, y = batch(6, scale=3.0)
    strategy(x, y)
    validate(strategy, validation_batches(6))
    summary = json.loads(json.dumps(strategy.summary()))
    assert summary["name"] == "adafocal" and summary["hparams"] == strategy.hparams()
    assert summary["gamma_per_bin"] == strategy.gammas.tolist()
    for key, value in strategy.log_values().items():
        assert torch.is_tensor(value) and value.dim() == 0 and isinstance(summary[key], float)
    for bad in ({"num_bins": 0}, {"lamda": -1.0}, {"gamma_init": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AdaFocalLoss(**bad)
    with pytest.raises(ValueError, match="gamma_min <= gamma_max"):
        AdaFocalLoss(gamma_min=3.0, gamma_max=2.0)


def test_loss_needs_no_host_sync_low_precision_and_schedule():
    strategy = built(6).to("meta")  # any .item() fails on meta tensors
    x = torch.empty(8, 6, device="meta", requires_grad=True)
    y = torch.empty(8, dtype=torch.long, device="meta")
    (grad,) = torch.autograd.grad(strategy.loss(x, y, None, "mean"), x)
    assert grad.shape == x.shape
    strategy, _ = matched(6)
    logits = (torch.randn(8, 6) * 3).bfloat16().requires_grad_()
    y = torch.randint(0, 6, (8,))
    loss = strategy(logits, y)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(logits.grad).all()
    torch.testing.assert_close(loss, strategy(logits.detach().float(), y))
    warm = built(6, schedule="warmup")
    StrategyDriver(warm).set_epoch(0, max_epochs=20)  # s = 0: cross-entropy
    torch.testing.assert_close(warm(logits.detach().float(), y), F.cross_entropy(logits.float(), y))


def test_sgd_lowers_the_loss():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 8, generator=g) * 2
    y = torch.randint(0, 5, (200,), generator=g)
    x = centres[y] + torch.randn(200, 8, generator=g)
    model = torch.nn.Linear(8, 5)
    strategy, _ = matched(5)
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
DDP_K = 6
DDP_EPOCHS = 4


def ddp_run(strategy, rank_batches):
    """The module's call order: an epoch end, then a validation pass of fit."""
    for epoch in range(DDP_EPOCHS):
        StrategyDriver(strategy).set_epoch(epoch, DDP_EPOCHS)
        StrategyDriver(strategy).on_epoch_end()
        strategy.eval()
        for x, y in rank_batches(epoch):
            strategy.observe_validation(x, y)
        strategy.on_validation_end(PASS)
        strategy.train()


def ddp_batches(epoch, parts):
    # uneven: rank 0 sees batches 0, 2, 4 (one of 7 rows); rank 1 sees 1, 3
    batches = validation_batches(DDP_K, n_batches=5, rows=20, seed=epoch, scale=2.0 + epoch)
    batches[4] = (batches[4][0][:7], batches[4][1][:7])
    return [b for i, b in enumerate(batches) if i % WORLD in parts]


def worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        strategy = built(DDP_K)
        ddp_run(strategy, lambda epoch: ddp_batches(epoch, {rank}))
        torch.save(strategy.get_extra_state(), Path(out_dir) / f"adafocal_rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.slow
def test_every_rank_ends_with_the_gammas_one_process_computes(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    single = built(DDP_K)
    ddp_run(single, lambda epoch: ddp_batches(epoch, set(range(WORLD))))
    expected = single.get_extra_state()
    assert (expected["gammas"] != 1).all()
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"adafocal_rank{rank}.pt")
        for key, value in expected.items():
            assert torch.equal(got[key], value), (rank, key)  # the same sorted values
