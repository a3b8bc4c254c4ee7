"""Non-finite step counting and SIGTERM turned into a stop flag."""

import os
import signal

import pytest
from egom2p.train.faults import BadStepGuard, NonFiniteStepError, StopRequest


def test_skips_bad_steps_and_stops_after_k_in_a_row():
    guard = BadStepGuard(max_bad_steps=3)
    assert guard.record(False) and guard.record(False)
    assert not guard.record(True)  # a good step resets the run of bad ones
    assert guard.record(False) and guard.record(False)
    with pytest.raises(NonFiniteStepError, match="3 non-finite steps in a row"):
        guard.record(False)
    assert guard.total_skipped == 5


def test_guard_state_round_trips():
    guard = BadStepGuard(2)
    guard.record(False)
    other = BadStepGuard(2)
    other.load_state_dict(guard.state_dict())
    with pytest.raises(NonFiniteStepError):
        other.record(False)


def test_sigterm_sets_the_flag_and_restore_puts_back_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    stop = StopRequest()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM"
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGTERM) == before
