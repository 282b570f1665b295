"""Pure-Python parameter shapes against the state the runtime builds, and the mesh rules.

`exp plan --explain` shows a sharding table computed without JAX; it is only
worth reading if its paths, shapes and dtypes are exactly the runtime's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from expspec.compiler import Plan, plan_spec
from expspec.compiler.mesh import MeshError, MeshPlan, partition, resolve_mesh, shard_shape
from expspec.compiler.shapes import StateShapes, Unknown, state_shapes
from tests.conftest import EXAMPLES

DIGITS = EXAMPLES / "digits_mlp.toml"
TRANSFORMER = EXAMPLES / "char_transformer.toml"
LORA = EXAMPLES / "lora_finetune.toml"


def _without_base_run(plan: Plan) -> Plan:
    """The LoRA example loads its base weights from a finished run; the shapes do
    not depend on where the base weights come from, so build from the `init` stream."""
    spec = plan.spec
    lora = spec.model.lora.model_copy(update={"init_from": None})
    model = spec.model.model_copy(update={"lora": lora})
    return plan.model_copy(update={"spec": spec.model_copy(update={"model": model})})


def _npz(folder: Path, labels: str) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3, 2)).astype(np.float32)
    y = np.arange(40) % 5 if labels == "int" else rng.standard_normal(40)
    path = folder / "data.npz"
    np.savez(path, features=x, y=y)
    return path


def _pure(shapes: StateShapes) -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    return {
        part: [(leaf.path, leaf.shape, leaf.dtype) for leaf in getattr(shapes, part)] for part in ("params", "frozen")
    }


def _real(plan: Plan, spec_dir: Path) -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    from expspec.runtime.engine.build import build_components
    from expspec.runtime.engine.hashing import canonical_leaves

    state = build_components(plan, spec_dir).state
    return {
        part: [(path, tuple(leaf.shape), str(leaf.dtype)) for path, leaf in canonical_leaves(state[part])]
        for part in ("params", "frozen")
    }


CASES = {
    "digits_mlp": (DIGITS, ()),
    "char_transformer": (TRANSFORMER, ()),
    "lora_finetune": (LORA, ()),
    "synthetic_lora_mlp_bf16": (
        DIGITS,
        ('data.kind="synthetic"', 'data.task="regression"', 'train.param_dtype="bfloat16"', 'model.lora.targets=["0"]'),
    ),
    "text_lm": (EXAMPLES / "text_lm.toml", ()),
    "sft_task": (EXAMPLES / "sft_task.toml", ()),
    "pretrain_tiny_llama": (EXAMPLES / "pretrain_tiny_llama.toml", ()),
    "qwen3_tied_gqa": (
        EXAMPLES / "pretrain_tiny_llama.toml",
        ('model.kind="qwen3"', "model.tie_word_embeddings=true", "model.head_dim=16"),
    ),
    "qwen2_lora_patterns": (
        EXAMPLES / "pretrain_tiny_llama.toml",
        ('model.kind="qwen2"', 'model.lora={targets=["re:.*self_attn\\\\.(q|v)_proj", "down_proj"], rank=4}'),
    ),
    "npz_classes": (DIGITS, ("npz", "int")),
    "npz_regression": (DIGITS, ("npz", "float")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pure_shapes_equal_the_built_state(case, tmp_path):
    spec, overrides = CASES[case]
    if overrides[:1] == ("npz",):
        path = _npz(tmp_path, overrides[1])
        overrides = ('data.kind="npz"', f'data.path="{path.as_posix()}"', 'data.inputs="features"')
    plan = plan_spec(spec, list(overrides))
    if plan.spec.model.lora is not None and plan.spec.model.lora.init_from:
        plan = _without_base_run(plan)
    pure = state_shapes(plan.spec, spec.parent)
    assert isinstance(pure, StateShapes), pure
    assert _pure(pure) == _real(plan, spec.parent)
    assert pure.params


def test_every_builtin_example_is_covered():
    builtin = {p.stem for p in EXAMPLES.glob("*_*.toml")} - {"sft_lora"}  # its base run: test_pretrained_shapes
    assert builtin <= set(CASES)


MLP_ON = """\
name = "t"

[model]
kind = "mlp"
{lora}
[data]
{data}

