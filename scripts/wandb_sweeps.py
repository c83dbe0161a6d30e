"""Write the W&B Sweeps configurations of every search and strategy (sweeps/).

    python scripts/wandb_sweeps.py            # (re)write sweeps/<search>/<strategy>.yaml
    python scripts/wandb_sweeps.py --check    # exit 1 when a file is missing or out of date

Each sweep is generated from the strategy's search space (adaptls.run.wandb_sweep); its
command runs ``python -m adaptls.train ${args_no_hyphens}``. Then:
``wandb sweep sweeps/epsilon/uniform.yaml`` and ``wandb agent <sweep id>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adaptls.run.wandb_sweep import render, sweeps
from adaptls.train import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "sweeps")
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args()
    expected = {path: render(path, config) for path, config in sweeps(Path(CONFIG_DIR)).items()}
    present = {str(p.relative_to(args.out)) for p in args.out.glob("*/*.yaml")}
    stale = sorted(p for p, text in expected.items() if not _same(args.out / p, text))
    extra = sorted(present - set(expected))
    if args.check:
        for path in stale + extra:
            print(f"out of date: {args.out / path}")
        if stale or extra:
            print("regenerate: python scripts/wandb_sweeps.py")
            return 1
        print(f"{len(expected)} sweeps in {args.out}: up to date")
        return 0
    for path in stale:
        (args.out / path).parent.mkdir(parents=True, exist_ok=True)
        (args.out / path).write_text(expected[path])
    for path in extra:
        (args.out / path).unlink()
    print(f"{len(expected)} sweeps in {args.out} ({len(stale)} written, {len(extra)} removed)")
    return 0


def _same(path: Path, text: str) -> bool:
    return path.is_file() and path.read_text() == text


if __name__ == "__main__":
    sys.exit(main())
