"""The fair benchmark protocol: the same tuning budget for every method, fresh seeds, intervals.

    python -m adaptls.benchmark setting=mnist1d_lt methods=[none,uniform,zipf] \
        budget.trials=12 budget.seeds=5 budget.epochs=20

1. search (:mod:`~adaptls.benchmark.search`): each method's search space, the same number
   of seeded-TPE trials on the validation split, objective ``val/nll`` by default;
2. retrain (:func:`~adaptls.benchmark.protocol.retrain`): each method's best configuration
   on ``budget.seeds`` seeds never used in the search, tested on the last epoch;
3. report (:mod:`~adaptls.benchmark.report`): ``docs/results/<setting>.md`` with its
   ``.csv`` and ``.png``: mean and 95% CI per metric, paired differences against the
   baseline (seeds paired), the chosen hyperparameters, budget, machine, date, command.

Every run is ``python -m adaptls.train`` in a subprocess; a run whose directory holds
``metrics.json`` is never rerun, so a killed benchmark restarts where it stopped.
"""

from adaptls.benchmark.config import BenchmarkError, load_config
from adaptls.benchmark.protocol import benchmark, retrain
from adaptls.benchmark.search import search, search_space
from adaptls.benchmark.stats import Estimate, mean_ci, paired_difference

__all__ = [
    "BenchmarkError",
    "Estimate",
    "benchmark",
    "load_config",
    "mean_ci",
    "paired_difference",
    "retrain",
    "search",
    "search_space",
]
