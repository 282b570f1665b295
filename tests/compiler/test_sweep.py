"""The sweep grid: values split at top-level commas, points named from their values, compiled first."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from expspec.compiler.sweep import _names, parse_axis, plan_sweep, split_values
from expspec.spec import SpecError
from tests.conftest import EXAMPLES

DIGITS = EXAMPLES / "digits_mlp.toml"


@pytest.mark.parametrize(
    "raw,values",
    [
        ("1e-3,3e-3,1e-2", ["1e-3", "3e-3", "1e-2"]),
        ("[64,64],[128]", ["[64,64]", "[128]"]),
        ('"a,b", c', ['"a,b"', "c"]),
        (r'"x\",y",z', [r'"x\",y"', "z"]),
        ("'p,q',{kind = \"cosine\", warmup_steps = 5}", ["'p,q'", '{kind = "cosine", warmup_steps = 5}']),
    ],
)
def test_values_split_at_top_level_commas(raw, values):
    assert split_values(raw) == values


def test_an_axis_keeps_what_was_typed_and_what_it_means():
    axis = parse_axis("model.hidden=[64,64], [128]")
    assert axis.path == ("model", "hidden")
    assert axis.texts == ("[64,64]", "[128]")
    assert axis.values == ([64, 64], [128])


def test_the_grid_is_the_product_in_the_order_given():
    sweep = plan_sweep(DIGITS, ["train.steps=5"], ["optimizer.learning_rate=1e-3,3e-3", "model.hidden=[64,64],[128]"])
    assert [p.name for p in sweep.points] == [
        "learning_rate=0.001,hidden=64+64",
        "learning_rate=0.001,hidden=128",
        "learning_rate=0.003,hidden=64+64",
        "learning_rate=0.003,hidden=128",
    ]
    assert sweep.points[1].overrides == ("optimizer.learning_rate=1e-3", "model.hidden=[128]")
    assert sweep.points[1].plan.source.overrides == ("train.steps=5", *sweep.points[1].overrides)
    assert len({p.plan.fingerprints.trajectory for p in sweep.points}) == 4


def test_labels_grow_until_they_tell_keys_apart():
    sweep = plan_sweep(DIGITS, [], ['seeds."data.shuffle"=1,2', "seed=3"])
    assert [p.name for p in sweep.points] == ["data.shuffle=1,seed=3", "data.shuffle=2,seed=3"]


def test_values_that_write_alike_get_the_spec_fingerprint():
    plans = [SimpleNamespace(fingerprints=SimpleNamespace(spec=f"{i}" * 64)) for i in (1, 2, 3)]
    grid = [("a b", 1), ("a_b", 1), ("A_B", 2)]
    names = _names(["kind", "seed"], grid, plans)  # type: ignore[arg-type]
    assert names == ["kind=a_b,seed=1-11111111", "kind=a_b,seed=1-22222222", "kind=A_B,seed=2"]


def test_train_steps_changes_a_result_though_operational():
    # A longer run continues the same trajectory, but ends elsewhere: not pointless.
    sweep = plan_sweep(DIGITS, ['optimizer.schedule={kind = "constant"}'], ["train.steps=5,10"])
    assert len({p.plan.fingerprints.trajectory for p in sweep.points}) == 1
    assert [p.name for p in sweep.points] == ["steps=5", "steps=10"]


@pytest.mark.parametrize(
    "overrides,sweeps,message",
    [
        ([], ["name=a,b"], "sweeping only operational fields (name)"),
        ([], ["seed=1,2", "seed=3"], "is swept twice"),
        (["checkpoint.dir=ckpt"], ["seed=1,2"], "would keep their checkpoints in the same folder"),
        ([], ["seed=" + ",".join(map(str, range(40))), "model.dropout=" + ",".join(["0.1"] * 30)], "at most 1000"),
    ],
)
def test_refused_grids(overrides, sweeps, message):
    with pytest.raises(SpecError) as err:
        plan_sweep(DIGITS, overrides, sweeps)
    assert message in str(err.value.problems[0])
