"""The plan's checkpoint policy is what the checkpointer does: `save_final` included.

A field the runtime never read would let the plan say one thing while the run
did another. The checkpointer's arithmetic (`due`) decides alone: Orbax saves
every step it is given (`force`), so its own decision policy cannot disagree.
"""

from __future__ import annotations

import pytest

from expspec.compiler import plan_spec
from expspec.runtime.engine.checkpoint import Checkpointer
from tests.runtime.runs import DIGITS

STEPS, EVERY = 7, 3


@pytest.mark.parametrize("save_final", [True, False])
def test_the_final_step_is_saved_exactly_when_the_plan_says(tmp_path, save_final):
    plan = plan_spec(DIGITS, [f"train.steps={STEPS}", f"checkpoint.every_steps={EVERY}"])
    assert plan.checkpoint.save_final, "a plan with checkpoints saves its final step"
    policy = plan.checkpoint.model_copy(update={"save_final": save_final})
    checkpointer = Checkpointer(tmp_path / "checkpoints", policy, STEPS, tmp_path / "quarantine")
    try:
        due = [step for step in range(1, STEPS + 1) if checkpointer.due(step)]
    finally:
        checkpointer.manager.close()
    assert due == ([3, 6, 7] if save_final else [3, 6])
