"""The plan compiler: pure functions from an `Experiment` to a frozen, hashed `Plan`.

No JAX here: a plan is computed identically on any machine, in milliseconds.
"""

from .canonical import canonical_json, digest
from .classes import field_classes, trajectory_view
from .compile import compile_spec, plan_spec, resolve_spec
from .determinism import DeterminismPlan
from .diff import Change, PlanDiff, diff_plans, read_plan
from .mesh import MeshError, MeshPlan
from .plan import FORMAT, Fingerprints, Plan, PlanError, PlanSource
from .policies import CheckpointPolicy, ThrottlePlan
from .seeds import derive_seed, derive_seeds

__all__ = [
    "FORMAT",
    "Change",
    "CheckpointPolicy",
    "DeterminismPlan",
    "Fingerprints",
    "MeshError",
    "MeshPlan",
    "Plan",
    "PlanDiff",
    "PlanError",
    "PlanSource",
    "ThrottlePlan",
    "canonical_json",
    "compile_spec",
    "derive_seed",
    "derive_seeds",
    "diff_plans",
    "digest",
    "field_classes",
    "plan_spec",
    "read_plan",
    "resolve_spec",
    "trajectory_view",
]
