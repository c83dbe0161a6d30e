import torch

from adaptls.data.split import stratified_split


def _split(targets, fraction, seed):
    return stratified_split(targets, fraction, torch.Generator().manual_seed(seed))


def test_split_is_stratified_disjoint_and_covers_everything():
    targets = torch.cat([torch.full((n,), c) for c, n in enumerate([100, 50, 30, 5])])
    targets = targets[torch.randperm(len(targets), generator=torch.Generator().manual_seed(3))]
    kept, held = _split(targets, 0.2, seed=0)
    assert torch.bincount(targets[held]).tolist() == [20, 10, 6, 1]
    assert torch.bincount(targets[kept]).tolist() == [80, 40, 24, 4]
    everything = torch.cat([kept, held])
    assert torch.equal(everything.sort().values, torch.arange(len(targets)))
    assert torch.equal(kept, kept.sort().values) and torch.equal(held, held.sort().values)


def test_split_is_seeded():
    targets = torch.arange(500) % 5
    assert torch.equal(_split(targets, 0.1, 0)[1], _split(targets, 0.1, 0)[1])
    assert not torch.equal(_split(targets, 0.1, 0)[1], _split(targets, 0.1, 1)[1])
