"""Kill storms: a run interrupted many times ends exactly where an uninterrupted one does."""

from __future__ import annotations

import random
import signal

import pytest

from tests.reliability.storm import EVERY, reference, storm


@pytest.mark.parametrize("sig,kills", [(signal.SIGKILL, 3), (signal.SIGTERM, 2)])
def test_storm_fast_subset(tmp_path, sig, kills):
    seed = random.randrange(1 << 30)
    result = storm(tmp_path, kills, sig, seed, reference(tmp_path, EVERY * (kills + 2)))
    assert result.survived == kills, f"seed {seed}: exit codes {result.exit_codes}"
    assert result.ledger_equal, f"seed {seed}: {result.line(sig.name[3:])}"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_storm_of_30(tmp_path, sig):
    seed = random.randrange(1 << 30)
    result = storm(tmp_path, 30, sig, seed, reference(tmp_path, EVERY * 32))
    print(result.line(sig.name[3:]))
    assert result.survived == 30, f"seed {seed}: exit codes {result.exit_codes}"
    assert result.ledger_equal, f"seed {seed}"
