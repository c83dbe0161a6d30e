"""adaptls.run.stop_request: a signal is recorded, never acted on where it lands; the
handlers that were there before come back after the run; submitit's time-limit signal is
handed on to submitit's handler once the run has stopped."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from submitit.core.job_environment import SignalHandler

from adaptls.run.stop_request import StopRequest


class _Submitit(SignalHandler):
    """submitit's handler, recording its calls instead of requeueing a SLURM job."""

    def __init__(self) -> None:
        super().__init__(env=None, job_paths=None, delayed=None)  # type: ignore[arg-type]
        self.calls: list[int] = []

    def checkpoint_and_try_requeue(self, signum: int, frame: Any = None) -> None:
        self.calls.append(signum)


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR2)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_sigterm_is_recorded_for_the_run_and_the_old_handler_comes_back(restore_signals):
    seen: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    request = StopRequest()
    with request.handling():
        assert not request.agreed()
        os.kill(os.getpid(), signal.SIGTERM)
        assert request.signalled and request.agreed()  # one process: its own flag
    assert seen == []
    os.kill(os.getpid(), signal.SIGTERM)
    assert seen == [signal.SIGTERM]
    with request.handling():
        assert not request.signalled  # a new run starts from a clean slate


def test_submitits_signal_stops_the_run_then_goes_to_submitit(restore_signals):
    submitit = _Submitit()
    signal.signal(signal.SIGUSR2, submitit.checkpoint_and_try_requeue)
    request = StopRequest()
    with request.handling():
        os.kill(os.getpid(), signal.SIGUSR2)
        assert request.signalled and submitit.calls == []
    request.hand_on()
    assert submitit.calls == [signal.SIGUSR2]
    assert signal.getsignal(signal.SIGUSR2) == submitit.checkpoint_and_try_requeue
    request.hand_on()  # once
    assert submitit.calls == [signal.SIGUSR2]
