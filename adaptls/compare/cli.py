"""``scripts/compare.py``: the command line of :mod:`adaptls.compare`."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from adaptls.compare.group import available_metrics, compare
from adaptls.compare.load import CompareError, load_runs
from adaptls.compare.output import evaluation_note, to_markdown, write_csv
from adaptls.compare.plots import DEFAULT_PLOT_METRICS, write_plots


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/compare.py``: print the table, optionally write the CSV and the plots."""
    parser = argparse.ArgumentParser(
        prog="compare.py",
        description="Compare runs: mean ± std over seeds of every metrics.json below the "
        "given directories, grouped by strategy and swept keys.",
    )
    parser.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP_DIR")
    parser.add_argument(
        "--metrics",
        nargs="+",
        metavar="METRIC",
        help="metric names (default: test/acc, test/ece, test/adaece, test/nll, test/ppl, "
        "test/brier, test/ts/ece, test/acc_many|medium|few where the runs report them; "
        "group accuracies only for runs with more than one long-tail group)",
    )
    parser.add_argument(
        "--group-by",
        nargs="+",
        default=[],
        metavar="KEY",
        help="extra dotted config keys to group on (e.g. data.imbalance_ratio)",
    )
    parser.add_argument("--sort", metavar="METRIC", help="order groups best first on METRIC")
    parser.add_argument("--csv", metavar="FILE", help="write one row per group to FILE")
    parser.add_argument("--plot", metavar="OUTDIR", help="write tradeoff.png, reliability.png")
    parser.add_argument(
        "--plot-metrics",
        nargs="+",
        metavar="METRIC",
        help=f"y axes of the trade-off plot (default: {' '.join(DEFAULT_PLOT_METRICS)})",
    )
    args = parser.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _print_warning
        try:
            runs = load_runs(args.paths)
            comparison = compare(runs, args.metrics, args.group_by, args.sort)
            print(f"{len(runs)} runs; mean ± std (sample std) over seeds")
            print(evaluation_note(runs) + "\n")
            print(to_markdown(comparison))
            if args.csv:
                print(f"\nwrote {write_csv(comparison, args.csv)}")
            if args.plot:
                available = available_metrics(runs)
                plot_metrics = args.plot_metrics or [
                    m for m in DEFAULT_PLOT_METRICS if m in available
                ]
                plotted = compare(runs, plot_metrics, args.group_by)
                for path in write_plots(plotted, args.plot, plot_metrics):
                    print(f"wrote {path}")
        except CompareError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0


def _print_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    print(f"warning: {message}", file=sys.stderr)
