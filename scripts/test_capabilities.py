"""Run the numerics-sensitive tests under each CPU capability torch can use here, other
than the one plain ``make test`` already runs: ``make test-capabilities``.

    python scripts/test_capabilities.py                      # the capabilities `make test` skips
    python scripts/test_capabilities.py --capabilities avx2  # these (each must be honoured)
    python scripts/test_capabilities.py -- -x -k ece         # arguments after -- go to pytest

ATen picks its CPU kernels (vectorised exp, log, sums, reductions) for the best instruction
set the CPU has: ``default`` (portable C++), ``avx2``, ``avx512`` on x86-64. The environment
variable ATEN_CPU_CAPABILITY lowers the choice, never raises it; torch ignores, with a
warning, a value it does not know. Each kernel family rounds differently, so a test that
holds only on the kernels it was written on fails on another CPU: running the numerics
tests under every capability on one machine shows three CPUs' kernels.

Without ``--capabilities`` the run skips the capability torch uses under the current
environment: ``make test`` runs the whole suite under it, and CI runs ``make test`` first,
so repeating it here would only add its minutes. Every test in the list runs, the slow and
multi-process ones too: torch.compile generates code for the capability in use, and the
ranks' sums round with its kernels. A capability is run only where torch
reports it back (``torch.backends.cpu.get_cpu_capability()``), so ``avx512`` drops out on a
CPU or a torch build without it; one asked for by name that torch does not honour is an
error, as is (tests/conftest.py) a session whose kernels are not the ones asked for.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The tests whose outcome depends on floating-point kernels: the fused losses, the
#: smoothing strategies (the calibration peers and the adaptive strategies included), the
#: metrics and temperature scaling. The one list of them.
NUMERICS_TESTS = (
    "tests/losses",
    "tests/smoothing",  # with smoothing/peers and the adaptive strategies
    "tests/metrics",
    "tests/test_calibration.py",
)
#: The values of ATEN_CPU_CAPABILITY tried, lowest first.
CAPABILITIES = ("default", "avx2", "avx512")
_PROBE = "import torch; print(torch.backends.cpu.get_cpu_capability())"


def environment(capability: str | None) -> dict[str, str]:
    """This process's environment with ATEN_CPU_CAPABILITY set to ``capability`` (None: as
    it is now)."""
    env = dict(os.environ)
    if capability is not None:
        env["ATEN_CPU_CAPABILITY"] = capability
    return env


def reported(capability: str | None) -> str:
    """The capability torch runs under ATEN_CPU_CAPABILITY=``capability`` (None: the current
    environment's), as ``get_cpu_capability()`` names it ("DEFAULT", "AVX2", "AVX512"). A
    fresh interpreter each time: torch reads the variable once, at its first dispatch."""
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _PROBE],
        env=environment(capability),
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def select(asked: Sequence[str] | None, probe: Callable[[str | None], str] = reported) -> list[str]:
    """The capabilities to run: ``asked`` (each checked), or those of :data:`CAPABILITIES`
    torch honours here, less the one it runs under the current environment."""
    if asked:
        for capability in asked:
            runs = probe(capability)
            if runs.lower() != capability:
                raise SystemExit(
                    f"ATEN_CPU_CAPABILITY={capability}: torch runs {runs} kernels here (the "
                    "capability can be lowered, never raised: this CPU or this torch build "
                    f"lacks {capability}); run one of {supported(probe)}"
                )
        return list(asked)
    current = probe(None).lower()
    return [c for c in supported(probe) if c != current]


def supported(probe: Callable[[str | None], str] = reported) -> list[str]:
    """The capabilities of :data:`CAPABILITIES` that torch runs when asked for them here."""
    return [c for c in CAPABILITIES if probe(c).lower() == c]


def run(capabilities: Sequence[str], tests: Sequence[str], pytest_args: Sequence[str]) -> int:
    """pytest on ``tests`` once per capability (output streamed); a summary line for each;
    0 when every run passed, else 1 (every capability runs even after a failure)."""
    results = []
    for capability in capabilities:
        print(f"\n=== ATEN_CPU_CAPABILITY={capability}: pytest {' '.join(tests)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(
            [sys.executable, "-m", "pytest", *tests, *pytest_args],
            env=environment(capability),
            cwd=ROOT,
        )
        results.append((capability, code, time.perf_counter() - start))
    print("\n=== numerics tests per CPU capability")
    for capability, code, seconds in results:
        verdict = "passed" if code == 0 else f"FAILED (pytest exit {code})"
        print(f"{capability:>8}: {verdict} in {seconds:.0f} s")
    if not results:
        print("no capability besides the current one is available here: nothing to run")
    return 0 if all(code == 0 for _, code, _ in results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, pytest_args = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--capabilities",
        nargs="+",
        choices=CAPABILITIES,
        help="run exactly these (default: every one torch honours here but the current one)",
    )
    parser.add_argument(
        "--tests",
        nargs="+",
        default=list(NUMERICS_TESTS),
        help="test files or folders (default: the numerics-sensitive tests)",
    )
    args = parser.parse_args(argv)
    return run(select(args.capabilities), args.tests, pytest_args)


if __name__ == "__main__":
    sys.exit(main())
