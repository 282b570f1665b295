"""The compiled plan: resolved, canonical, fingerprinted by class."""

from __future__ import annotations

import json

import pytest

from expspec.compiler import Plan, PlanError, compile_spec, derive_seed, plan_spec
from expspec.spec import BASE_STREAMS, SpecError, load_spec
from tests.conftest import EXAMPLES, run_exp
from tests.helpers import MINIMAL

DIGITS = EXAMPLES / "digits_mlp.toml"


def fingerprints(*overrides: str, spec=DIGITS):
    return plan_spec(spec, list(overrides)).fingerprints


def test_cli_plan_json_is_complete_and_byte_identical_across_processes():
    first = run_exp("plan", str(DIGITS), "--json")
    second = run_exp("plan", str(DIGITS), "--json")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    plan = json.loads(first.stdout)
    assert set(plan["fingerprints"]) >= {"spec", "trajectory"}
    assert plan["throttle"]["max_inflight"] == 2
    assert set(plan["seeds"]) == set(BASE_STREAMS)
    for key in ("checkpoint", "determinism"):
        assert plan[key]
    assert Plan.from_json(first.stdout) == plan_spec(DIGITS)


def test_operational_change_keeps_the_trajectory():
    base, logged = fingerprints(), fingerprints("train.log_every=7")
    assert logged.trajectory == base.trajectory
    assert logged.spec != base.spec


@pytest.mark.parametrize(
    "override",
    [
        "train.eval_every=3",
        "checkpoint.every_steps=5",
        "throttle.max_inflight=8",
        'throttle.max_inflight="auto"',
        'throttle={max_inflight="auto", memory_budget="1GiB"}',
        'name="other"',
        "train.ledger_every=4",
        "checkpoint.async=false",
        "mesh.data=-1",
        'description="x"',
    ],
)
def test_every_operational_field_keeps_the_trajectory(override):
    assert fingerprints(override).trajectory == fingerprints().trajectory


def test_auto_throttle_resolves_the_budget_to_bytes():
    plan = plan_spec(DIGITS, ['throttle={max_inflight="auto", memory_budget="1.5GiB"}'])
    assert plan.to_dict()["throttle"] == {"max_inflight": "auto", "memory_budget": 3 * 2**29}
    assert plan.spec.throttle.memory_budget == "1.5GiB"  # the spec keeps what was written
    assert Plan.from_json(plan.to_json()) == plan
    assert plan_spec(DIGITS).to_dict()["throttle"] == {"max_inflight": 2, "memory_budget": None}


@pytest.mark.parametrize(
    "override",
    [
        "optimizer.learning_rate=0.5",
        "seed=1",
        "model.hidden=[64]",
        "data.batch_size=32",
        "model.dropout=0.0",
        'train.dtype="bfloat16"',
        "determinism.threefry_partitionable=false",
        "seeds.init=3",
        "determinism.cpu_threads=4",
    ],
)
def test_trajectory_fields_change_the_trajectory(override):
    assert fingerprints(override).trajectory != fingerprints().trajectory


def test_pinning_a_stream_changes_that_stream_only():
    base = plan_spec(DIGITS).seeds
    pinned = plan_spec(DIGITS, ['seeds."data.shuffle"=1234']).seeds
    assert pinned["data.shuffle"] == 1234
    assert {k: v for k, v in pinned.items() if k != "data.shuffle"} == {
        k: v for k, v in base.items() if k != "data.shuffle"
    }


def test_seeds_are_derived_by_name_not_position():
    assert derive_seed(0, "init") == plan_spec(DIGITS).seeds["init"]
    assert derive_seed(0, "init") != derive_seed(1, "init")
    assert derive_seed(0, "init") != derive_seed(0, "dropout")
    seeds = plan_spec(DIGITS).seeds
    assert all(0 <= s < 2**31 for s in seeds.values()) and len(set(seeds.values())) == len(seeds)


def test_steps_matter_only_through_the_schedule():
    # digits uses cosine decay "until the end": more steps stretch the decay.
    assert fingerprints("train.steps=1200").trajectory != fingerprints().trajectory
    plan = plan_spec(DIGITS)
    assert plan.spec.optimizer.schedule.decay_steps == 600 - 50
    pinned = ("optimizer.schedule.decay_steps=550",)
    assert fingerprints(*pinned, "train.steps=1200").trajectory == fingerprints(*pinned).trajectory
    constant = ('optimizer.schedule={kind="constant"}',)
    assert fingerprints(*constant, "train.steps=9").trajectory == fingerprints(*constant).trajectory


