"""`diff_plans`: a verdict of "differ" always comes with a reason."""

from __future__ import annotations

from expspec.compiler import Plan, diff_plans, plan_spec
from tests.conftest import EXAMPLES

DIGITS = EXAMPLES / "digits_mlp.toml"


def _recorded_elsewhere(plan: Plan, **update: object) -> Plan:
    """The plan as another expspec version might have recorded it: same fields, other derived parts."""
    fingerprints = plan.fingerprints.model_copy(update={"trajectory": "f" * 64})
    return plan.model_copy(update={"fingerprints": fingerprints, **update})


def test_equal_plans_have_no_changes_and_operational_ones_keep_the_trajectory():
    same = diff_plans(plan_spec(DIGITS), plan_spec(DIGITS))
    assert same.trajectory_equal and same.changes == ()
    result = diff_plans(plan_spec(DIGITS), plan_spec(DIGITS, ["train.log_every=3"]))
    assert result.trajectory_equal and [c.key for c in result.operational_changes] == ["train.log_every"]


def test_a_changed_seed_tree_is_the_reason_when_no_field_explains_it():
    plan = plan_spec(DIGITS)
    other = _recorded_elsewhere(plan, seeds={**plan.seeds, "init": plan.seeds["init"] + 1})
    result = diff_plans(plan, other)
    assert not result.trajectory_equal
    assert [(c.key, c.cls) for c in result.changes] == [("plan.seeds.init", "trajectory")]


def test_the_fingerprint_itself_is_named_when_nothing_else_differs():
    plan = plan_spec(DIGITS)
    [change] = diff_plans(plan, _recorded_elsewhere(plan)).changes
    assert (change.key, change.b) == ("plan.fingerprints.trajectory", "f" * 64)


def test_seed_streams_are_not_listed_when_the_root_seed_explains_them():
    result = diff_plans(plan_spec(DIGITS), plan_spec(DIGITS, ["seed=1"]))
    assert [c.key for c in result.changes] == ["seed"]