[train]
steps = 10
"""


@pytest.mark.parametrize(
    ("lora", "data", "reason"),
    [
        ("", 'kind = "custom"\ntarget = "lab.data:make"', "custom data"),
        ("", 'kind = "npz"\npath = "missing.npz"', "data.path"),
        ("", 'kind = "text_chars"\npath = "corpus.txt"', "needs a classification or regression dataset"),
        ('lora = { targets = ["query"] }', 'kind = "sklearn_digits"', "match no linear layer"),
    ],
    ids=["custom-data", "npz-missing", "mlp-on-text", "lora-no-match"],
)
def test_unknown_shapes_say_why_in_one_line(lora, data, reason, tmp_path):
    shutil.copytree(EXAMPLES / "custom" / "lab", tmp_path / "lab")  # a custom target's source is fingerprinted
    spec = tmp_path / "spec.toml"
    spec.write_text(MLP_ON.format(lora=lora, data=data))
    result = state_shapes(plan_spec(spec).spec, tmp_path)
    assert isinstance(result, Unknown)
    assert reason in result.reason and "\n" not in result.reason


def test_custom_model_is_known_only_when_built():
    spec = EXAMPLES / "custom" / "sines.toml"
    result = state_shapes(plan_spec(spec).spec, spec.parent)
    assert result == Unknown("custom model: shapes are known only when the run builds it")


def test_npz_path_resolves_against_the_spec_folder(tmp_path):
    _npz(tmp_path, "int")
    spec = tmp_path / "spec.toml"
    spec.write_text(MLP_ON.format(lora="", data='kind = "npz"\npath = "data.npz"\ninputs = "features"'))
    shapes = state_shapes(plan_spec(spec).spec, tmp_path)
    assert isinstance(shapes, StateShapes)
    by_path = {leaf.path: leaf.shape for leaf in shapes.params}
    assert by_path["layers/0/kernel"] == (6, 256) and by_path["layers/2/kernel"] == (256, 5)


# The sharding rule: `partition` lays out every state array, on the runtime's
# mesh and in the plan's table alike.


@pytest.mark.parametrize(
    ("shape", "fsdp", "spec"),
    [
        ((), 4, ()),
        ((128,), 1, (None,)),
        ((128, 512), 4, (None, "fsdp")),
        ((512, 128), 4, ("fsdp", None)),
        ((256, 256), 4, ("fsdp", None)),  # a tie goes to the first dimension
        ((10, 8), 4, (None, "fsdp")),  # the largest dimension fsdp divides, not the largest
        ((3, 5), 2, (None, None)),  # nothing divisible: replicated
        ((2, 3), 4, (None, None)),  # every dimension smaller than fsdp
        ((0, 8), 4, (None, "fsdp")),  # an empty dimension is never split
        ((4, 8, 8), 8, (None, "fsdp", None)),
    ],
)
def test_partition(shape, fsdp, spec):
    assert partition(shape, fsdp) == spec


def test_shard_shape_divides_the_split_dimension_only():
    assert shard_shape((128, 512), (None, "fsdp"), {"data": 2, "fsdp": 4}) == (128, 128)
    assert shard_shape((), (), {"fsdp": 4}) == ()


@pytest.mark.parametrize(
    ("data", "fsdp", "devices", "sizes"),
    [
        (1, 1, 8, {"data": 1, "fsdp": 1}),  # a smaller mesh leaves devices idle
        (-1, 2, 8, {"data": 4, "fsdp": 2}),
        (2, -1, 8, {"data": 2, "fsdp": 4}),
        (-1, 1, 1, {"data": 1, "fsdp": 1}),
        (2, 4, 8, {"data": 2, "fsdp": 4}),
    ],
)
def test_resolve_mesh(data, fsdp, devices, sizes):
    assert resolve_mesh(MeshPlan(data=data, fsdp=fsdp), devices) == sizes


@pytest.mark.parametrize(
    ("data", "fsdp", "devices", "whole", "key"),
    [
        (-1, 4, 6, False, "mesh.data"),  # 6 devices do not divide by fsdp 4
        (3, -1, 8, False, "mesh.fsdp"),
        (4, 4, 8, False, "mesh.data"),  # too many devices asked for
        (1, 4, 8, True, "mesh.data"),  # a cluster must use every device
    ],
)
def test_resolve_mesh_refuses_what_does_not_fit(data, fsdp, devices, whole, key):
    with pytest.raises(MeshError) as err:
        resolve_mesh(MeshPlan(data=data, fsdp=fsdp), devices, whole=whole)
    assert err.value.key == key