def test_equal_values_written_differently_give_one_fingerprint(write_spec):
    a = write_spec(MINIMAL + '[optimizer]\nkind = "sgd"\nlearning_rate = 1\n', "a.toml")
    b = write_spec(
        'name = "t"\n[train]\nsteps = 10\n[data]\nkind = "sklearn_digits"\n'
        '[optimizer]\nlearning_rate = 1.0\nkind = "sgd"\n[model]\nkind = "mlp"\n',
        "b.toml",
    )
    assert plan_spec(a).fingerprints.spec == plan_spec(b).fingerprints.spec


def test_plan_round_trips_through_json(examples_after_runs):
    for spec in [p for p in sorted(examples_after_runs.glob("*.toml")) if p.name != "base.toml"]:
        plan = plan_spec(spec)
        again = Plan.from_json(plan.to_json())
        assert again == plan and again.to_json() == plan.to_json()


def test_a_hand_edited_plan_is_refused():
    data = json.loads(plan_spec(DIGITS).to_json())
    data["spec"]["optimizer"]["learning_rate"] = 0.5
    with pytest.raises(PlanError, match="does not match its own spec"):
        Plan.from_json(json.dumps(data))
    with pytest.raises(PlanError, match="not a valid plan"):
        Plan.from_json('{"format": 1}')
    with pytest.raises(PlanError, match="not valid JSON|not a valid plan"):
        Plan.from_json("{")


def test_plan_states_every_field_with_its_class():
    plan = plan_spec(DIGITS)
    assert plan.fields["train.log_every"] == "operational"
    assert plan.fields["optimizer.learning_rate"] == "trajectory"
    assert plan.fields["optimizer.schedule.decay_steps"] == "trajectory"
    assert plan.fields["checkpoint.async"] == "operational"


def test_determinism_settings_follow_the_contract():
    bitwise = plan_spec(DIGITS).determinism
    assert bitwise.deterministic_ops and "--xla_gpu_deterministic_ops=true" in bitwise.xla_flags
    assert bitwise.jax_config["jax_threefry_partitionable"] is True
    assert bitwise.env == {"NPROC": "2"}
    assert plan_spec(DIGITS, ["determinism.cpu_threads=8"]).determinism.env == {"NPROC": "8"}
    loose = plan_spec(DIGITS, ['determinism.contract="tolerance"']).determinism
    assert (loose.deterministic_ops, loose.xla_flags, loose.tolerance) == (False, (), 1e-5)
    with pytest.raises(SpecError, match="deterministic_ops: contradicts"):
        plan_spec(DIGITS, ["determinism.deterministic_ops=false"])
    with pytest.raises(SpecError, match="only applies to contract"):
        plan_spec(DIGITS, ["determinism.tolerance=0.1"])


def test_checkpoint_policy_is_resolved():
    default = plan_spec(DIGITS).checkpoint
    assert (default.directory, default.relative_to, default.every_steps, default.keep_last) == (
        "checkpoints",
        "run_dir",
        100,
        3,
    )
    assert default.on_preemption and default.async_save and default.save_final
    elsewhere = plan_spec(DIGITS, ['checkpoint.dir="/tmp/ck"']).checkpoint
    assert (elsewhere.directory, elsewhere.relative_to) == ("/tmp/ck", "spec_dir")
    off = plan_spec(DIGITS, ["checkpoint.enabled=false"]).checkpoint
    assert not off.enabled and not off.on_preemption and not off.save_final


def test_compile_spec_applies_overrides_and_records_them():
    experiment = load_spec(DIGITS).experiment
    plan = compile_spec(experiment, ["train.steps=20"])
    assert plan.spec.train.steps == 20 and plan.source.overrides == ("train.steps=20",)
    with pytest.raises(SpecError, match="train.steps: must be > 0"):
        compile_spec(experiment, ["train.steps=0"])


def test_custom_streams_leave_the_others_alone(write_spec, tmp_path):
    (tmp_path / "mods.py").write_text("def make(seed):\n    return None\n")
    spec = write_spec(MINIMAL.replace('kind = "sklearn_digits"', 'kind = "custom"\ntarget = "mods:make"'))
    seeds = plan_spec(spec).seeds
    assert seeds["custom.data"] == derive_seed(0, "custom.data")
    assert {k: v for k, v in seeds.items() if k != "custom.data"} == plan_spec(DIGITS).seeds
