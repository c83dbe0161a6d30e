"""SIGTERM as a request to stop, agreed by every process at the same training step.

A cluster scheduler signals the tasks of a job before it preempts or requeues it, every
task or only some. Lightning's own handler (2.6) decides per process (and runs a broadcast
inside the signal handler, wherever the process happens to be), so the ranks of a DDP run
stop at different steps, or wait for each other forever. Here the handler only records
the signal; :meth:`StopRequest.agreed` is a collective that every rank reaches once per
training step, so all of them learn of a signal that any of them received at the same
step, and stop there together.

Under the submitit launcher (``hydra/launcher=slurm``) the job's time-limit signal
(``USR2`` by default) belongs to submitit, whose handler requeues the job from rank 0 and
exits that process at once, wherever it is. While a run lasts that signal is recorded too
(the ranks stop together and write ``last.ckpt``); :meth:`StopRequest.hand_on` then gives
it to submitit's handler, which requeues the job.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


class StopRequest:
    """Records SIGTERM (:meth:`install`); :meth:`agreed` tells every rank the same answer."""

    def __init__(self) -> None:
        self.signalled = False
        self._group: object | None = None
        self._launcher: dict[int, Any] = {}  # signal -> the launcher's handler it replaces
        self._launcher_signal: int | None = None  # the launcher's signal that came

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Handle SIGTERM by recording it for the duration of the block (a run), from a
        clean slate; the handler that was there before comes back afterwards (so a test
        process, or a multirun's next job, is not left with this one)."""
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        self.signalled, self._launcher_signal = False, None
        self._group = None  # a run's own process group, made at its first agreement
        self._launcher = _launcher_handlers() if main else {}
        for signum in self._launcher:
            signal.signal(signum, self._handle_launcher)
        self.install()
        try:
            yield
        finally:
            if main and previous is not None:
                signal.signal(signal.SIGTERM, previous)
            for signum, handler in self._launcher.items():
                signal.signal(signum, handler)

    def hand_on(self) -> None:
        """Give a launcher's signal that stopped the run to the launcher's own handler
        (submitit's requeues the job; on rank 0 it exits the process)."""
        signum, self._launcher_signal = self._launcher_signal, None
        handler = self._launcher.get(signum) if signum is not None else None
        if handler is not None:
            handler(signum, None)

    def install(self) -> None:
        """Handle SIGTERM in this process by recording it (main thread only, as Python's
        ``signal`` requires; elsewhere this does nothing)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.signalled:
            log.warning(
                "received %s: every process stops after the next training step",
                signal.Signals(signum).name,
            )
        self.signalled = True

    def _handle_launcher(self, signum: int, frame: FrameType | None) -> None:
        self._launcher_signal = signum
        self._handle(signum, frame)

    def agreed(self) -> bool:
        """Whether any process has been signalled: a collective over all ranks (call it at
        the same point on each), a read of the flag in one process.

        The flag travels on the CPU over gloo: a group of its own when the run's backend
        is another (NCCL), so asking never waits for the GPU.
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.signalled
        if self._group is None:
            gloo = dist.get_backend() == "gloo"
            self._group = dist.group.WORLD if gloo else dist.new_group(backend="gloo")
        flag = torch.tensor([int(self.signalled)], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return bool(flag.item())


def _launcher_handlers() -> dict[int, Any]:
    """The user signals whose handler is submitit's (its job environment installs them
    before the job's function runs), by signal."""
    try:
        from submitit.core.job_environment import SignalHandler
    except ImportError:
        return {}
    found = {}
    for signum in (signal.SIGUSR1, signal.SIGUSR2):
        handler = signal.getsignal(signum)
        if isinstance(getattr(handler, "__self__", None), SignalHandler):
            found[int(signum)] = handler
    return found


#: This process's request (one per process: the signal is the process's).
STOP_REQUEST = StopRequest()
