"""scripts/test_capabilities.py (``make test-capabilities``): which CPU capabilities it
runs, that it refuses one torch would not honour, and that a failing test under any
capability fails it (a small test file of its own, never the suite it runs)."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "test_capabilities.py"
_spec = importlib.util.spec_from_file_location("test_capabilities", SCRIPT)
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)


def machine(best: str, current: str | None = None):
    """A probe for a CPU whose best capability is ``best``, under an environment that asks
    for ``current`` (None: unset): torch lowers on request, never raises."""
    order = list(runner.CAPABILITIES)

    def probe(capability: str | None) -> str:
        asked = capability or current or best
        return order[min(order.index(asked), order.index(best))].upper()

    return probe


@pytest.mark.parametrize(
    ("best", "current", "expected"),
    [
        ("avx512", None, ["default", "avx2"]),  # `make test` ran AVX-512
        ("avx2", None, ["default"]),  # avx512 asked for, avx2 run: not there
        ("avx512", "avx2", ["default", "avx512"]),  # `make test` ran under avx2
        ("default", None, []),  # nothing besides what `make test` ran
    ],
)
def test_runs_every_honoured_capability_but_the_current_one(best, current, expected):
    assert runner.select(None, machine(best, current)) == expected


def test_a_capability_torch_would_not_honour_is_refused_by_name():
    with pytest.raises(SystemExit, match=r"ATEN_CPU_CAPABILITY=avx512: torch runs AVX2"):
        runner.select(["avx512"], machine("avx2"))
    assert runner.select(["avx2"], machine("avx512")) == ["avx2"]


def test_the_probe_reads_what_torch_runs():
    assert runner.reported("default") == "DEFAULT"  # every build and CPU has it
    assert runner.reported(None) == torch.backends.cpu.get_cpu_capability()


@pytest.mark.slow  # pytest under each capability this machine has, a few seconds each
def test_a_test_failing_under_one_capability_fails_the_run(tmp_path, capfd):
    test = tmp_path / "test_kernels.py"
    test.write_text(
        textwrap.dedent(
            """
            import os

            def test_vectorised_kernels():
                assert os.environ["ATEN_CPU_CAPABILITY"] != "default"
            """
        )
    )
    capabilities = runner.supported()
    code = runner.main(
        [
            "--capabilities",
            *capabilities,
            "--tests",
            str(test),
            "--",
            "-q",
            "-p",
            "no:cacheprovider",
        ]
    )
    summary = capfd.readouterr().out.split("=== numerics tests per CPU capability")[-1]
    assert code == 1
    assert "default: FAILED (pytest exit 1)" in summary
    for capability in capabilities[1:]:  # each runs after the failure, and passes
        assert f"{capability}: passed" in summary
