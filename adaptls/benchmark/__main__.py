"""``python -m adaptls.benchmark [key=value ...]`` (settings: conf/benchmark.yaml)."""

from __future__ import annotations

import shlex
import sys

from adaptls.benchmark.config import BenchmarkError, load_config
from adaptls.benchmark.protocol import benchmark


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = load_config(args)
    except BenchmarkError as err:
        print(f"adaptls.benchmark: {err}", file=sys.stderr)
        return 2
    command = " ".join(["python -m adaptls.benchmark", *map(shlex.quote, args)])
    benchmark(cfg, command, log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
