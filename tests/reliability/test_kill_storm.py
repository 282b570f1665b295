"""Kill storms: a run interrupted many times resumes each time from the newest
committed checkpoint and ends exactly where an uninterrupted one does, with every
ledger record (steps and checkpoints) equal and matching the checkpoints on disk."""

from __future__ import annotations

import random
import signal

import pytest

from tests.reliability.storm import Reference, StormResult, reference, steps_for, storm

FAST_KILLS = {signal.SIGKILL: 3, signal.SIGTERM: 1}


@pytest.fixture(scope="module")
def fast_reference(tmp_path_factory) -> Reference:
    """One uninterrupted run long enough for both fast storms."""
    return reference(tmp_path_factory.mktemp("straight"), steps_for(max(FAST_KILLS.values())))


def _judge(result: StormResult, sig: signal.Signals) -> None:
    report = result.line()
    assert not result.problems, report
    assert result.survived == result.kills, report
    assert result.resumed >= 1, report  # at least one restart had a checkpoint to resume from
    if sig == signal.SIGKILL:
        # The README's claim: kills land while an asynchronous checkpoint is being written.
        assert result.during_write >= 1, report
    assert result.bits_equal, report


@pytest.mark.parametrize("sig", list(FAST_KILLS), ids=lambda s: s.name)
def test_storm_fast_subset(tmp_path, sig, fast_reference):
    seed = random.randrange(1 << 30)
    _judge(storm(tmp_path, FAST_KILLS[sig], sig, seed, fast_reference), sig)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=lambda s: s.name)
def test_storm_of_30(tmp_path, sig):
    seed = random.randrange(1 << 30)
    result = storm(tmp_path, 30, sig, seed, reference(tmp_path, steps_for(30)))
    print(result.line())
    _judge(result, sig)
