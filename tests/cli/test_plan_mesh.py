"""`exp plan --explain` shows each parameter's sharding, as a real process and without JAX."""

from __future__ import annotations

from tests.cli.test_cli import JAX_FAMILY, imported_modules
from tests.conftest import EXAMPLES, run_exp

TRANSFORMER = str(EXAMPLES / "char_transformer.toml")


def _rows(stderr: str) -> dict[str, list[str]]:
    """Table rows by parameter path: [shape, dtype, partition, per device]."""
    rows = {}
    for line in stderr.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) >= 3 and "/" in cells[0]:
            rows[cells[0]] = cells[1:]
    return rows


def test_fsdp_shards_each_parameter_along_its_largest_divisible_dimension():
    result = run_exp("plan", TRANSFORMER, "mesh.fsdp=4", "--explain")
    assert result.returncode == 0, result.stderr
    assert "data 1 x fsdp 4 = 4 devices" in result.stderr
    assert "8 examples per device per step" in result.stderr
    rows = _rows(result.stderr)
    assert rows["blocks/0/ff_in/kernel"] == ["(128, 512)", "float32", "[-, fsdp]", "(128, 128)"]
    assert rows["blocks/1/ff_out/kernel"] == ["(512, 128)", "float32", "[fsdp, -]", "(128, 128)"]
    assert rows["tok_embed/embedding"] == ["(256, 128)", "float32", "[fsdp, -]", "(64, 128)"]
    assert rows["ln_f/scale"] == ["(128,)", "float32", "[fsdp]", "(32,)"]
    assert "Optimizer moments follow their parameter's layout" in result.stderr


def test_lora_shows_trained_adapters_and_frozen_base_weights():
    result = run_exp("plan", str(EXAMPLES / "lora_finetune.toml"), "mesh.fsdp=2", "--explain")
    assert result.returncode == 0, result.stderr
    assert "Frozen base weights (state.frozen)" in result.stderr
    rows = _rows(result.stderr)
    assert rows["blocks/0/attn/query/lora/lora_a"] == ["(128, 8)", "float32", "[fsdp, -]", "(64, 8)"]
    assert rows["blocks/0/attn/query/base/kernel"] == ["(128, 128)", "float32", "[fsdp, -]", "(64, 128)"]


def test_summary_has_a_mesh_line():
    result = run_exp("plan", TRANSFORMER)
    assert result.returncode == 0, result.stderr
    assert "mesh         data 1 x fsdp 1\n" in result.stderr


def test_mesh_that_does_not_fit_the_devices_exits_2_naming_the_key():
    result = run_exp("plan", TRANSFORMER, "mesh.data=-1", "mesh.fsdp=4", "--devices", "6", "--explain")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "char_transformer.toml: mesh.data:" in lines[0]
    too_many = run_exp("plan", TRANSFORMER, "mesh.fsdp=8", "--devices", "6")
    assert too_many.returncode == 2 and "mesh." in too_many.stderr and "--devices 6" in too_many.stderr


def test_batch_that_does_not_split_over_the_devices_exits_2():
    result = run_exp("plan", TRANSFORMER, "mesh.fsdp=3", "--devices", "3")
    assert result.returncode == 2
    assert "char_transformer.toml: data.batch_size: data.batch_size = 32 does not split" in result.stderr


def test_devices_resolve_minus_one_axes():
    result = run_exp("plan", TRANSFORMER, "mesh.data=-1", "mesh.fsdp=2", "--devices", "8", "--explain")
    assert result.returncode == 0, result.stderr
    assert "(on 8 devices: data 4 x fsdp 2)" in result.stderr
    assert "data 4 x fsdp 2 = 8 devices" in result.stderr
    assert "4 examples per device per step" in result.stderr
    assert _rows(result.stderr)["head/kernel"][2:] == ["[-, fsdp]", "(128, 128)"]


def test_all_devices_fsdp_without_a_device_count_asks_for_one():
    result = run_exp("plan", TRANSFORMER, "mesh.fsdp=-1", "--explain")
    assert result.returncode == 0, result.stderr
    assert "fsdp all devices left" in result.stderr
    assert "pass --devices N" in result.stderr
    assert _rows(result.stderr)["head/kernel"] == ["(128, 256)", "float32"]


def test_custom_model_says_why_there_is_no_table():
    result = run_exp("plan", str(EXAMPLES / "custom" / "sines.toml"), "--explain")
    assert result.returncode == 0, result.stderr
    assert "custom model: shapes are known only when the run builds it" in result.stderr


def test_explain_imports_neither_jax_nor_numpy():
    modules = imported_modules(
        "-m", "expspec", "plan", TRANSFORMER, "mesh.fsdp=4", "--explain", "--devices", "4", shows="[-, fsdp]"
    )
    assert not (set(JAX_FAMILY) | {"numpy"}) & modules
