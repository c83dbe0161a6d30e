"""adaptls.checks: one set of argument checks (NumPy numbers accepted everywhere, bools
never), and the atomic writer every file-producing part uses."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from adaptls.checks import (
    atomic_write,
    check_choice,
    check_class_counts,
    check_int,
    check_num_classes,
    check_probability,
    check_real,
)
from adaptls.metrics import CalibrationSuite
from adaptls.models.mlp import MLP
from adaptls.smoothing import ClassFrequencySmoothing, UniformSmoothing


@pytest.mark.parametrize("k", [10, np.int64(10), np.int32(10), torch.tensor(10)])
def test_num_classes_accepts_every_integer_type_in_every_component(k):
    assert check_num_classes(k) == 10 and type(check_num_classes(k)) is int
    strategy = UniformSmoothing(0.1)
    strategy.setup(k)
    assert strategy.num_classes == 10
    assert CalibrationSuite(k).num_classes == 10
    assert MLP(input_shape=(4,), num_classes=k, hidden=(8,))(torch.zeros(2, 4)).shape == (2, 10)


@pytest.mark.parametrize("bad", [True, 1, 2.0, "3", None])
def test_num_classes_rejects_the_rest_naming_the_value(bad):
    with pytest.raises(ValueError, match=rf"num_classes must be an int >= 2, got {bad!r}"):
        check_num_classes(bad)


@pytest.mark.parametrize(
    "counts", [[5, 3, 0], np.array([5, 3, 0]), torch.tensor([5.0, 3.0, 0.0]), (5, 3, 0)]
)
def test_class_counts_in_any_container(counts):
    out = check_class_counts(counts, 3)
    assert out.dtype == torch.long and out.tolist() == [5, 3, 0]
    ClassFrequencySmoothing().setup(np.int64(3), counts)
    CalibrationSuite(np.int64(3), counts)


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ([5, 3], r"one entry per class \(3\), got shape \(2,\)"),
        ([5, -1, 2], r"whole numbers >= 0, got -1 for class 1"),
        ([5.0, 1.5, 2.0], r"whole numbers >= 0, got 1\.5 for class 1"),
        ([5.0, float("nan"), 2.0], r"whole numbers >= 0, got nan for class 1"),
        ([True, False, True], r"whole numbers >= 0"),
    ],
)
def test_bad_class_counts_are_named(counts, message):
    with pytest.raises(ValueError, match=message):
        check_class_counts(counts, 3)


def test_numbers_and_choices():
    assert check_probability("p", np.float32(0.5)) == 0.5
    assert check_int("n", np.int16(3), minimum=0) == 3
    assert check_real("x", np.float64(2.0), minimum=1.0) == 2.0
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\), got 1\.0"):
        check_probability("p", 1.0, include_one=False)
    with pytest.raises(TypeError, match=r"p must be a number in \[0, 1\], got True"):
        check_probability("p", True)
    with pytest.raises(ValueError, match=r"x must be > 1, got 1\.0"):
        check_real("x", 1.0, minimum=1.0, strict=True)
    with pytest.raises(ValueError, match=r"mode must be one of 'a', 'b'; got 'c'"):
        check_choice("mode", "c", ("a", "b"))


def test_atomic_write_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "sub" / "record.json"
    with atomic_write(path, "w") as f:
        f.write("first")
    assert path.read_text() == "first"
    with pytest.raises(RuntimeError, match="crash"), atomic_write(path, "w") as f:
        f.write("half of the second")
        raise RuntimeError("crash")
    assert path.read_text() == "first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["record.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_write_gives_the_mode_a_plain_open_gives_under_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with open(tmp_path / "plain", "w") as f:
            f.write("x")
        with atomic_write(tmp_path / "atomic.json", "w") as f:
            f.write("x")
        with atomic_write(tmp_path / "atomic.json", "w") as f:  # a replacement, too
            f.write("y")
    finally:
        os.umask(previous)
    plain = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert plain == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "atomic.json").stat().st_mode) == plain


@pytest.mark.skipif(os.name != "posix", reason="POSIX umask")
@pytest.mark.parametrize("proc", [True, False], ids=["proc-status", "set-and-restore"])
def test_the_umask_is_read_without_changing_it(monkeypatch, proc):
    from adaptls import checks

    if not proc:  # no /proc (macOS): the set-and-restore fallback

        def no_proc(*args, **kwargs):
            raise OSError("no /proc here")

        monkeypatch.setattr(checks, "open", no_proc, raising=False)
    previous = os.umask(0o027)
    try:
        assert checks._current_umask() == 0o027
        assert os.umask(0o027) == 0o027  # left as it was
    finally:
        os.umask(previous)
