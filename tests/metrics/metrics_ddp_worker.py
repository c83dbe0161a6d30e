"""One rank of the 2-process gloo run in test_metrics_ddp.py (run as a script).

    python metrics_ddp_worker.py RANK WORLD_SIZE INIT_FILE DATA_PATH OUT_PATH

Rank r updates the metrics with its own uneven share of the rows in DATA_PATH, in several
batches, then saves what compute(), per_class() and reliability() return on this rank.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from adaptls.metrics import AdaptiveCalibrationError, CalibrationSuite, ExpectedCalibrationError


def main(rank: int, world_size: int, init_file: str, data_path: str, out_path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    data = torch.load(data_path)
    logits, targets = data["logits"], data["targets"]
    # Rank 0 takes the first two thirds, rank 1 the rest: uneven shards.
    cut = 2 * len(targets) // 3
    mine = slice(0, cut) if rank == 0 else slice(cut, None)
    suite = CalibrationSuite(logits.shape[-1], class_counts=data["class_counts"])
    ece = ExpectedCalibrationError(logits.shape[-1])
    adaece = AdaptiveCalibrationError(logits.shape[-1])
    for x, y in zip(logits[mine].split(37), targets[mine].split(37), strict=True):
        for metric in (suite, ece, adaece):
            metric.update(x, y)
    result = {
        "suite": suite.compute(),
        "per_class": suite.per_class(),
        "reliability": suite.reliability(),
        "ece": ece.compute(),
        "ece_reliability": ece.reliability(),
        "adaece": adaece.compute(),
        # compute() must hand back the local state, so accumulation can go on.
        "local_rows": suite.bin_table[:, 0].sum(),
    }
    torch.save(result, out_path)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    rank, world_size = int(sys.argv[1]), int(sys.argv[2])
    main(rank, world_size, *sys.argv[3:6])
