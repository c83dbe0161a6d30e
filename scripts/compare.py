"""Compare runs: a mean ± std table over seeds from every metrics.json below some directories.

    python scripts/compare.py multirun/train/2024-05-01_12-00-00
    python scripts/compare.py outputs multirun --metrics test/acc test/ece --sort test/ece \
        --group-by data.imbalance_ratio --csv compare.csv --plot compare_plots

The logic lives in :mod:`adaptls.compare`; see ``--help``.
"""

import sys

from adaptls.compare import main

if __name__ == "__main__":
    sys.exit(main())
